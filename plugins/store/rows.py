"""The rows the store reads and writes, and the states a journaled row may be in.

The rows written once per request (results, ledger, journal) are named
tuples: a hundred thousand of them are made per batch, and a frozen
dataclass costs several times as much to build.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, NamedTuple

import orjson

from plugins.store.keys import cell_order
from providers.types import Usage

__all__ = [
    "REQUEST_STATES",
    "SHARD_STATES",
    "UNFINISHED_SHARD_STATES",
    "CallRecord",
    "CostRow",
    "JournalRequest",
    "Shard",
    "StoredResult",
    "check_state",
    "dumps",
    "loads_opt",
    "second",
    "sort_by_key",
]


#: States of a journaled request.
REQUEST_STATES: Final = frozenset({"queued", "submitted", "succeeded", "failed"})
#: States of a journaled shard (one batch input file and the provider batch made from it).
SHARD_STATES: Final = frozenset(
    {"written", "uploaded", "submitting", "created", "ended", "collected", "failed"}
)
#: Shard states whose batch may still run at the provider (and be billed): to be resumed.
UNFINISHED_SHARD_STATES: Final = ("written", "uploaded", "submitting", "created", "ended")


class StoredResult(NamedTuple):
    """One cached result.

    Attributes:
        key: the request key.
        model: the model that answered.
        task: the request's task tag.
        mode: ``immediate`` or ``batch``.
        text: the raw content the model produced.
        usage: token counts of the call that produced it.
        cost_usd: what that call cost (``None``: unpriced).
        request_id: the provider's id of the call.
        batch_id: the provider's batch id, when batched.
        created_at: when it was stored (Unix time; 0 until stored).
        cell: ``key`` as the store keeps it (:func:`plugins.store.keys.key_cell`
            of it), when the caller has it at hand; ``None``: converted on write.
    """

    key: str
    model: str
    task: str | None
    mode: str
    text: str
    usage: Usage
    cost_usd: float | None = None
    request_id: str | None = None
    batch_id: str | None = None
    created_at: float = 0.0
    cell: bytes | str | None = None


class CallRecord(NamedTuple):
    """One paid call, as recorded in the usage ledger.

    Attributes:
        provider: the provider's registered name.
        model: the model billed.
        task: the request's task tag.
        mode: ``immediate`` or ``batch``.
        key: the request key.
        usage: token counts.
        cost_usd: the price paid (``None``: the model is unpriced).
        immediate_cost_usd: what the same call would cost immediately
            (``None``: unknown; an immediate call's own cost counts then).
        batch_id: the provider's batch id, when batched.
        ts: when the call finished (Unix time; ``None``: now).
        cell: ``key`` as the store keeps it (:func:`plugins.store.keys.key_cell`
            of it), when the caller has it at hand; ``None``: converted on write.
    """

    provider: str
    model: str
    task: str | None
    mode: str
    key: str
    usage: Usage = Usage()
    cost_usd: float | None = None
    immediate_cost_usd: float | None = None
    batch_id: str | None = None
    ts: float | None = None
    cell: bytes | str | None = None


@dataclass(frozen=True, slots=True)
class CostRow:
    """One line of the cost report: calls of one mode, task and model.

    Attributes:
        mode: ``immediate`` or ``batch``.
        task: the task tag (``None``: untagged).
        model: the model billed.
        requests: paid calls.
        input_tokens: input tokens, summed.
        output_tokens: output tokens, summed.
        cached_tokens: cached input tokens, summed.
        reasoning_tokens: reasoning tokens, summed.
        cost_usd: what the priced calls cost.
        immediate_cost_usd: what the priced calls would have cost immediately.
        unpriced: calls whose model has no price (not counted as free).
    """

    mode: str
    task: str | None
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float
    immediate_cost_usd: float
    unpriced: int

    @property
    def saving_usd(self) -> float:
        """What running these calls this way saved against immediate mode."""
        return self.immediate_cost_usd - self.cost_usd


class JournalRequest(NamedTuple):
    """One request in the request journal.

    Attributes:
        key: the request key (the batch ``custom_id``).
        model: the model it is sent to.
        task: its task tag.
        body: the canonical request JSON, enough to rebuild the request;
            empty once the request succeeded (its body is not kept then).
        state: ``queued``, ``submitted``, ``succeeded`` or ``failed``.
        shard_id: the shard it was last submitted in.
        attempts: how many shards it has been submitted in (batch rounds).
        error: the last error (``ProviderError.to_dict()`` form), if any.
        created_at: when it was journaled (0 until stored).
        updated_at: when its state last changed (0 until stored).
        cell: ``key`` as the store keeps it (:func:`plugins.store.keys.key_cell`
            of it), when the caller has it at hand; ``None``: converted on write.
    """

    key: str
    model: str
    task: str | None
    body: bytes
    state: str = "queued"
    shard_id: str | None = None
    attempts: int = 0
    error: dict[str, Any] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    cell: bytes | str | None = None


@dataclass(frozen=True, slots=True)
class Shard:
    """One batch input file and the provider batch made from it.

    Attributes:
        shard_id: our id of the shard.
        provider: the provider's registered name.
        model: the one model its requests go to.
        round: the retry round it belongs to (0: first submission).
        state: see :data:`SHARD_STATES`.
        path: the JSONL input file.
        requests: how many requests it holds.
        bytes: the input file's size.
        input_file_id: the provider's id of the uploaded file.
        batch_id: the provider's batch id, once created.
        batch_status: the provider's last reported status.
        counts: the provider's last reported request counts.
        raw: the provider's last batch object.
        error: why the shard failed, if it did.
        created_at: when it was journaled (0 until stored).
        updated_at: when it last changed (0 until stored).
    """

    shard_id: str
    provider: str
    model: str
    round: int = 0
    state: str = "written"
    path: str | None = None
    requests: int = 0
    bytes: int = 0
    input_file_id: str | None = None
    batch_id: str | None = None
    batch_status: str | None = None
    counts: dict[str, Any] | None = None
    raw: dict[str, Any] | None = None
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


def dumps(value: Any) -> str:
    """``value`` as compact JSON text."""
    return orjson.dumps(value).decode()


def loads_opt(text: str | None) -> Any:
    """The value of JSON ``text`` (``None`` stays ``None``)."""
    return None if text is None else orjson.loads(text)


def check_state(state: str, allowed: frozenset[str], what: str) -> None:
    """Raise :class:`ValueError` unless ``state`` is one of ``allowed`` (``what``: the row kind)."""
    if state not in allowed:
        raise ValueError(f"unknown {what} state {state!r}; expected one of {sorted(allowed)}")


def second(row: tuple[Any, ...]) -> Any:
    """A row's second value: the key, in rows that start with their provider or namespace.

    Rows are written sorted by key, so that one write touches index pages in order.
    """
    return row[1]


def sort_by_key(rows: list[tuple[Any, ...]], index: int) -> None:
    """Sort ``rows`` by the stored request key at ``index``, in SQLite's order (in place).

    Rows are written sorted by key, so that one write touches index pages in
    order. Keys are usually all blobs: sorted as they are, with no tuple made
    per row; a mix of text and blob keys is sorted text first, as SQLite does.
    """
    try:
        rows.sort(key=itemgetter(index))
    except TypeError:
        rows.sort(key=lambda row: cell_order(row[index]))
