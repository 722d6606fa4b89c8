"""The offline sandbox: an emulator this process starts on a free loopback port.

The emulator keeps its files and batches in a folder beside the store, so a
batch run that is killed and re-run in the sandbox re-attaches to the same
batches, exactly as it would against a real provider.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any, Final, Literal, get_args

from providers.errors import StoreWriteError, os_error_reason

__all__ = [
    "SANDBOX",
    "SPOKEN_APIS",
    "Spoken",
    "configure_sandbox",
    "stands_in_for",
    "start_sandbox_emulator",
    "stop_sandbox_emulator",
]

#: The registered name of the sandbox provider.
SANDBOX = "sandbox"

#: The APIs the sandbox's emulator speaks (``[providers.sandbox] speaks``).
Spoken = Literal["openai", "anthropic", "gemini", "mistral"]
SPOKEN_APIS: Final[tuple[str, ...]] = get_args(Spoken)

#: Seconds an emulated batch takes from creation to completion in the sandbox.
DEFAULT_BATCH_SECONDS = 1.0

_lock = threading.Lock()
_emulator: Any = None
_batch_seconds: float = DEFAULT_BATCH_SECONDS


def stands_in_for(provider: str) -> bool:
    """Whether the sandbox can stand in offline for ``provider`` (not for a plugin's API).

    It speaks the built-in providers' APIs; ``litellm`` reaches them in the
    OpenAI shape the sandbox speaks by default.
    """
    return provider in SPOKEN_APIS or provider == "litellm"


def configure_sandbox(*, batch_seconds: float) -> None:
    """Set how long the sandbox's batches take (for the next emulator this process starts)."""
    global _batch_seconds
    with _lock:
        _batch_seconds = batch_seconds


def start_sandbox_emulator(state_dir: Path | None) -> str:
    """Start the sandbox emulator once per process and return its base URL.

    Args:
        state_dir: where its files and batches persist (``None``: in memory).
            The first connector of the process decides; later ones share it.
    """
    global _emulator
    with _lock:
        if _emulator is None:
            from providers.emulator import Emulator, EmulatorConfig

            try:
                if state_dir is not None:
                    state_dir.mkdir(parents=True, exist_ok=True)
                emulator = Emulator(
                    EmulatorConfig(batch_seconds=_batch_seconds), state_dir=state_dir
                )
                emulator.start()
            except OSError as exc:
                raise StoreWriteError(
                    f"the sandbox cannot keep its state in {state_dir} beside the store "
                    f"({os_error_reason(exc)}): the store's folder must be writable — fix it or "
                    "set connector.db (or --db) to a writable place"
                ) from None
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
