"""The offline sandbox: an emulator this process starts on a free loopback port.

The emulator keeps its files and batches in a folder beside the store, so a
batch run that is killed and re-run in the sandbox re-attaches to the same
batches, exactly as it would against a real provider.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from plugins.config import ProviderSettings

__all__ = ["SANDBOX", "configure_sandbox", "start_sandbox_emulator", "stop_sandbox_emulator"]

#: The registered name of the sandbox provider.
SANDBOX = "sandbox"

#: Seconds an emulated batch takes from creation to completion in the sandbox.
DEFAULT_BATCH_SECONDS = 1.0

_lock = threading.Lock()
_emulator: Any = None
_state_dir: Path | None = None
_batch_seconds: float = DEFAULT_BATCH_SECONDS


def configure_sandbox(*, state_dir: Path | None = None, batch_seconds: float | None = None) -> None:
    """Set where the sandbox emulator keeps its state and how long its batches take.

    Takes effect for the next emulator started in this process.
    """
    global _state_dir, _batch_seconds
    with _lock:
        if state_dir is not None:
            _state_dir = state_dir
        if batch_seconds is not None:
            _batch_seconds = batch_seconds


def start_sandbox_emulator(settings: ProviderSettings | None = None) -> str:
    """Start the sandbox emulator once per process and return its base URL."""
    global _emulator
    with _lock:
        if _emulator is None:
            from providers.emulator import Emulator, EmulatorConfig

            if _state_dir is not None:
                _state_dir.mkdir(parents=True, exist_ok=True)
            emulator = Emulator(EmulatorConfig(batch_seconds=_batch_seconds), state_dir=_state_dir)
            emulator.start()
            _emulator = emulator
            atexit.register(stop_sandbox_emulator)
        return str(_emulator.base_url)


def sandbox_emulator() -> Any:
    """The running sandbox emulator, or ``None`` (tests read its billing report)."""
    return _emulator


def stop_sandbox_emulator() -> None:
    """Stop the sandbox emulator if this process started one."""
    global _emulator
    with _lock:
        if _emulator is not None:
            _emulator.stop()
            _emulator = None
