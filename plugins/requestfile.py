"""Reading a request file (``lexibatch run``), every line checked before anything is sent.

One request per line::

    {"id": "optional-id", "messages": [{"role": "user", "content": "..."}],
     "model": "optional", "task": "optional", "schema": {JSON schema, optional},
     "schema_name": "optional", "max_tokens": 100, "temperature": 0,
     "extras": {provider body fields, optional}}

``"prompt": "text"`` may stand for a single user message, ``"system": "text"``
adds a system message before it. Every line is parsed and checked (see
:mod:`providers.validation`) before the first request is sent: a file with
bad lines is refused whole, each bad line reported as ``FILE:LINE: what is
wrong``, and nothing is paid for. Lines of the usual shape are decoded typed,
their schema looked up by its text (:mod:`plugins.usuallines`); any other
line is parsed as a dict, and read the same. A request too large for any batch of the
provider is found later, as it is queued, from the one batch line written
for it: it alone fails, never sent (see :mod:`plugins.batch.oversize`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

import orjson

from plugins.batch.gcpause import GcHold
from plugins.usuallines import UsualLines
from providers.errors import InputError
from providers.schema import fix_schema, make_strict
from providers.types import Message, Request
from providers.validation import request_problems

__all__ = ["MAX_PROBLEMS_SHOWN", "JobItem", "read_requests"]

#: Bad lines reported one by one; past this many, only their number.
MAX_PROBLEMS_SHOWN: Final = 20

_KNOWN: Final = frozenset(
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
_ROLES: Final = frozenset({"system", "user", "assistant"})
_MESSAGE_FIELDS: Final = frozenset({"role", "content"})


class JobItem(NamedTuple):
    """One input line: its id, its request and where it came from.

    Attributes:
        id: the line's ``id`` (its line number when it has none).
        request: the checked request.
        line: the line number in the request file (0: not from a file).
    """

    id: str
    request: Request
    line: int = 0


class _BadLine(Exception):
    """What is wrong with one line (its ``FILE:LINE`` is added by the reader)."""


def read_requests(
    path: Path, *, default_model: str, route: Callable[[str | None], str] | None = None
) -> list[JobItem]:
    """Parse and check every line of a request file.

    Args:
        path: the JSONL request file.
        default_model: the model of a line that names none (and whose task
            is not routed).
        route: task → model (``[models]`` of the config).

    Raises:
        InputError: the file cannot be read, holds no request, or has bad
            lines; ``problems`` lists the first :data:`MAX_PROBLEMS_SHOWN`
            of them as ``FILE:LINE: what is wrong``.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the request file ({exc.strerror})") from None
    items: list[JobItem] = []
    problems: list[str] = []
    bad = 0
    # Results are matched to their lines by id: each line's must be its own.
    first_line: dict[str, int] = {}
    taken = first_line.__contains__
    # Identical schemas become one object: checked and compiled once, kept once.
    schemas: dict[bytes, Mapping[str, Any]] = {}
    # Lines of the usual shape are read without a dict per line; the others,
    # and the first line of each schema text, by _parse_line.
    usual = UsualLines(default_model, route)
    read_usual, learn = usual.read, usual.learn
    # Every line's parsed JSON is freed as soon as its request is made, by
    # reference counting; the collector, held off, does not walk the growing
    # list of requests again and again while the file is read (see gcpause).
    GcHold.hold()
    try:
        with handle:
            for lineno, raw in enumerate(handle, 1):
                read = read_usual(raw, lineno)
                if read is not None:
                    line_id, request = read
                    found = request_problems(request)
                    if not found and line_id and not taken(line_id):
                        first_line[line_id] = lineno
                        items.append(JobItem(line_id, request, lineno))
                        continue
                else:
                    try:
                        item = _parse_line(raw, lineno, default_model, route, schemas)
                    except _BadLine as exc:
                        found = [str(exc)]
                    else:
                        if item is None:  # a blank line
                            continue
                        line_id = item.id
                        found = request_problems(item.request)
                        if not found and line_id and not taken(line_id):
                            first_line[line_id] = lineno
                            learn(raw, item.request)
                            items.append(item)
                            continue
                if not found:
                    found = [_id_problem(line_id, first_line)]
                bad += 1
                if len(problems) < MAX_PROBLEMS_SHOWN:
                    problems.append("; ".join(f"{path}:{lineno}: {p}" for p in found))
    finally:
        GcHold.release()
    if bad == 1:
        raise InputError(f"{problems[0]} — nothing was sent")
    if bad:
        if bad > len(problems):
            problems.append(f"{path}: ... and {bad - len(problems)} more bad lines")
        raise InputError(
            f"{path}: {bad} of {bad + len(items)} request lines are invalid; nothing was sent "
            "— fix them and run again",
            problems=problems,
        )
    if not items:
        raise InputError(f"{path}: no requests in the file")
    return items


