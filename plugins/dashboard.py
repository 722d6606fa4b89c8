"""What a running command is doing, told from the lifecycle hooks.

:class:`RunState` is a plugin: registered for the length of ``run``,
``synthesize`` or ``resume``, it counts requests per stage as they start and
finish, follows every batch through its states, adds up the spend, and works
out an ETA and what the run is waiting for. It draws two ways:

- :meth:`RunState.render`, a rich renderable, redrawn live in a terminal;
- :meth:`RunState.status_line`, one plain line, written to a log now and then.

Choosing between them (and drawing nothing with ``--quiet``) is
:mod:`plugins.progress`'s job.

Shards held back until a provider's queue has room are shown when the
``batch_waiting_for_room`` hook is called (an optional hook: the dashboard
works without it). Any other wait can be shown with
:meth:`RunState.wait_started` and :meth:`RunState.wait_ended`.
"""

from __future__ import annotations

import dataclasses
import operator
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from plugins.hookspecs import hookimpl
from plugins.requestevents import RequestOutcome
from plugins.tables import age
from providers.errors import LexibatchError
from providers.money import format_usd, to_decimal
from providers.types import BatchInfo, BatchState, Request, Response

if TYPE_CHECKING:
    from rich.console import RenderableType

__all__ = ["BatchSeen", "RunState", "StageCount"]

#: The stage of a request: by default its task, and untagged ones are "requests".
StageOf = Callable[[str | None], str]


_TASK = operator.attrgetter("task")


def _by_task(task: str | None) -> str:
    return task or "requests"


@dataclasses.dataclass(slots=True)
class StageCount:
    """Requests of one stage: started, and how each one ended."""

    started: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0

    @property
    def finished(self) -> int:
        """Requests that ended, answered or not."""
        return self.succeeded + self.failed


@dataclasses.dataclass(slots=True)
class BatchSeen:
    """One provider batch as the hooks last reported it."""

    id: str
    provider: str
    state: str
    requests: int
    succeeded: int = 0
    failed: int = 0
    first_seen: float = 0.0
    changed: float = 0.0
    terminal: bool = False
    #: Ended, but its provider does not say yet that its results can be read.
    unreadable: bool = False
    #: Its answers stored so far (told as their requests finish).
    stored: int = 0

    @property
    def progress(self) -> float:
        """The share of its requests that ended (0 to 1)."""
        return (self.succeeded + self.failed) / self.requests if self.requests else 0.0


