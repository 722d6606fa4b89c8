"""A progress display fed by the lifecycle hooks: requests done, and batch states.

It is a plugin like any other: the CLI registers an instance for the length
of a command. It draws nothing when output is not a terminal.
"""

from __future__ import annotations

import sys
from typing import Any

from plugins.hookspecs import hookimpl
from providers.errors import LexibatchError
from providers.types import BatchInfo, BatchState, Request, Response

__all__ = ["ProgressObserver"]


class ProgressObserver:
    """Counts finished requests and shows each batch's state, as a rich progress bar."""

    def __init__(
        self,
        total: int | None,
        *,
        description: str = "requests",
        enabled: bool | None = None,
        count_requests: bool = True,
    ) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(file=sys.stderr)
        self.enabled = self.console.is_terminal if enabled is None else enabled
        self.succeeded = 0
        self.failed = 0
        self.cached = 0
        self.batches: dict[str, str] = {}
        # Shards waiting for room in the provider's queue: shard id -> model.
        self.waiting: dict[str, str] = {}
        self.done = 0
        self._count_requests = count_requests
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.enabled,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, detail="")

    def __enter__(self) -> ProgressObserver:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._refresh()
        self._progress.stop()

    @property
    def requests(self) -> int:
        """Requests finished so far (cached ones included)."""
        return self.succeeded + self.failed

    def advance_to(self, done: int) -> None:
        """Set how many units (e.g. words) are done, when the bar does not count requests."""
        self.done = done
        self._refresh()

    def set_total(self, total: int) -> None:
        """Change the expected number of requests."""
        self._progress.update(self._task, total=total)

    def _refresh(self) -> None:
        states: dict[str, int] = {}
        for state in self.batches.values():
            states[state] = states.get(state, 0) + 1
        batch_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        detail = f"ok {self.succeeded} · failed {self.failed} · cached {self.cached}"
        if batch_text:
            detail += f" · batches: {batch_text}"
        if self.waiting:
            models = ", ".join(sorted(set(self.waiting.values())))
            detail += f" · {len(self.waiting)} waiting for queue room ({models})"
        completed = self.requests if self._count_requests else self.done
        self._progress.update(self._task, completed=completed, detail=detail)

    @hookimpl
    def request_finished(
        self, request: Request, response: Response | None, error: LexibatchError | None
    ) -> None:
        """Count one finished request."""
        if response is not None:
            self.succeeded += 1
            if response.cached:
                self.cached += 1
        else:
            self.failed += 1
        if self.enabled:
            self._refresh()

    @hookimpl
    def batch_submitted(
        self, batch: BatchInfo, shard_id: str, provider: str, requests: int
    ) -> None:
        """Show a new batch."""
        self.batches[batch.id] = batch.state.value
        if self.enabled:
            self._refresh()

    @hookimpl
    def batch_status_changed(
        self, batch: BatchInfo, previous: BatchState | None, provider: str
    ) -> None:
        """Show a batch's new state; one refused for the queue leaves (it is sent again)."""
        # Only batch mode calls this hook: its modules are loaded by then.
        from plugins.batch.queuecap import refused_for_queue

        if refused_for_queue(batch):
            self.batches.pop(batch.id, None)
        else:
            self.batches[batch.id] = batch.state.value
        if self.enabled:
            self._refresh()

    @hookimpl
    def batch_waiting_for_room(
        self,
        shard_id: str,
        provider: str,
        model: str,
        enqueued: int,
        cap: int | None,
        waiting: bool,
    ) -> None:
        """Show how many shards wait for room in the provider's queue, and for which models."""
        if waiting:
            self.waiting[shard_id] = model
        else:
            self.waiting.pop(shard_id, None)
        if self.enabled:
            self._refresh()

    def summary(self) -> dict[str, Any]:
        """What was counted."""
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cached": self.cached,
            "batches": len(self.batches),
        }
