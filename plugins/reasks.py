"""The re-ask an immediate call is waiting for, kept so that a stopped run resumes it.

An answer that misfits its schema, or is cut at ``max_tokens``, is paid for
and asked again. Before the re-ask is sent, the paid answer is kept
(``Store.keep_reasked``) with the state written here: the attempt the re-ask
is, the messages it adds to the request and its output limit. A run stopped
while the re-ask is out (a kill, a crash) then sends that re-ask (see
:func:`resumed`), instead of paying for the first question again. Once the
request is answered, or its re-asks are used up, the kept re-asks are marked
spent (``Store.spend_reasks``): a later run asks the request anew.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from plugins.ledger import call_record
from plugins.store import StoredResult
from providers.types import Completion, Message, Request

if TYPE_CHECKING:
    from plugins.registry import StrategyContext
    from plugins.store import CallRecord

__all__ = ["misfit_reask", "reask_rows", "reask_state", "resumed"]

_MISFIT = (
    "Your previous answer did not match the required JSON schema ({error}). "
    "Answer again with only JSON that matches the schema exactly."
)


def misfit_reask(current: Request, answer: str, error: str) -> Request:
    """``current`` asked again after its ``answer`` misfit the schema (``error`` says how)."""
    return current.with_messages(
        [
            *current.messages,
            Message("assistant", answer),
            Message("user", _MISFIT.format(error=error)),
        ]
    )


def reask_rows(
    context: StrategyContext,
    request: Request,
    calls: Sequence[Completion],
    reask: Request,
    attempt: int,
) -> tuple[list[CallRecord], StoredResult, str]:
    """What is written before ``reask`` is sent: the ledger rows of ``calls``, the last
    one's answer as kept, and the re-ask's state (:func:`reask_state`)."""
    last = calls[-1]
    records = [call_record(context, request, c, mode="immediate") for c in calls]
    kept = StoredResult(
        request.key,
        last.model,
        request.task,
        "immediate",
        last.content,
        last.usage,
        records[-1].cost_usd,
        last.request_id,
    )
    return records, kept, reask_state(request, reask, attempt)


def reask_state(request: Request, reask: Request, attempt: int) -> str:
    """What to keep of ``reask``, attempt ``attempt`` of ``request`` (JSON)."""
    added = reask.messages[len(request.messages) :]
    return orjson.dumps(
        {
            "attempt": attempt,
            "added": [m.to_dict() for m in added],
            "max_tokens": reask.max_tokens,
        }
    ).decode()


def resumed(request: Request, state: str | None, last_attempt: int) -> tuple[Request, int]:
    """What to send first for ``request``, and which attempt it is.

    The re-ask ``state`` keeps (from :func:`reask_state`) while it is an
    attempt up to ``last_attempt``; otherwise (none kept, the attempts are
    spent, or a state this version did not write) ``request`` itself,
    attempt 0.
    """
    if state is None:
        return request, 0
    try:
        kept = orjson.loads(state)
        attempt = int(kept["attempt"])
        added = [Message(m["role"], str(m["content"])) for m in kept["added"]]
        max_tokens = kept["max_tokens"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return request, 0
    if not 0 < attempt <= last_attempt or not (max_tokens is None or isinstance(max_tokens, int)):
        return request, 0
    messages = (*request.messages, *added)
    return dataclasses.replace(request, messages=messages, max_tokens=max_tokens), attempt