def _id_problem(line_id: str, first_line: dict[str, int]) -> str:
    """Why a line's id cannot be used: it is empty, or an earlier line's."""
    if not line_id:
        return "id is empty: give the line an id of its own, or none (its line number is used)"
    return (
        f"id {line_id!r} is line {first_line[line_id]}'s too: give each request its own id "
        "(a line without one is known by its line number)"
    )


def _parse_line(
    raw: bytes,
    lineno: int,
    default_model: str,
    route: Callable[[str | None], str] | None,
    schemas: dict[bytes, Mapping[str, Any]],
) -> JobItem | None:
    """The line's item (``None``: a blank line).

    Raises:
        _BadLine: what is wrong with it.
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if not raw.strip():
            return None
        raise _BadLine(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _BadLine("expected a JSON object per line")
    if not _KNOWN.issuperset(obj):
        unknown = set(obj) - _KNOWN
        raise _BadLine(
            f"unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KNOWN))}"
        )
    get = obj.get
    messages: list[Message] = []
    system = get("system")
    if system is not None:
        messages.append(Message("system", _text(system, "system")))
    if "messages" in obj:
        if "prompt" in obj:
            raise _BadLine(
                "has both messages and prompt: give one (prompt is a single user message)"
            )
        given = obj["messages"]
        if not isinstance(given, list) or not given:
            raise _BadLine("messages must be a non-empty list")
        for i, m in enumerate(given):
            if not isinstance(m, dict) or m.get("role") not in _ROLES:
                raise _BadLine(f"messages[{i}] needs a role of system, user or assistant")
            if not _MESSAGE_FIELDS.issuperset(m):
                # Not dropped unseen: what is sent would not be what the line says.
                extra = ", ".join(sorted(set(m) - _MESSAGE_FIELDS))
                raise _BadLine(f"messages[{i}]: unknown field(s) {extra}; known: content, role")
            messages.append(Message(m["role"], _text(m.get("content"), f"messages[{i}].content")))
    elif "prompt" in obj:
        messages.append(Message("user", _text(obj["prompt"], "prompt")))
    else:
        raise _BadLine("needs messages or prompt")
    line_id = get("id", lineno)
    if type(line_id) is not str and (not isinstance(line_id, int) or isinstance(line_id, bool)):
        raise _BadLine(f"id must be a string or an integer, got {line_id!r}")
    task = get("task")
    if task is not None and type(task) is not str:
        raise _BadLine(f"task must be a string, got {task!r}")
    # A model given is used as it is (checked below); only an absent one is routed.
    model = get("model")
    if model is None:
        model = (route(task) if route else None) or default_model
    schema = get("schema")
    if schema is None:
        json_schema = None
    elif type(schema) is dict:
        json_schema = _strict(schema, schemas)
    else:
        raise _BadLine(f"schema must be a JSON schema object, got {schema!r:.60}")
    extras = get("extras")
    request = Request(
        model=model,
        messages=tuple(messages),
        json_schema=json_schema,
        schema_name=get("schema_name") or ("response" if schema is not None else None),
        max_tokens=get("max_tokens"),
        temperature=get("temperature"),
        task=task,
        extras=extras if extras is not None else {},
    )
    return JobItem(line_id if type(line_id) is str else str(line_id), request, lineno)


def _strict(schema: dict[str, Any], schemas: dict[bytes, Mapping[str, Any]]) -> Mapping[str, Any]:
    text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    strict = schemas.get(text)
    if strict is None:
        try:
            # Made here and handed to no one who changes it: fixed, so each
            # request serializes it no more (see providers.schema.fix_schema).
            strict = fix_schema(make_strict(schema))
        except RecursionError:
            raise _BadLine("schema is nested too deeply") from None
        schemas[text] = strict
    return strict


def _text(value: Any, field: str) -> str:
    if type(value) is not str:
        raise _BadLine(f"{field} must be a string, got {value!r:.60}")
    return value
