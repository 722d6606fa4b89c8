"""The result cache: every paid answer, kept by provider and request key.

``results``
    the cache, keyed by ``(provider, request key)``. The first stored result
    wins: a later identical request never overwrites a paid answer, unless
    that answer was retired first (``retired_results``).
``retired_results``
    cached answers set aside because they no longer fit their response
    model (see :meth:`CacheTables.retire_result`); kept, since they were paid for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from plugins.store.backend import Backend
from plugins.store.rows import StoredResult, dumps, second
from providers.types import Usage

__all__ = ["CacheTables"]

_RESULT_COLUMNS = "key, model, task, mode, text, usage, cost_usd, request_id, batch_id, created_at"


def _usage_json(usage: Usage) -> str:
    # Hour-long cache writes are rare: written only when there are some.
    hour = usage.cache_creation_1h_tokens
    return (
        f'{{"input_tokens":{usage.input_tokens},"output_tokens":{usage.output_tokens},'
        f'"cached_tokens":{usage.cached_tokens},"reasoning_tokens":{usage.reasoning_tokens},'
        f'"cache_creation_tokens":{usage.cache_creation_tokens}'
        + (f',"cache_creation_1h_tokens":{hour}}}' if hour else "}")
    )


def _usage_from_json(text: str, memo: dict[str, Usage]) -> Usage:
    # Rows often share token counts (same template, same answer size): parse each once.
    usage = memo.get(text)
    if usage is None:
        data = orjson.loads(text)
        get = data.get
        usage = memo[text] = Usage(
            get("input_tokens", 0),
            get("output_tokens", 0),
            get("cached_tokens", 0),
            get("reasoning_tokens", 0),
            get("cache_creation_tokens", 0),
            get("cache_creation_1h_tokens", 0),
        )
    return usage


def _result_from_row(row: Sequence[Any], memo: dict[str, Usage]) -> StoredResult:
    return StoredResult(
        key=row[0],
        model=row[1],
        task=row[2],
        mode=row[3],
        text=row[4],
        usage=_usage_from_json(row[5], memo),
        cost_usd=row[6],
        request_id=row[7],
        batch_id=row[8],
        created_at=row[9],
    )


class CacheTables(Backend):
    """The ``results`` and ``retired_results`` tables (a mixin of :class:`~plugins.store.Store`)."""

    def get_result(self, provider: str, key: str) -> StoredResult | None:
        """The cached result of request ``key`` at ``provider``, if there is one."""
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM results WHERE provider = ? AND key = ?",
            (provider, key),
        )
        return _result_from_row(rows[0], {}) if rows else None

    def get_results(self, provider: str, keys: Iterable[str]) -> dict[str, StoredResult]:
        """The cached results among ``keys``, by key (missing keys are absent)."""
        memo: dict[str, Usage] = {}
        sql = f"SELECT {_RESULT_COLUMNS} FROM results WHERE provider = ? AND key IN ({{marks}})"
        return {
            row[0]: _result_from_row(row, memo) for row in self._read_for_keys(sql, provider, keys)
        }

    def put_results(self, provider: str, results: Iterable[StoredResult]) -> int:
        """Cache results; returns how many were new.

        The first stored result for a key wins: an identical request answered
        later never overwrites a paid result.
        """
        now = time.time()
        rows = [
            (
                provider,
                r.key,
                r.model,
                r.task,
                r.mode,
                r.text,
                _usage_json(r.usage),
                r.cost_usd,
                r.request_id,
                r.batch_id,
                r.created_at or now,
            )
            for r in results
        ]
        rows.sort(key=second)
        return self._changes(
            "INSERT OR IGNORE INTO results (provider, key, model, task, mode, text, usage, "
            "cost_usd, request_id, batch_id, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )

    def result_keys(self, provider: str, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` that have a cached result (no result is read)."""
        sql = "SELECT key FROM results WHERE provider = ? AND key IN ({marks})"
        return {row[0] for row in self._read_for_keys(sql, provider, keys)}

    def count_results(self, provider: str | None = None) -> int:
        """How many results are cached (for one provider, or all)."""
        if provider is None:
            rows = self._read("SELECT COUNT(*) FROM results")
        else:
            rows = self._read("SELECT COUNT(*) FROM results WHERE provider = ?", (provider,))
        return int(rows[0][0])

    def retire_result(self, provider: str, key: str, *, text: str, reason: str) -> bool:
        """Set aside the cached answer ``text`` of ``key``, so that a new answer is stored.

        For an answer that no longer fits its request's response model (the
        model gained a field or a validator while its JSON schema, and so the
        key, stayed the same): asked again, the new answer is paid for once
        and kept, instead of being dropped in favour of the stale one and paid
        for again on every run. The old answer moves to ``retired_results``
        (a paid answer is never deleted), and the request's journal row, if it
        says ``succeeded``, says ``failed`` so a batch run may queue it again.
        Nothing happens when the cached answer is no longer ``text`` (another
        run retired it and stored a new one); returns whether it was retired.
        """
        now = time.time()
        error = dumps({"type": "SchemaValidationError", "message": reason})

        def run() -> bool:
            moved = self._execute(
                "INSERT INTO retired_results (provider, key, model, task, mode, text, usage, "
                "cost_usd, request_id, batch_id, created_at, retired_at, reason) "
                "SELECT provider, key, model, task, mode, text, usage, cost_usd, request_id, "
                "batch_id, created_at, ?, ? FROM results "
                "WHERE provider = ? AND key = ? AND text = ?",
                (now, reason, provider, key, text),
            )
            if not moved:
                return False
            self._execute("DELETE FROM results WHERE provider = ? AND key = ?", (provider, key))
            self._execute(
                "UPDATE requests SET state = 'failed', error = ?, updated_at = ? "
                "WHERE provider = ? AND key = ? AND state = 'succeeded'",
                (error, now, provider, key),
            )
            return True

        return self._write(run)

    def retired_results(self, provider: str, key: str) -> list[StoredResult]:
        """The answers of ``key`` set aside by :meth:`retire_result`, oldest first."""
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM retired_results WHERE provider = ? AND key = ? "
            "ORDER BY id",
            (provider, key),
        )
        return [_result_from_row(row, {}) for row in rows]

    def retired_keys(self, provider: str, batch_id: str, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` whose answer from batch ``batch_id`` was retired.

        Such an answer was stored, and billed in the ledger, before it was
        retired: reading the batch's results again must not bill it again.
        """
        sql = "SELECT key, batch_id FROM retired_results WHERE provider = ? AND key IN ({marks})"
        return {key for key, bid in self._read_for_keys(sql, provider, keys) if bid == batch_id}
