"""The result cache: every paid answer, kept by provider and request key.

``results``
    the cache, one row per ``(provider, request key)``, under the key's id
    (:mod:`plugins.store.keyids`): the answers to a shard's requests sit
    together, beside their journal rows' ids, and a commit writes few pages
    however large the cache grows. The first stored result wins: a later
    identical request never overwrites a paid answer, unless that answer
    was retired first (``retired_results``).
``result_providers``
    every provider the cache has held a result of: one probe says whether
    looking up a run's keys is worth it at all.
``retired_results``
    cached answers set aside because they no longer fit their response
    model (see :meth:`CacheTables.retire_result`), and paid answers that did
    not fit, kept with the re-ask they led to (:meth:`CacheTables.keep_reasked`);
    kept, since they were paid for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from plugins.store.keyids import BY_KEY, BY_KEYS, KeyIds
from plugins.store.keys import key_cell, key_text
from plugins.store.refs import BATCH_ID_OF, RefTables
from plugins.store.rows import StoredResult, dumps, sort_by_key
from providers.types import Request, Usage

__all__ = ["CacheTables"]

_USAGE_COLUMNS = (
    "input_tokens, output_tokens, cached_tokens, reasoning_tokens, cache_creation_tokens, "
    "cache_creation_1h_tokens"
)
_RESULT_COLUMNS = (
    f"key, model, task, mode, text, {_USAGE_COLUMNS}, cost_usd, provider_request_id, "
    f"{BATCH_ID_OF.format(t='r')}, created_at"
)
_RESULT_INSERT = (
    f"provider, key, model, task, mode, text, {_USAGE_COLUMNS}, cost_usd, provider_request_id, "
    "batch, created_at"
)


#: One answer under its key's id; its parameters are :data:`_RESULT_INSERT`'s columns.
_PUT_RESULT = (
    f"INSERT OR IGNORE INTO results (id, {_RESULT_INSERT}) SELECT id, "
    + ", ".join(f"?{i}" for i in range(1, 17))
    + " FROM keys WHERE provider = ?1 AND key = ?2"
)
_BY_KEY = BY_KEY.format(t="results")
_BY_KEYS = BY_KEYS.format(t="r")
#: The start of the reason of an answer kept by ``keep_reasked``.
REASK_REASON = "reask "
#: Put before it once the re-ask ended (``spend_reasks``).
SPENT_PREFIX = "spent "


def _result_from_row(row: Sequence[Any], memo: dict[tuple[int, ...], Usage]) -> StoredResult:
    # Rows often share token counts (same template, same answer size): one Usage each.
    counts = tuple(row[5:11])
    usage = memo.get(counts)
    if usage is None:
        usage = memo[counts] = Usage(*counts)
    return StoredResult(
        key_text(row[0]), row[1], row[2], row[3], row[4], usage, row[11], row[12], row[13], row[14]
    )


class CacheTables(RefTables, KeyIds):
    """The ``results``, ``result_providers`` and ``retired_results`` tables.

    A mixin of :class:`~plugins.store.Store`.
    """

    def get_result(self, provider: str, key: str) -> StoredResult | None:
        """The cached result of request ``key`` at ``provider``, if there is one."""
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM results r WHERE {BY_KEY.format(t='r')}",
            (provider, key_cell(key)),
        )
        return _result_from_row(rows[0], {}) if rows else None

    def get_results(self, provider: str, keys: Iterable[str]) -> dict[str, StoredResult]:
        """The cached results among ``keys``, by key (missing keys are absent).

        A cache holding no result of ``provider`` (a new store, a first run)
        answers from one probe of its index, without converting and sending
        every key.
        """
        if not self.has_results(provider):
            return {}
        return self._results_stored_as(provider, {key_cell(k) for k in keys})

    def get_results_of(self, provider: str, requests: Iterable[Request]) -> dict[str, StoredResult]:
        """The cached results of ``requests``, by key (as :meth:`get_results`).

        Each key is sent as the bytes its request keeps
        (:attr:`~providers.types.Request.key_bytes`), not read back from its digits.
        """
        if not self.has_results(provider):
            return {}
        return self._results_stored_as(provider, {r.key_bytes for r in requests})

    def _results_stored_as(
        self, provider: str, cells: Iterable[bytes | str]
    ) -> dict[str, StoredResult]:
        """The cached results among the keys stored as ``cells`` (see plugins.store.keys)."""
        memo: dict[tuple[int, ...], Usage] = {}
        sql = f"SELECT {_RESULT_COLUMNS} FROM results r WHERE {_BY_KEYS}"
        found = (_result_from_row(row, memo) for row in self._read_for_keys(sql, provider, cells))
        return {result.key: result for result in found}

    def has_results(self, provider: str) -> bool:
        """Whether the cache has held a result of ``provider`` (one probe).

        Still true once they were all retired: it says whether looking up
        keys may find anything, and a lookup that finds nothing is correct.
        """
        rows = self._read(
            "SELECT EXISTS (SELECT 1 FROM result_providers WHERE provider = ?)", (provider,)
        )
        return bool(rows[0][0])

    def put_results(
        self, provider: str, results: Iterable[StoredResult], *, journaled: bool = False
    ) -> int:
        """Cache results; returns how many were new.

        The first stored result for a key wins: an identical request answered
        later never overwrites a paid result.

        Args:
            journaled: the answers are of journaled requests (a batch's), so
                their keys have ids already and are not entered first. Only
                a hint: keys that turn out new are entered all the same.
        """
        now = time.time()
        stored = list(results)
        if not stored:
            return 0

        def run() -> int:
            refs = self._batch_refs(r.batch_id for r in stored)
            # Unpacked, not read by field name: this runs once per answer.
            rows = [
                (
                    provider,
                    cell or key_cell(key),
                    model,
                    task,
                    mode,
                    text,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cached_tokens,
                    usage.reasoning_tokens,
                    usage.cache_creation_tokens,
                    usage.cache_creation_1h_tokens,
                    cost,
                    request_id,
                    refs[batch],
                    created or now,
                )
                for (
                    key,
                    model,
                    task,
                    mode,
                    text,
                    usage,
                    cost,
                    request_id,
                    batch,
                    created,
                    cell,
                ) in stored
            ]
            # Each row goes in under its key's id, found inside SQLite. A
            # shard's keys took their ids in key order when journaled, so in
            # key order its answers go in beside each other.
            sort_by_key(rows, 1)
            self._execute(
                "INSERT OR IGNORE INTO result_providers (provider) VALUES (?)", (provider,)
            )
            if not journaled:
                self._enter_keys(provider, [row[1] for row in rows])
            added = self._execute_many(_PUT_RESULT, rows)
            if journaled and added < len(rows):
                # Keys never journaled, or answers stored already: the
                # latter are left alone again, the former now go in.
                self._enter_keys(provider, [row[1] for row in rows])
                added += self._execute_many(_PUT_RESULT, rows)
            return added

        return self._write(run)

    def result_keys(self, provider: str, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` that have a cached result (no result is read)."""
        sql = f"SELECT key FROM results r WHERE {_BY_KEYS}"
        return {key_text(row[0]) for row in self._read_keys(sql, provider, keys)}

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
        cell = key_cell(key)

        def run() -> bool:
            moved = self._execute(
                f"INSERT INTO retired_results ({_RESULT_INSERT}, retired_at, reason) "
                f"SELECT {_RESULT_INSERT}, ?, ? FROM results "
                f"WHERE {_BY_KEY} AND text = ?",
                (now, reason, provider, cell, text),
            )
            if not moved:
                return False
            self._execute(f"DELETE FROM results WHERE {_BY_KEY}", (provider, cell))
            self._execute(
                "UPDATE requests SET state = 'failed', error = ?, updated_at = ? "
                f"WHERE {BY_KEY.format(t='requests')} AND state = 'succeeded'",
                (error, now, provider, cell),
            )
            return True

        return self._write(run)

    def keep_reasked(self, provider: str, result: StoredResult, *, state: str) -> None:
        """Keep a paid answer that did not fit, and the re-ask it led to (``state``, JSON).

        Set aside in ``retired_results`` (reason ``reask …``), it is what a
        run stopped while that re-ask was out resumes from
        (:meth:`pending_reask`), instead of paying for the first question again.
        """
        now = time.time()
        row = (
            provider,
            key_cell(result.key),
            result.model,
            result.task,
            result.mode,
            result.text,
            result.usage.input_tokens,
            result.usage.output_tokens,
            result.usage.cached_tokens,
            result.usage.reasoning_tokens,
            result.usage.cache_creation_tokens,
            result.usage.cache_creation_1h_tokens,
            result.cost_usd,
            result.request_id,
            None,
            now,
            now,
            f"{REASK_REASON}{state}",
        )
        sql = (
            f"INSERT INTO retired_results ({_RESULT_INSERT}, retired_at, reason) "
            f"VALUES ({', '.join('?' * len(row))})"
        )
        self._write(lambda: self._execute(sql, row))

    def spend_reasks(self, provider: str, key: str) -> None:
        """Mark the re-asks :meth:`keep_reasked` kept for ``key`` as ended (answered, or used
        up): :meth:`pending_reask` no longer gives them. The answers stay."""
        self._write(
            lambda: self._execute(
                "UPDATE retired_results SET reason = ? || reason "
                "WHERE provider = ? AND key = ? AND reason LIKE ?",
                (SPENT_PREFIX, provider, key_cell(key), f"{REASK_REASON}%"),
            )
        )

    def pending_reask(self, provider: str, key: str) -> str | None:
        """The state :meth:`keep_reasked` kept last for ``key``, if any."""
        rows = self._read(
            "SELECT reason FROM retired_results WHERE provider = ? AND key = ? AND reason LIKE ? "
            "ORDER BY id DESC LIMIT 1",
            (provider, key_cell(key), f"{REASK_REASON}%"),
        )
        return str(rows[0][0])[len(REASK_REASON) :] if rows else None

    def retired_results(self, provider: str, key: str) -> list[StoredResult]:
        """The answers of ``key`` set aside (:meth:`retire_result`, :meth:`keep_reasked`), oldest
        first."""
        rows = self._read(
            f"SELECT {_RESULT_COLUMNS} FROM retired_results r WHERE provider = ? AND key = ? "
            "ORDER BY id",
            (provider, key_cell(key)),
        )
        return [_result_from_row(row, {}) for row in rows]

    def retired_keys(self, provider: str, batch_id: str, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` whose answer from batch ``batch_id`` was retired.

        Such an answer was stored, and billed in the ledger, before it was
        retired: reading the batch's results again must not bill it again.
        """
        ref = self._batch_ref(batch_id)
        if ref is None:
            return set()
        sql = "SELECT key, batch FROM retired_results WHERE provider = ? AND key IN ({marks})"
        return {key_text(key) for key, bid in self._read_keys(sql, provider, keys) if bid == ref}
