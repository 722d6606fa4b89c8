"""The batch objects as each API shows them: get, cancel and list, and Anthropic's results.

:class:`BatchEngine` is the emulator's batch engine: the life cycles of
:class:`~providers.emulator.batches.BatchLifecycle`, seen through OpenAI's
Batches API and Anthropic's Message Batches API.
"""

from __future__ import annotations

import time
from typing import Any

from providers.emulator.batches import (
    DAY,
    BatchLifecycle,
    Conflict,
    NotReady,
    batch_usage,
    finalizing_share,
    iso,
    items_run,
    started_before_cancel,
)
from providers.emulator.jobs import Job

__all__ = ["BatchEngine"]


def _counts(job: Job, run: int) -> dict[str, int]:
    """OpenAI's ``request_counts`` once the first ``run`` items of ``job`` have run."""
    completed, failed = job.ran(run)
    return {"total": job.n, "completed": completed, "failed": failed}


class BatchEngine(BatchLifecycle):
    """Creates, advances, cancels, lists and finishes batches, as each API shows them."""

    def create_openai(
        self,
        input_file_id: str,
        endpoint: str,
        window: str,
        metadata: Any,
        *,
        batch_id: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A new OpenAI batch; its answer says ``validating``.

        ``batch_id`` and ``extra`` serve the APIs run on this engine (Gemini,
        Mistral): their own id shape, and a ``wire`` field naming the API,
        which keeps the batch out of OpenAI's list.
        """
        rec = self.record_openai(
            input_file_id, endpoint, window, metadata, batch_id=batch_id, extra=extra
        )
        return self._openai_obj(rec, "validating", {}, {"total": 0, "completed": 0, "failed": 0})

    def create_anthropic(
        self,
        raw: bytes,
        requests: list[Any],
        origin: str,
        tokens: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """A new message batch from its create body ``raw``; the answer says ``in_progress``.

        ``tokens``: its enqueued tokens by model, if they were counted already.
        """
        rec = self.record_anthropic(raw, requests, tokens)
        return self._anthropic_obj(rec, "in_progress", origin)

    # ---------------------------------------------------------------- OpenAI

    async def get_openai(self, batch_id: str) -> dict[str, Any]:
        """The batch object as a poll sees it now."""
        rec = self._get(batch_id, "openai")
        rec["polled"] = True
        now = time.time()
        await self._settle(rec, now)
        return await self._openai_view(rec, now, poll=True)

    async def cancel_openai(self, batch_id: str) -> dict[str, Any]:
        """Ask for cancellation: the answer says ``cancelling``."""
        rec = self._get(batch_id, "openai")
        now = time.time()
        await self._settle(rec, now)
        if rec["final"] is not None:
            raise Conflict(f"Cannot cancel a batch with status '{rec['final']['status']}'.")
        if rec["cancel_at"] is None:
            rec["cancel_at"] = now
            self.state.save_batch(rec)
        return await self._openai_view(rec, now, poll=False, answering_cancel=True)

    async def list_openai(self, limit: int, after: str | None) -> dict[str, Any]:
        """A page of batches, newest first."""
        recs = sorted(
            (
                r
                for r in self.state.batches.values()
                if r["provider"] == "openai" and "wire" not in r
            ),
            key=lambda r: r["created"],
            reverse=True,
        )
        start = 0
        if after is not None:
            for i, r in enumerate(recs):
                if r["id"] == after:
                    start = i + 1
                    break
        page = recs[start : start + limit]
        now = time.time()
        data = [await self._openai_view(r, now, poll=False) for r in page]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < len(recs),
        }

    async def _openai_view(
        self, rec: dict[str, Any], now: float, *, poll: bool, answering_cancel: bool = False
    ) -> dict[str, Any]:
        t0, T = rec["created"], rec["T"]
        final = rec["final"]
        at: dict[str, int] = {}
        if final is not None:
            status = final["status"]
            when = final["when"]
            if status != "failed" and started_before_cancel(rec):
                at["in_progress_at"] = int(t0 + 0.1 * T)
            if status == "completed":
                # Set even when finalizing passed between two polls.
                at["finalizing_at"] = int(t0 + (1 - finalizing_share(rec)) * T)
                at["completed_at"] = int(when)
            elif status == "failed":
                at["failed_at"] = int(when)
            elif status == "expired":
                at["expired_at"] = int(when)
            elif status == "cancelled":
                tc = rec["cancel_at"] if rec["cancel_at"] is not None else t0 + 0.5 * T
                at["cancelling_at"] = int(tc)
                at["cancelled_at"] = int(when)
            counts = final["counts"]
            output_file_id = final["output_file_id"]
            if poll and status == "completed" and rec.get("missing_polls", 0) > 0:
                rec["missing_polls"] -= 1
                self.state.save_batch(rec)
                output_file_id = None
            errors = {"object": "list", "data": final["errors"]} if "errors" in final else None
            return self._openai_obj(
                rec, status, at, counts, output_file_id, final["error_file_id"], errors
            )
        tc = rec["cancel_at"]
        validating = now < t0 + 0.1 * T or (T <= 0 and not rec.get("polled"))
        none_yet = {"total": 0, "completed": 0, "failed": 0}
        if tc is not None:
            at["cancelling_at"] = int(tc)
            if not started_before_cancel(rec):
                return self._openai_obj(rec, "cancelling", at, none_yet)
            at["in_progress_at"] = int(t0 + 0.1 * T)
            job = await self._job(rec)
            counts = _counts(job, items_run(job.n, self._progress(rec, tc)))
            return self._openai_obj(rec, "cancelling", at, counts)
        if validating:
            return self._openai_obj(rec, "validating", at, none_yet)
        at["in_progress_at"] = int(t0 + 0.1 * T)
        # The counts are those of the items run so far, answered or failed as the job has them.
        job = await self._job(rec)
        fault = job.fault
        run = items_run(job.n, self._progress(rec, now))
        if fault in ("expire", "cancel"):
            run = min(run, self.fault_run(rec, job))
        if fault == "cancel" and now >= t0 + 0.5 * T:
            at["cancelling_at"] = int(t0 + 0.5 * T)
            return self._openai_obj(rec, "cancelling", at, _counts(job, run))
        if now >= t0 + (1 - finalizing_share(rec)) * T and fault not in ("expire", "cancel"):
            at["finalizing_at"] = int(t0 + (1 - finalizing_share(rec)) * T)
            return self._openai_obj(rec, "finalizing", at, _counts(job, job.n))
        return self._openai_obj(rec, "in_progress", at, _counts(job, run))

    @staticmethod
    def _openai_obj(
        rec: dict[str, Any],
        status: str,
        at: dict[str, int],
        counts: dict[str, int],
        output_file_id: str | None = None,
        error_file_id: str | None = None,
        errors: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        t0 = rec["created"]
        final = rec["final"]
        spent = final.get("usage") if final is not None and status == "completed" else None
        return {
            "id": rec["id"],
            "object": "batch",
            "endpoint": rec["endpoint"],
            "errors": errors,
            "input_file_id": rec["input_file_id"],
            "completion_window": rec["completion_window"],
            "status": status,
            "output_file_id": output_file_id,
            "error_file_id": error_file_id,
            "created_at": int(t0),
            "in_progress_at": at.get("in_progress_at"),
            "expires_at": int(t0) + DAY,
            "finalizing_at": at.get("finalizing_at"),
            "completed_at": at.get("completed_at"),
            "failed_at": at.get("failed_at"),
            "expired_at": at.get("expired_at"),
            "cancelling_at": at.get("cancelling_at"),
            "cancelled_at": at.get("cancelled_at"),
            "request_counts": dict(counts),
            "metadata": rec["metadata"],
            # Unknown while validating, as on the real API.
            "model": rec.get("model") if status != "validating" else None,
            "usage": batch_usage(spent or (0, 0)),
        }

    # ------------------------------------------------------------- Anthropic

    async def get_anthropic(self, batch_id: str, origin: str) -> dict[str, Any]:
        """The message batch as a poll sees it now."""
        rec = self._get(batch_id, "anthropic")
        rec["polled"] = True
        now = time.time()
        await self._settle(rec, now)
        return self._anthropic_view(rec, now, origin)

    async def cancel_anthropic(self, batch_id: str, origin: str) -> dict[str, Any]:
        """Ask for cancellation: the answer says ``canceling``."""
        rec = self._get(batch_id, "anthropic")
        now = time.time()
        await self._settle(rec, now)
        if rec["final"] is not None:
            raise Conflict(f"Batch {batch_id} has already ended and cannot be canceled.")
        if rec["cancel_at"] is None:
            rec["cancel_at"] = now
            self.state.save_batch(rec)
        return self._anthropic_obj(rec, "canceling", origin)

    async def list_anthropic(
        self, limit: int, after_id: str | None, before_id: str | None, origin: str
    ) -> dict[str, Any]:
        """A page of message batches, newest first."""
        recs = sorted(
            (r for r in self.state.batches.values() if r["provider"] == "anthropic"),
            key=lambda r: r["created"],
            reverse=True,
        )
        position = {r["id"]: i for i, r in enumerate(recs)}
        if after_id is not None and after_id in position:
            start = position[after_id] + 1
            page = recs[start : start + limit]
            has_more = start + limit < len(recs)
        elif before_id is not None and before_id in position:
            end = position[before_id]
            page = recs[max(0, end - limit) : end]
            has_more = end - limit > 0
        else:
            page = recs[:limit]
            has_more = limit < len(recs)
        now = time.time()
        data = [self._anthropic_view(r, now, origin) for r in page]
        return {
            "data": data,
            "has_more": has_more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }

    async def results_anthropic(self, batch_id: str) -> str:
        """The id of the results file; :class:`NotReady` before the batch has ended."""
        rec = self._get(batch_id, "anthropic")
        await self._settle(rec, time.time())
        final = rec["final"]
        if final is None:
            raise NotReady(batch_id)
        return str(final["output_file_id"])

    def _anthropic_view(self, rec: dict[str, Any], now: float, origin: str) -> dict[str, Any]:
        final = rec["final"]
        if final is not None:
            return self._anthropic_obj(rec, "ended", origin)
        t0, T = rec["created"], rec["T"]
        job = self._jobs.get(rec["id"])
        fault = job.result().fault if job is not None and job.done() else None
        if rec["cancel_at"] is not None or (fault == "cancel" and now >= t0 + 0.5 * T):
            return self._anthropic_obj(rec, "canceling", origin)
        return self._anthropic_obj(rec, "in_progress", origin)

    def _anthropic_obj(self, rec: dict[str, Any], status: str, origin: str) -> dict[str, Any]:
        t0, T = rec["created"], rec["T"]
        final = rec["final"]
        cancel_at = rec["cancel_at"]
        if (cancel_at is None and final is not None and final["status"] == "cancelled") or (
            cancel_at is None and status == "canceling"
        ):
            cancel_at = t0 + 0.5 * T
        if final is not None:
            counts = final["counts"]
        else:
            counts = {
                "processing": rec["n"],
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            }
        return {
            "id": rec["id"],
            "type": "message_batch",
            "processing_status": status,
            "request_counts": dict(counts),
            "ended_at": iso(final["when"]) if final is not None else None,
            "created_at": iso(t0),
            "expires_at": iso(t0 + DAY),
            "archived_at": None,
            "cancel_initiated_at": iso(cancel_at) if cancel_at is not None else None,
            "results_url": f"{origin}/v1/messages/batches/{rec['id']}/results"
            if final is not None
            else None,
        }
