"""Judging one chunk of a batch's result lines: the rows to store, the answers to hand over.

A batch's answers arrive by the tens of thousands, so a chunk is judged in
one pass that makes, for each answer, only what is kept: its ledger row,
its cache row and the :class:`~providers.types.Response` its caller gets.
An answer that fits takes the short way: its content is checked once by
what was compiled for its shape (a response model's validator, a raw JSON
schema's checker from :func:`~providers.validation.schema_validator`, or
nothing for a text request), then its response is made directly. Any other
answer (a refusal, content that does not fit or cannot be stored, a schema
that cannot check answers) goes through
:func:`~plugins.results.build_response`, which says what is wrong with it.
Both ways validate with the same compiled validators, and the short way
makes the same :class:`Response` that :func:`build_response` makes.

Nothing is written here: :class:`~plugins.batch.settlement.Settlement`
stores the rows in one transaction before any caller is told.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from plugins.results import build_response, model_validator, storable, unusable
from plugins.store import CallRecord, StoredResult
from plugins.store.keys import key_cell
from providers.errors import (
    BatchCancelledError,
    LexibatchError,
    ProviderError,
    UnusableAnswerError,
)
from providers.stop import StopReason, normalize_stop
from providers.types import ItemResult, Response, Usage
from providers.validation import schema_validator

if TYPE_CHECKING:
    from pydantic import BaseModel

    from plugins.batch.promise import BatchRequest

__all__ = ["Judged", "judge_items"]


class Judged:
    """What one chunk's lines came to.

    Attributes:
        calls: the ledger rows of the answers to bill (every answer read,
            valid or not, except those billed already).
        results: the cache rows of the valid answers.
        succeeded: each valid answer's pending request and response.
        failed: each failed request's pending record and error.
    """

    __slots__ = ("calls", "failed", "results", "succeeded")

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.results: list[StoredResult] = []
        self.succeeded: list[tuple[BatchRequest, Response]] = []
        self.failed: list[tuple[BatchRequest, LexibatchError]] = []


def judge_items(
    items: list[ItemResult],
    *,
    waiting: Mapping[str, BatchRequest],
    stubs: Mapping[str, BatchRequest],
    done: set[str],
    billed: set[str],
    costs: Callable[[str, Usage, Any], tuple[float | None, float | None]],
    provider: str,
    batch_id: str,
    now: float,
    cancelled: Callable[[BatchCancelledError], LexibatchError],
) -> Judged:
    """Judge each line of ``items`` whose request is waiting (see the module).

    Args:
        items: the chunk's lines.
        waiting: this run's pending requests, by key.
        stubs: pending records rebuilt for lines nobody waits for (still
            stored and billed: they were paid for).
        done: the keys not to judge (answered already, or not this
            shard's); each key judged is added, so a line read twice counts once.
        billed: the keys whose answer is in the ledger already.
        costs: ``(cost, immediate cost)`` of a model's usage in a mode.
        provider: the provider's registered name.
        batch_id: the provider's batch id.
        now: the time the ledger rows carry.
        cancelled: the error of a line the batch's cancel ended (asked
            per line: the user's own cancel ends it for good).
    """
    judged = Judged()
    calls = judged.calls.append
    results = judged.results.append
    succeeded = judged.succeeded.append
    failed = judged.failed.append
    waiting_get = waiting.get
    stubs_get = stubs.get
    add_done = done.add
    # What judges each shape of answer (by the shape's identity: the waiting
    # requests keep their shapes alive) and each raw stop reason's meaning,
    # found once a chunk rather than once an answer.
    judges: dict[int, Callable[[str], Any] | None] = {}
    stops: dict[Any, StopReason | None] = {}
    for item in items:
        key = item.custom_id
        if key in done:
            continue
        pending = waiting_get(key) or stubs_get(key)
        if pending is None:
            continue
        add_done(key)
        completion = item.completion
        if completion is None:
            # A line with neither an answer nor an error breaks the provider's
            # contract (see BatchEndpoint.results); it may be billed, so it is
            # not sent again.
            error: LexibatchError = item.error or UnusableAnswerError(
                "the batch's result line for this request holds neither an answer nor an "
                "error; not sent again, as it may be paid for (run it again to pay again)",
                provider=provider,
            )
            if isinstance(error, BatchCancelledError):
                error = cancelled(error)
            failed((pending, error))
            continue
        model = completion.model or pending.model
        usage = completion.usage
        # Priced once per shared Usage: the pricer remembers the last costs by usage.
        cost, immediate = costs(model, usage, "batch")
        # The key as the store keeps it, converted once for both rows.
        cell = key_cell(key)
        if key not in billed:
            calls(
                _row(
                    CallRecord,
                    (
                        provider,
                        model,
                        pending.task,
                        "batch",
                        key,
                        usage,
                        cost,
                        immediate,
                        batch_id,
                        now,
                        cell,
                    ),
                )
            )
        response: Response | None = None
        if not completion.refusal:
            shape = pending.shape
            judge = judges.get(id(shape), _UNSEEN)
            if judge is _UNSEEN:
                judge = judges[id(shape)] = _judge_of(shape)
            if judge is not None:
                try:
                    content = completion.content
                    output = judge(content)
                    # What storable() checks: text SQLite can encode.
                    content.encode()
                    finish = completion.finish_reason
                    stop = stops.get(finish, _UNSEEN)
                    if stop is _UNSEEN:
                        stop = stops[finish] = normalize_stop(finish)
                    # As build_response makes it for an answer that fits.
                    response = Response(
                        output,
                        content,
                        usage,
                        cost,
                        provider,
                        model,
                        "batch",
                        key,
                        completion.request_id,
                        batch_id,
                        False,
                        stop,
                        finish,
                    )
                except Exception:
                    # Judged again the long way below, which names what is wrong.
                    response = None
        if response is None:
            try:
                response = build_response(
                    pending,  # type: ignore[arg-type]
                    completion,
                    provider=provider,
                    mode="batch",
                    cost_usd=cost,
                    batch_id=batch_id,
                )
                storable(response.text)
            except ProviderError as exc:
                # Does not fit, was cut at max_tokens, was refused, or cannot be used at all.
                failed((pending, exc))
                continue
            except Exception as exc:
                # Whatever this one answer does, the rest of the batch is stored.
                failed((pending, unusable(exc, completion.content, provider)))
                continue
        results(
            _row(
                StoredResult,
                (
                    key,
                    response.model,
                    pending.task,
                    "batch",
                    response.text,
                    usage,
                    cost,
                    response.request_id,
                    batch_id,
                    0.0,
                    cell,
                ),
            )
        )
        succeeded((pending, response))
    return judged


def _judge_of(shape: type[BaseModel] | Mapping[str, Any] | None) -> Callable[[str], Any] | None:
    """What makes an answer's output from its content the short way, for answers of ``shape``.

    The callable returns the output :func:`~plugins.results.validate_content`
    returns for content that fits, and raises (anything) for content that
    does not; ``None``: every answer of ``shape`` goes the long way.
    """
    if shape is None:
        return _as_text
    if isinstance(shape, type):
        return model_validator(shape)
    try:
        checker = schema_validator(shape)
    except Exception:
        # A schema that cannot check answers: the long way says so for each.
        return None
    return functools.partial(_fitting, checker.first_error)


def _as_text(content: str) -> str:
    """The output of a request without a schema: its text."""
    return content


def _fitting(first_error: Callable[[Any], Any], content: str) -> Any:
    """``content`` parsed once, if it fits the schema whose ``first_error`` is given."""
    value = orjson.loads(content)
    if first_error(value) is not None:
        raise _Unfit
    return value


class _Unfit(Exception):
    """An answer that does not fit its schema (the long way says how)."""


# A named tuple made from a tuple of all its fields, without the Python-level
# __new__ that takes them one by one (two rows an answer).
_row = tuple.__new__

# A stop reason not looked up yet (None is one that was: the provider gave none).
_UNSEEN: Any = object()
