"""What the keyword options of ``structured()`` and ``build_request()`` make of a request.

``system``, ``max_tokens`` and ``temperature`` shape the request, ``mode``
picks the strategy; any other keyword goes to the provider as an extra field
of its body, unless it is one slip away from an option (``temprature``),
which is refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from providers.errors import InputError
from providers.protocol import Prompt, as_messages
from providers.types import Request

__all__ = ["REQUEST_OPTS", "request_with_options"]

#: Options of ``structured`` that shape the request rather than pass through.
REQUEST_OPTS = frozenset({"system", "max_tokens", "temperature", "mode"})
# Every keyword structured() and build_request() take (see _refuse_misspelt).
_KEYWORDS = sorted(REQUEST_OPTS | {"task", "model", "response_model"})


def request_with_options(
    model: str,
    prompt: Prompt,
    response_model: type[BaseModel] | None,
    task: str | None,
    opts: Mapping[str, Any],
) -> Request:
    """The request of a call with keyword options ``opts`` (``mode`` among them is left out).

    Raises:
        InputError: an extra is named one slip away from an option.
    """
    extras: Mapping[str, Any] = {k: v for k, v in opts.items() if k not in REQUEST_OPTS}
    if extras:
        _refuse_misspelt(extras)
    return Request(
        model=model,
        messages=as_messages(prompt, opts.get("system")),
        response_model=response_model,
        max_tokens=opts.get("max_tokens"),
        temperature=opts.get("temperature"),
        task=task,
        extras=extras,
    )


def _refuse_misspelt(extras: Mapping[str, Any]) -> None:
    """Refuse an extra named one slip away from a keyword of ``structured`` (``temprature``).

    Any other name passes to the provider as an extra field of its body; this
    one would reach it misspelt, and the option the caller meant would not
    be set.
    """
    import difflib

    for name in extras:
        close = difflib.get_close_matches(name, _KEYWORDS, n=1, cutoff=0.8)
        if close:
            raise InputError(
                f"request: unknown option {name!r} — did you mean {close[0]!r}? (names that "
                "are not options of structured() go to the provider as extra body fields)"
            )
