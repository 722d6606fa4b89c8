"""``lexibatch run``: provider-neutral requests from a JSONL file, results to a JSONL file.

Input, one request per line::

    {"id": "optional-id", "messages": [{"role": "user", "content": "..."}],
     "model": "optional", "task": "optional", "schema": {JSON schema, optional},
     "schema_name": "optional", "max_tokens": 100, "temperature": 0}

``"prompt": "text"`` may stand for a single user message. Output, one line
per input line, in input order: ``{"id", "key", "status": "succeeded",
"output", "usage", "cost_usd", "mode", "model", "batch_id", "cached"}`` or
``{"id", "key", "status": "failed", "error": {...}}``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from plugins.outfile import write_atomically
from plugins.retry import is_unreachable
from providers.errors import InputError, LexibatchError, ProviderError, StoreWriteError
from providers.money import to_decimal
from providers.schema import make_strict
from providers.types import Message, Request, Response

if TYPE_CHECKING:
    from plugins.connector import LexiConnector

__all__ = ["JobItem", "JobSummary", "read_requests", "run_requests"]

_KNOWN = frozenset(
    {
        "id",
        "messages",
        "prompt",
        "system",
        "model",
        "task",
        "schema",
        "schema_name",
        "max_tokens",
        "temperature",
        "extras",
    }
)
_ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class JobItem:
    """One input line: its id and its request."""

    id: str
    request: Request


@dataclass
class JobSummary:
    """What a run did."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    #: What the answers written cost (exactly); the ledger also holds failed requests' calls.
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0
    #: The failure that showed the provider could not be reached, if one did.
    unreachable: ProviderError | None = None
    #: Requests that failed because the provider could not be reached.
    not_reached: int = 0


def read_requests(path: Path, *, default_model: str, route: Any = None) -> list[JobItem]:
    """Parse a request file; a malformed line is an :class:`InputError` naming file and line."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the request file ({exc.strerror})") from None
    items: list[JobItem] = []
    with handle:
        for lineno, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            items.append(_parse_line(raw, f"{path}:{lineno}", lineno, default_model, route))
    if not items:
        raise InputError(f"{path}: no requests in the file")
    return items


def _parse_line(raw: bytes, where: str, lineno: int, default_model: str, route: Any) -> JobItem:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object per line")
    unknown = set(obj) - _KNOWN
    if unknown:
        raise InputError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_KNOWN))}"
        )
    messages: list[Message] = []
    if obj.get("system") is not None:
        messages.append(Message("system", _text(obj["system"], "system", where)))
    if "messages" in obj:
        if not isinstance(obj["messages"], list) or not obj["messages"]:
            raise InputError(f"{where}: messages must be a non-empty list")
        for i, m in enumerate(obj["messages"]):
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise InputError(
                    f"{where}: messages[{i}] needs a role of system, user or assistant"
                )
            messages.append(
                Message(m["role"], _text(m.get("content"), f"messages[{i}].content", where))
            )
    elif "prompt" in obj:
        messages.append(Message("user", _text(obj["prompt"], "prompt", where)))
    else:
        raise InputError(f"{where}: needs messages or prompt")
    schema = obj.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise InputError(f"{where}: schema must be a JSON schema object")
    task = obj.get("task")
    model = obj.get("model") or (route(task) if route else None) or default_model
    request = Request(
        model=str(model),
        messages=tuple(messages),
        json_schema=make_strict(schema) if schema is not None else None,
        schema_name=obj.get("schema_name") or ("response" if schema is not None else None),
        max_tokens=obj.get("max_tokens"),
        temperature=obj.get("temperature"),
        task=task,
        extras=obj.get("extras") or {},
    )
    return JobItem(str(obj.get("id", lineno)), request)


def _text(value: Any, field: str, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{where}: {field} must be a string")
    return value


async def run_requests(connector: LexiConnector, items: list[JobItem], out: Path) -> JobSummary:
    """Send every item through the connector (in its current mode); write results in input order.

    The output is written to a temporary file and renamed into place, so an
    interrupted run never leaves a half-written results file; what was paid
    for is in the store and a re-run takes it from there at no cost.

    Raises:
        StoreWriteError: the store or the spool folder could not be written
            (the first such error, once; nothing answered is lost).
        OutputWriteError: ``out`` could not be written (the answers are in the store).
    """
    coros = [connector.generate(item.request) for item in items]
    if connector.batch_mode:
        outcomes = await _gather_batched(connector, coros)
    else:
        outcomes = await asyncio.gather(*coros, return_exceptions=True)
    # The environment failed, not the requests: one error for the run, not one per line.
    for outcome in outcomes:
        if isinstance(outcome, StoreWriteError):
            raise outcome
    summary = JobSummary(total=len(items))
    write_atomically(
        out,
        (
            orjson.dumps(_result_line(item, outcome, summary)) + b"\n"
            for item, outcome in zip(items, outcomes, strict=True)
        ),
    )
    return summary


async def _gather_batched(connector: LexiConnector, coros: list[Any]) -> list[Any]:
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await connector.execute_batch()
    except BaseException:
        # Dispatching failed: the waiters are stopped and their outcomes read,
        # so none is reported as "never retrieved".
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def _result_line(item: JobItem, outcome: Any, summary: JobSummary) -> dict[str, Any]:
    if isinstance(outcome, Response):
        summary.succeeded += 1
        summary.cached += int(outcome.cached)
        if outcome.cost_usd is None:
            summary.unpriced += 1
        else:
            summary.cost_usd += to_decimal(outcome.cost_usd)
        return {
            "id": item.id,
            "key": item.request.key,
            "status": "succeeded",
            "output": outcome.output,
            "usage": outcome.usage.to_dict(),
            "cost_usd": outcome.cost_usd,
            "mode": outcome.mode,
            "model": outcome.model,
            "batch_id": outcome.batch_id,
            "cached": outcome.cached,
        }
    if isinstance(outcome, BaseException) and not isinstance(outcome, LexibatchError):
        raise outcome
    summary.failed += 1
    error = outcome
    if is_unreachable(error):
        summary.not_reached += 1
        if summary.unreachable is None:
            summary.unreachable = error
    detail = (
        error.to_dict()
        if isinstance(error, ProviderError)
        else {"type": type(error).__name__, "message": str(error)}
    )
    return {"id": item.id, "key": item.request.key, "status": "failed", "error": detail}
