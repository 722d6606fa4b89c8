"""Batch life cycles for both providers, driven by wall-clock time from creation.

With ``T = batch_seconds`` (fixed per batch when it is created), an OpenAI
batch is ``validating`` until ``0.1 T``, ``in_progress`` until ``(1 - F) T``
(``request_counts.completed`` rising; ``F`` is the ``finalizing`` share,
0.2 by default, 0 for a batch that is never seen finalizing, as real small
batches often are), ``finalizing`` until ``T`` and
``completed`` from then on; the create answer always says ``validating``, so
with ``T = 0`` the batch is complete at the first poll. Faults bend this
timeline: ``failed`` at ``0.1 T``; ``expired`` at ``T``; a fault cancel turns
``cancelling`` at ``0.5 T`` and ``cancelled`` at ``T``; a cancel request turns
the batch ``cancelling`` at once and ``cancelled`` ``0.1 T`` later, with the
items done that its progress had reached; one cancelled while still
``validating`` ran nothing and ends with zero ``request_counts``, no output or
error file and no ``in_progress_at``, as the real one. An Anthropic batch is
``in_progress`` until ``T`` and ``ended`` after; ``canceling`` likewise.

A batch runs its items in input order (:func:`items_run`): the counts a poll
shows while it runs are those of its first items, so they only rise, and the
split it ends with continues them (a batch cut short by a fault never shows
more items done than it ends with).

Output and error files (Anthropic: the results file) are produced once, when
a poll (or the background ticker, for ``T > 0``) first sees the batch in a
terminal state; that is also when the batch is billed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from providers.emulator import ids
from providers.emulator.config import EmulatorConfig
from providers.emulator.jobs import Job, anthropic_job, not_done_line, openai_job
from providers.emulator.queuecap import (
    anthropic_refusal,
    anthropic_tokens,
    openai_refusal,
    openai_tokens,
)
from providers.emulator.rng import roll
from providers.emulator.state import State

__all__ = [
    "DAY",
    "OPENAI_ENDPOINTS",
    "BatchLifecycle",
    "Conflict",
    "NotFound",
    "NotReady",
    "batch_usage",
    "finalizing_share",
    "iso",
    "items_run",
    "started_before_cancel",
]

DAY = 24 * 3600
OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses")
_TERMINAL_OPENAI = ("completed", "failed", "expired", "cancelled")


class NotFound(Exception):
    """No batch with that id."""


class NotReady(Exception):
    """The batch has not ended (Anthropic results)."""


class Conflict(Exception):
    """The batch cannot be cancelled in its state."""


def iso(t: float) -> str:
    """RFC 3339 with microseconds and ``+00:00``, as Anthropic writes timestamps."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