class RunState:
    """Counts, batches, spend, ETA and waits of one command, fed by the hooks.

    Args:
        title: what the command is (``synthesize 292 words``).
        total: requests expected, when known (``run``: the input's lines).
        stages: stage names to list first, in order, even before they start.
        stage_of: the stage a request's task belongs to.
        estimate_usd: the estimate of what the run will cost, when there is one.
        budget_usd: the configured budget, when there is one.
        batch_mode: whether requests go through batches (what "waiting" means).
        clock: the time source (tests pass their own).
    """

    def __init__(
        self,
        title: str,
        *,
        total: int | None = None,
        stages: Iterable[str] = (),
        stage_of: StageOf | None = None,
        estimate_usd: float | Decimal | None = None,
        budget_usd: float | Decimal | None = None,
        batch_mode: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.title = title
        self.total = total
        self.stages: dict[str, StageCount] = {name: StageCount() for name in stages}
        self._stage_of = stage_of or _by_task
        self.estimate_usd = None if estimate_usd is None else to_decimal(estimate_usd)
        self.budget_usd = None if budget_usd is None else to_decimal(budget_usd)
        self.batch_mode = batch_mode
        self.clock = clock
        self.started_at = clock()
        self.spent = Decimal(0)
        self.unpriced = 0
        self.batches: dict[str, BatchSeen] = {}
        self.units: tuple[str, int, int | None] | None = None
        self._wait: tuple[str, float] | None = None
        #: Shards waiting for queue room: shard id → (provider, model, since).
        self.held: dict[str, tuple[str, str, float]] = {}
        #: Seconds shards waited for queue room, all shards together (two
        #: shards held for a minute count two).
        self.room_waited = 0.0
        #: Seconds during which at least one shard waited for queue room.
        self.room_held = 0.0
        # When the first of the shards held now started waiting.
        self._held_since: float | None = None
        #: Bumped on every change a reader of the log should hear about.
        self.changes = 0

    # -- what the hooks say ------------------------------------------------

    def _stage(self, task: str | None) -> StageCount:
        name = self._stage_of(task)
        count = self.stages.get(name)
        if count is None:
            count = self.stages[name] = StageCount()
        return count

    # Requests come to the hooks by the thousand and share few tasks: they
    # are counted by task first, and each task's counts added to its stage once.

    @hookimpl
    def requests_started(self, requests: Sequence[Request]) -> None:
        """Count requests of their stages as queued."""
        for task, started in Counter(map(_TASK, requests)).items():
            self._stage(task).started += started

    @hookimpl
    def requests_finished(self, outcomes: Sequence[RequestOutcome]) -> None:
        """Count finished requests, and what they cost."""
        # task -> [ended, failed, cached]
        tallies: dict[str | None, list[int]] = {}
        spent: dict[float, int] = {}
        # batch id -> answers of it stored
        stored: dict[str, int] = {}
        for request, response, _error in outcomes:
            tally = tallies.get(request.task)
            if tally is None:
                tally = tallies[request.task] = [0, 0, 0]
            tally[0] += 1
            if response is None:
                tally[1] += 1
            elif response.cached:
                tally[2] += 1
            else:
                if response.batch_id is not None:
                    stored[response.batch_id] = stored.get(response.batch_id, 0) + 1
                if response.cost_usd is None:
                    self.unpriced += 1
                else:
                    # Answers share few prices: each is made exact once per call.
                    spent[response.cost_usd] = spent.get(response.cost_usd, 0) + 1
        for task, (ended, failed, cached) in tallies.items():
            count = self._stage(task)
            # Requests that started before this observer was registered are
            # counted as started when they end (as many as end past the
            # requests already started and not yet ended).
            count.started += max(0, ended - max(0, count.started - count.finished))
            count.failed += failed
            count.succeeded += ended - failed
            count.cached += cached
        for cost, times in spent.items():
            self.spent += to_decimal(cost) * times
        for batch_id, answers in stored.items():
            seen = self.batches.get(batch_id)
            if seen is not None:
                seen.stored += answers

    def request_started(self, request: Request) -> None:
        """Count one request of its stage as queued."""
        self.requests_started((request,))

    def request_finished(
        self, request: Request, response: Response | None, error: LexibatchError | None
    ) -> None:
        """Count one finished request, and what it cost."""
        self.requests_finished((RequestOutcome(request, response, error),))

    @hookimpl
    def batch_submitted(
        self, batch: BatchInfo, shard_id: str, provider: str, requests: int
    ) -> None:
        """Follow a new batch."""
        now = self.clock()
        self.batches[batch.id] = BatchSeen(
            batch.id,
            provider,
            batch.state.value,
            requests or batch.total,
            batch.succeeded,
            batch.failed,
            first_seen=now,
            changed=now,
            terminal=batch.state.terminal,
        )
        self.changes += 1

    @hookimpl
    def batch_status_changed(
        self, batch: BatchInfo, previous: BatchState | None, provider: str
    ) -> None:
        """Note a batch's new state or counts; one refused for the queue leaves (it is sent
        again)."""
        # Only batch mode calls this hook: its modules are loaded by then.
        from plugins.batch.queuecap import refused_for_queue

        if refused_for_queue(batch):
            if self.batches.pop(batch.id, None) is not None:
                self.changes += 1
            return
        now = self.clock()
        seen = self.batches.get(batch.id)
        if seen is None:  # a batch of an earlier run, re-attached to
            seen = self.batches[batch.id] = BatchSeen(
                batch.id, provider, batch.state.value, batch.total, first_seen=now
            )
        if seen.state != batch.state.value:
            self.changes += 1
        seen.state = batch.state.value
        seen.requests = batch.total or seen.requests
        seen.succeeded, seen.failed = batch.succeeded, batch.failed
        seen.terminal = batch.state.terminal
        unreadable = seen.terminal and not batch.results_ready
        if seen.unreadable != unreadable:
            seen.unreadable = unreadable
            self.changes += 1
        seen.changed = now

    @hookimpl(optionalhook=True)
    def batch_waiting_for_room(
        self, shard_id: str, provider: str, model: str, waiting: bool
    ) -> None:
        """Note a shard held back (or let go) until its provider's queue has room."""
        now = self.clock()
        if waiting:
            self.held.setdefault(shard_id, (provider, model, now))
            if self._held_since is None:
                self._held_since = now
        else:
            held = self.held.pop(shard_id, None)
            if held is not None:
                self.room_waited += now - held[2]
            if not self.held and self._held_since is not None:
                self.room_held += now - self._held_since
                self._held_since = None
        self.changes += 1

    # -- what no hook says ---------------------------------------------------

    def set_units(self, name: str, done: int, total: int | None) -> None:
        """Show a count of the caller's own units (``words 12 / 292``)."""
        if self.units is None or self.units[1] != done:
            self.units = (name, done, total)

    def wait_started(self, what: str) -> None:
        """Show that the run waits for ``what`` (a queue's room, say), from now on."""
        self._wait = (what, self.clock())
        self.changes += 1

    def wait_ended(self) -> None:
        """The wait shown by :meth:`wait_started` is over."""
        self._wait = None
        self.changes += 1

    # -- what it adds up to --------------------------------------------------

    def room_note(self) -> str | None:
        """How long shards waited for queue room, in words; ``None`` when none waited.

        ``shards waited 95.0 s for queue room (the run was held 40.0 s)``: the
        first figure adds up every shard's wait, the second is the time during
        which at least one shard waited (a wait still going counts up to now).
        """
        now = self.clock()
        waited = self.room_waited + sum(now - since for _, _, since in self.held.values())
        held = self.room_held + (now - self._held_since if self._held_since is not None else 0.0)
        if waited <= 0:
            return None
        return f"shards waited {waited:,.1f} s for queue room (the run was held {held:,.1f} s)"

    @property
    def started(self) -> int:
        """Requests started, all stages."""
        return sum(c.started for c in list(self.stages.values()))

    @property
    def finished(self) -> int:
        """Requests finished, all stages."""
        return sum(c.finished for c in list(self.stages.values()))

    def _active(self) -> list[BatchSeen]:
        return sorted(
            (b for b in list(self.batches.values()) if not b.terminal), key=lambda b: b.first_seen
        )

    def eta(self) -> tuple[float, str] | None:
        """Seconds left and how they were worked out, or ``None`` while nothing tells.

        From the batches' own progress when batches run (the slowest one
        decides); otherwise from the rate requests finish at, when the total
        is known.
        """
        now = self.clock()
        active = self._active()
        if active:
            lefts = []
            for b in active:
                if b.progress <= 0:
                    return None  # one batch without progress yet: no honest figure
                elapsed = now - b.first_seen
                lefts.append(elapsed * (1 - b.progress) / b.progress)
            return max(lefts), "from the batches' progress"
        total = self.total
        done = self.finished
        if total and 0 < done < total:
            elapsed = now - self.started_at
            return elapsed * (total - done) / done, "from the requests' rate"
        return None

    def waiting_for(self) -> str | None:
        """What the run waits for now, in words; ``None`` when it is just working."""
        now = self.clock()
        if self._wait is not None:
            what, since = self._wait
            return f"{what} (since {_clock(since)}, {age(now - since)})"
        held = list(self.held.values())
        if held:
            provider, model, since = min(held, key=lambda h: h[2])
            shards = f"{len(held)} shard" + ("" if len(held) == 1 else "s")
            return (
                f"room in {provider}'s batch queue for {model}: {shards} held "
                f"(since {_clock(since)}, {age(now - since)})"
            )
        unreadable = sorted(
            (b for b in list(self.batches.values()) if b.unreadable), key=lambda b: b.changed
        )
        if unreadable:
            b, more = unreadable[0], _more(unreadable)
            return (
                f"batch {b.id} ({b.provider}) ended {b.state} at {_clock(b.changed)}; its "
                f"results cannot be read yet ({age(now - b.changed)}){more}"
            )
        active = self._active()
        if active:
            b, more = active[0], _more(active)
            return (
                f"batch {b.id} ({b.provider}) {b.state} since {_clock(b.first_seen)} "
                f"({age(now - b.first_seen)}), {b.succeeded + b.failed:,}/{b.requests:,} done"
                f"{more}"
            )
        pending = self.started - self.finished
        # Ended and readable, with answers not yet told stored: being collected.
        storing = [
            b
            for b in list(self.batches.values())
            if b.terminal and not b.unreadable and b.stored < b.succeeded
        ]
        if storing and pending > 0:
            b, more = storing[0], _more(storing)
            return (
                f"batch {b.id} ({b.provider}) ended {b.state}: storing its answers, "
                f"{b.stored:,}/{b.succeeded:,}{more}"
            )
        if self.batch_mode and pending > 0:
            return (
                f"{pending:,} requests not in a running batch yet "
                "(the next batch is being gathered)"
            )
        return None

    def batch_counts(self) -> dict[tuple[str, str], tuple[int, int]]:
        """``(provider, state) → (batches, requests)``."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        for b in list(self.batches.values()):
            n, r = out.get((b.provider, b.state), (0, 0))
            out[b.provider, b.state] = (n + 1, r + b.requests)
        return out

    def spend_text(self) -> str:
        """``$0.0123 of ~$0.05 estimated, budget $1.00``."""
        text = format_usd(self.spent)
        if self.estimate_usd is not None:
            text += f" of ~{format_usd(self.estimate_usd)} estimated"
        if self.budget_usd is not None:
            text += f", budget {format_usd(self.budget_usd)}"
        if self.unpriced:
            text += f" (+{self.unpriced:,} unpriced calls)"
        return text

    # -- drawing -------------------------------------------------------------

    def status_line(self) -> str:
        """Everything in one plain line, for logs read later."""
        now = self.clock()
        parts = [f"{_clock(now)} [{age(now - self.started_at)}]"]
        total = f"/{self.total:,}" if self.total else ""
        stages = ", ".join(
            f"{name} {c.finished:,}/{c.started:,}"
            for name, c in list(self.stages.items())
            if c.started
        )
        parts.append(f"requests {self.finished:,}{total} done" + (f" ({stages})" if stages else ""))
        if self.units is not None:
            name, done, of = self.units
            parts.append(f"{name} {done:,}" + (f"/{of:,}" if of is not None else ""))
        batches = self.batch_counts()
        if batches:
            parts.append(
                "batches " + ", ".join(f"{p} {n} {s}" for (p, s), (n, _) in sorted(batches.items()))
            )
        parts.append(f"spent {self.spend_text()}")
        eta = self.eta()
        if eta is not None:
            parts.append(f"ETA {age(eta[0])}")
        waiting = self.waiting_for()
        if waiting:
            parts.append(f"waiting for {waiting}")
        room = self.room_note()
        if room:
            parts.append(room)
        return " · ".join(parts)

    def render(self) -> RenderableType:
        """The live dashboard: stages, batches, spend, ETA and what it waits for."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        mode = "batch" if self.batch_mode else "immediate"
        header = Text.assemble(
            (f"lexibatch {self.title}", "bold"),
            f" · {mode} mode · {age(now - self.started_at)} elapsed",
        )
        stages = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
        for name, justify in (
            ("stage", "left"),
            ("done / queued", "right"),
            ("", "left"),
            ("failed", "right"),
            ("cached", "right"),
        ):
            stages.add_column(name, justify=justify)  # type: ignore[arg-type]
        rows = list(self.stages.items())
        if self.total is not None and len(rows) <= 1:
            name = rows[0][0] if rows else "requests"
            count = rows[0][1] if rows else StageCount()
            rows = [(name, dataclasses.replace(count, started=max(count.started, self.total)))]
        for name, c in rows:
            stages.add_row(
                name,
                f"{c.finished:,} / {c.started:,}",
                ProgressBar(total=max(c.started, 1), completed=c.finished, width=30),
                f"[red]{c.failed:,}[/]" if c.failed else "0",
                f"{c.cached:,}",
            )
        if self.units is not None:
            name, done, of = self.units
            stages.add_row(
                name,
                f"{done:,} / {of:,}" if of is not None else f"{done:,}",
                ProgressBar(total=max(of or done, 1), completed=done, width=30),
                "",
                "",
            )
        in_batches = list(self.batches.values())
        if in_batches:
            # What the providers have answered, before the results are collected.
            size = sum(b.requests for b in in_batches)
            ended = sum(b.succeeded + b.failed for b in in_batches)
            stages.add_row(
                "in batches",
                f"{ended:,} / {size:,}",
                ProgressBar(total=max(size, 1), completed=ended, width=30),
                f"[red]{sum(b.failed for b in in_batches):,}[/]"
                if any(b.failed for b in in_batches)
                else "0",
                "",
            )
        parts: list[RenderableType] = [header, stages]
        batches = self.batch_counts()
        if batches:
            table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
            for name in ("provider", "batch state", "batches", "requests"):
                table.add_column(
                    name, justify="right" if name in ("batches", "requests") else "left"
                )
            for (provider, state), (n, r) in sorted(batches.items()):
                table.add_row(provider, state, f"{n:,}", f"{r:,}")
            parts.append(table)
        info = Table.grid(padding=(0, 1))
        info.add_column(style="bold")
        info.add_column()
        info.add_row("spent", self.spend_text())
        eta = self.eta()
        info.add_row("ETA", f"~{age(eta[0])} ({eta[1]})" if eta else "-")
        info.add_row("waiting for", self.waiting_for() or "-")
        room = self.room_note()
        if room:
            info.add_row("queue room", room)
        parts.append(info)
        return Group(*parts)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def _more(batches: list[BatchSeen]) -> str:
    """`` and N more`` after the first of ``batches`` named, when there are more."""
    return f" and {len(batches) - 1} more" if len(batches) > 1 else ""