class BatchLifecycle:
    """Creates batches, advances them on the clock and finishes them (results, billing).

    What each API shows of them is :class:`~providers.emulator.batchviews.BatchEngine`'s.
    """

    def __init__(self, state: State, config: EmulatorConfig) -> None:
        self.state = state
        self.config = config
        self._jobs: dict[str, asyncio.Future[Job]] = {}
        self._finishing: dict[str, asyncio.Task[None]] = {}
        state.before_delete = self._keep_counts

    # ------------------------------------------------------- enqueued tokens

    def batch_tokens(self, rec: Mapping[str, Any]) -> Mapping[str, int]:
        """A batch's enqueued tokens by model, counted from its input the first time asked.

        A batch whose input file is gone (deleted after it ended) holds ``{}``.
        """
        tokens: Mapping[str, int] | None = rec.get("tokens")
        if tokens is None:
            tokens = self._count(rec)
            if isinstance(rec, dict):
                rec["tokens"] = tokens  # counted once (the record is not rewritten for it)
        return tokens

    def _count(self, rec: Mapping[str, Any]) -> dict[str, int]:
        file = self.state.files.get(rec["input_file_id"])
        if file is None:
            return {}
        data = file.content()
        if rec["provider"] == "openai":
            return openai_tokens(data)
        parsed = orjson.loads(data)
        return anthropic_tokens(parsed["requests"] if isinstance(parsed, dict) else parsed)

    def _keep_counts(self, file_id: str) -> None:
        """Count the batches not ended that read ``file_id``, before it is deleted."""
        for rec in list(self.state.batches.values()):
            if rec["input_file_id"] == file_id and rec["final"] is None:
                self.batch_tokens(rec)

    def forget(self) -> None:
        """Drop in-memory jobs (after a reset)."""
        self._jobs.clear()
        self._finishing.clear()

    # ------------------------------------------------------------------ jobs

    def _job(self, rec: dict[str, Any]) -> asyncio.Future[Job]:
        fut = self._jobs.get(rec["id"])
        if fut is None:
            loop = asyncio.get_running_loop()
            cfg = self.config.model_copy()
            seen_items = self.state.seen_items
            seen_batches = self.state.seen_batches
            data = self.state.files[rec["input_file_id"]].content()
            if rec["provider"] == "openai":
                endpoint = rec["endpoint"]
                fut = loop.run_in_executor(
                    None, openai_job, data, endpoint, cfg, seen_items, seen_batches
                )
            else:
                parsed = orjson.loads(data)
                requests = parsed["requests"] if isinstance(parsed, dict) else parsed
                fut = loop.run_in_executor(
                    None, anthropic_job, requests, cfg, seen_items, seen_batches
                )
            self._jobs[rec["id"]] = fut
        return fut

    # ------------------------------------------------------------- creation

    def record_openai(
        self,
        input_file_id: str,
        endpoint: str,
        window: str,
        metadata: Any,
        *,
        batch_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new OpenAI batch, journaled; its record.

        ``batch_id`` and ``extra`` serve the APIs run on this engine (Gemini,
        Mistral): their own id shape, and a ``wire`` field naming the API,
        which keeps the batch out of OpenAI's list.
        """
        now = time.time()
        data = self.state.files[input_file_id].content()
        # Over the enqueued-token limit: accepted, then failed when validated
        # (the APIs translated onto this engine refuse at their own edge).
        # Without a limit nothing is counted until a count is asked for.
        limit = self.config.enqueued_token_limit
        tokens = None
        refused = None
        if limit is not None and not (extra or {}).get("wire"):
            tokens = openai_tokens(data)
            refused = openai_refusal(self.state.batches.values(), tokens, limit, self.batch_tokens)
        if refused:
            self.state.queue_refusals += 1
        rec: dict[str, Any] = {
            **(extra or {}),
            "id": batch_id or ids.hex_time_id("batch_", now),
            "provider": "openai",
            "created": now,
            "T": self.config.batch_seconds,
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "completion_window": window,
            "metadata": metadata,
            "model": _first_model(data),
            "F": self.config.finalizing,
            "n": data.count(b"\n") + (0 if data.endswith(b"\n") else 1),
            "missing_polls": self.config.output_file_missing_polls,
            "refused": refused,
            "cancel_at": None,
            "final": None,
        }
        if tokens is not None:
            rec["tokens"] = tokens
        self.state.save_batch(rec)
        self._job(rec)
        return rec

    def anthropic_refusal(self, requests: list[Any]) -> tuple[str | None, dict[str, int] | None]:
        """Why a message batch of ``requests`` is refused (a 429) for the enqueued-token limit.

        Also the batch's tokens by model, counted only while a limit is set (else ``None``).
        """
        limit = self.config.enqueued_token_limit
        if limit is None:
            return None, None
        tokens = anthropic_tokens(requests)
        refusal = anthropic_refusal(self.state.batches.values(), tokens, limit, self.batch_tokens)
        return refusal, tokens

    def record_anthropic(
        self, raw: bytes, requests: list[Any], tokens: dict[str, int] | None = None
    ) -> dict[str, Any]:
        """A new message batch from its create body ``raw``, journaled; its record.

        ``tokens``: its enqueued tokens by model, if they were counted already.
        """
        now = time.time()
        batch_id = ids.anthropic_id("msgbatch_")
        input_file = self.state.add_file(raw, "anthropic_batch_input", f"{batch_id}_requests.json")
        rec: dict[str, Any] = {
            "id": batch_id,
            "provider": "anthropic",
            "created": now,
            "T": self.config.batch_seconds,
            "input_file_id": input_file.id,
            "n": len(requests),
            "cancel_at": None,
            "final": None,
        }
        if tokens is not None:
            rec["tokens"] = tokens
        self.state.save_batch(rec)
        self._job(rec)
        return rec

    # -------------------------------------------------------------- timeline

    def _get(self, batch_id: str, provider: str) -> dict[str, Any]:
        rec = self.state.batches.get(batch_id)
        if rec is None or rec["provider"] != provider:
            raise NotFound(batch_id)
        return rec

    @staticmethod
    def _progress(rec: dict[str, Any], t: float) -> float:
        T = float(rec["T"])
        if T <= 0:
            return 0.0
        span = (0.9 - finalizing_share(rec)) * T
        return min(1.0, max(0.0, (t - float(rec["created"]) - 0.1 * T) / span))

    async def _terminal(self, rec: dict[str, Any], now: float) -> tuple[str, int, float] | None:
        """``(status, items run, when)`` if the batch has reached its end at ``now``."""
        t0, T = rec["created"], rec["T"]
        openai = rec["provider"] == "openai"
        tc = rec["cancel_at"]
        if T <= 0 and tc is None and not rec.get("polled"):
            return None  # with T = 0 the end comes with the first poll, not before
        if openai and tc is None and now < t0 + 0.1 * T:
            return None
        if not openai and tc is None and now < t0 + T:
            return None
        if openai and tc is None and rec.get("refused"):
            return ("failed", 0, t0 + 0.1 * T)
        job = await self._job(rec)
        fault = job.fault
        if openai and fault == "fail":
            return ("failed", 0, t0 + 0.1 * T)
        if tc is not None:
            if now >= tc + 0.1 * T:
                return ("cancelled", items_run(job.n, self._progress(rec, tc)), tc + 0.1 * T)
            return None
        if now < t0 + T:
            return None
        if fault == "expire":
            return ("expired", self.fault_run(rec, job), t0 + T)
        if fault == "cancel":
            return ("cancelled", self.fault_run(rec, job), t0 + T)
        return ("completed", job.n, t0 + T)

    def fault_run(self, rec: Mapping[str, Any], job: Job) -> int:
        """How many items a batch cut short by its fault (``expire``, ``cancel``) has run.

        ``partial_done`` of them, rounded down, but never all: a fault named for a
        batch always hits at least one of its items, however small the batch.
        """
        if job.fault not in ("expire", "cancel"):
            return job.n
        share = self.config.partial_done
        if job.fault == "expire":
            # An API whose expired batches return nothing (Gemini) runs none of its items.
            share = float(rec.get("expired_done", share))
        return min(items_run(job.n, share), job.n - 1) if job.n else 0

    async def _settle(self, rec: dict[str, Any], now: float) -> None:
        if rec["final"] is not None:
            return
        end = await self._terminal(rec, now)
        if end is None or rec["final"] is not None:
            return
        task = self._finishing.get(rec["id"])
        if task is None:
            task = asyncio.ensure_future(self._finish(rec, *end))
            self._finishing[rec["id"]] = task
        await task

    async def _finish(self, rec: dict[str, Any], status: str, run: int, when: float) -> None:
        job = await self._job(rec)
        loop = asyncio.get_running_loop()
        faults = _LineFaults(self.config.drop_result_lines, self.config.foreign_result_lines)
        result = await loop.run_in_executor(
            None, _assemble, rec, job, status, run, self.config.seed, faults
        )
        # Each fault is used once, by the batch that shows it.
        self.config.drop_result_lines -= faults.dropped
        self.config.foreign_result_lines -= faults.foreign
        final: dict[str, Any] = {
            "status": status,
            "when": when,
            "counts": result.counts,
            "usage": (result.in_tokens, result.out_tokens),
        }
        openai = rec["provider"] == "openai"
        for kind, lines in (("output", result.output), ("error", result.errors)):
            file_id = None
            if lines:
                name = f"{rec['id']}_{kind}.jsonl" if openai else f"{rec['id']}_results.jsonl"
                purpose = "batch_output" if openai else "anthropic_batch_results"
                file_id = (
                    await loop.run_in_executor(None, self.state.add_file, lines, purpose, name)
                ).id
            final[f"{kind}_file_id"] = file_id
        refused = rec.get("refused")
        ran = not openai or started_before_cancel(rec)
        if refused:
            final["errors"] = [refused]
        elif status == "failed":
            final["errors"] = job.errors or [
                {
                    "code": "batch_failed",
                    "message": f"The batch for {job.model} failed and none of its requests ran. "
                    "Please try again later.",
                    "param": None,
                    "line": None,
                }
            ]
        self.state.batch_done(
            rec["id"],
            job.batch_key,
            # A batch refused for the queue, or cancelled while validating, never ran:
            # its items were not seen.
            job.custom_ids if ran and not refused else [],
            result.billed,
            result.in_tokens,
            result.out_tokens,
        )
        rec["final"] = final
        self.state.save_batch(rec)
        self._jobs.pop(rec["id"], None)

    async def tick(self) -> None:
        """Finish batches whose time has come (``T > 0`` only; with ``T = 0`` a poll ends them)."""
        now = time.time()
        for rec in list(self.state.batches.values()):
            if rec["final"] is None and rec["T"] > 0:
                await self._settle(rec, now)


def finalizing_share(rec: dict[str, Any]) -> float:
    return float(rec.get("F", 0.2))


def started_before_cancel(rec: Mapping[str, Any]) -> bool:
    """Whether an OpenAI batch had left ``validating`` before any cancel request reached it."""
    tc, T = rec["cancel_at"], float(rec["T"])
    return tc is None or (T > 0 and tc >= float(rec["created"]) + 0.1 * T)


def items_run(n: int, share: float) -> int:
    """How many of a batch's ``n`` items have run when ``share`` of its work is done.

    Items run in input order, so these are always its first items.
    """
    return n if share >= 1.0 else max(0, int(n * share))


def _first_model(data: bytes) -> str | None:
    """The model of a batch input file's first line (every line names the same one)."""
    first = data.split(b"\n", 1)[0]
    try:
        body = orjson.loads(first).get("body") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else None


def batch_usage(tokens: Any) -> dict[str, Any]:
    """A batch's ``usage`` object from its billed ``(input, output)`` tokens."""
    in_tokens, out_tokens = (int(t) for t in tokens)
    return {
        "input_tokens": in_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": in_tokens + out_tokens,
    }


class _Assembled:
    __slots__ = ("billed", "counts", "errors", "in_tokens", "out_tokens", "output")

    def __init__(self) -> None:
        self.output = b""
        self.errors = b""
        self.billed: list[str] = []
        self.in_tokens = 0
        self.out_tokens = 0
        self.counts: dict[str, int] = {}


class _LineFaults:
    """Result lines to leave out, and foreign lines to add, in the next batch to end."""

    __slots__ = ("drop", "dropped", "foreign")

    def __init__(self, drop: int, foreign: int) -> None:
        self.drop = drop
        self.dropped = 0
        self.foreign = foreign


def _assemble(
    rec: dict[str, Any],
    job: Job,
    status: str,
    run: int,
    seed: int,
    faults: _LineFaults | None = None,
) -> _Assembled:
    """Split a job's lines into output and error files for the way the batch ended.

    ``run``: how many of its items, the first ones, ran before it ended.
    """
    faults = faults or _LineFaults(0, 0)
    out = _Assembled()
    openai = rec["provider"] == "openai"
    if status == "failed" or (openai and not started_before_cancel(rec)):
        # None of its requests ran: nothing is counted and there are no result lines.
        out.counts = {"total": 0, "completed": 0, "failed": 0}
        return out
    everything = run >= job.n
    if openai and everything and not faults.drop and not faults.foreign and all(job.ok):
        # Every item answered, nothing to leave out: the output is the job's lines as they are.
        out.output = b"\n".join(job.lines) + b"\n" if job.lines else b""
        out.billed = list(job.custom_ids)
        out.in_tokens = sum(job.in_tokens)
        out.out_tokens = sum(job.out_tokens)
        out.counts = {"total": job.n, "completed": job.n, "failed": 0}
        return out
    good: list[bytes] = []
    bad: list[bytes] = []
    order: list[tuple[float, bytes]] = []
    n_ok = n_err = n_gone = 0
    stem = ids.Stem()
    for i, cid in enumerate(job.custom_ids):
        if i < run:
            line = job.lines[i]
            if job.ok[i] and faults.dropped < faults.drop:
                # Counted as run, but its line is lost (and, here, never billed).
                faults.dropped += 1
                n_ok += 1
                continue
            if job.ok[i]:
                n_ok += 1
                out.billed.append(cid)
                out.in_tokens += job.in_tokens[i]
                out.out_tokens += job.out_tokens[i]
                if openai:
                    good.append(line)
                else:
                    order.append((roll(seed, "order", cid), line))
            else:
                n_err += 1
                if openai:
                    bad.append(line)
                else:
                    order.append((roll(seed, "order", cid), line))
        else:
            n_gone += 1
            line = not_done_line(openai, cid, status, stem, i)
            if openai:
                bad.append(line)
            else:
                order.append((roll(seed, "order", cid), line))
    for k in range(faults.foreign):
        # A line naming a request this batch never had.
        cid = f"foreign-{rec['id']}-{k}"
        line = not_done_line(openai, cid, "expired", stem, job.n + k)
        if openai:
            bad.append(line)
        else:
            order.append((roll(seed, "order", cid), line))
    if openai:
        out.output = b"\n".join(good) + b"\n" if good else b""
        out.errors = b"\n".join(bad) + b"\n" if bad else b""
        out.counts = {"total": job.n, "completed": n_ok, "failed": n_err + n_gone}
    else:
        order.sort(key=lambda pair: pair[0])
        out.output = b"\n".join(line for _, line in order) + b"\n" if order else b""
        out.counts = {
            "processing": 0,
            "succeeded": n_ok,
            "errored": n_err,
            "canceled": n_gone if status == "cancelled" else 0,
            "expired": n_gone if status == "expired" else 0,
        }
    return out
