"""The usual line of a request file, decoded typed in one pass.

Most request files repeat one plain shape: an id, a prompt (or a list of
messages), a task, and the same response schema on every line. Such a line
is decoded straight into the structs below, each field's type checked as it
is read, and its schema is not parsed at all: its text, byte for byte, names
the strict schema made for it the first time it was read. A line of any
other shape is left to the general reader (:mod:`plugins.requestfile`),
which parses it as a dict and says in its own words what is wrong with it:
what is read here is exactly what the general reader makes of the same line.

Left to the general reader:

* a value of another type than those below (a JSON ``null`` for a field that
  takes none, a float for an integer, an unknown field or message field,
  ``extras``), an empty list of messages, or messages and a prompt both;
* an integer outside 64 bits, which the general reader's parser reads as a
  float;
* a schema whose text was not read before, or a ``null`` one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, Literal

import msgspec

from providers.types import Message, Request

__all__ = ["UsualLines"]

# The integers the general reader's parser (orjson) reads as integers; it
# reads larger ones as floats (msgspec bounds only fit a signed 64-bit range).
_Int = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]

#: Schema texts remembered; past this many distinct ones, new texts are left
#: to the general reader (which still makes identical schemas one object).
MAX_SCHEMA_TEXTS: Final = 4096


# gc=False: they hold no cycles, and live only while their line is read.
class _Message(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    role: Literal["system", "user", "assistant"]
    content: str


class _Line(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    id: str | _Int | msgspec.UnsetType = msgspec.UNSET
    messages: list[_Message] | msgspec.UnsetType = msgspec.UNSET
    prompt: str | msgspec.UnsetType = msgspec.UNSET
    system: str | None = None
    model: str | None = None
    task: str | None = None
    # Kept as its text: looked up, not parsed.
    schema: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    schema_name: str | None = None
    max_tokens: _Int | None = None
    temperature: _Int | float | None = None


_decode = msgspec.json.Decoder(_Line).decode


class UsualLines:
    """Lines of the usual shape read into requests, as the general reader would.

    Args:
        default_model: the model of a line that names none (and whose task
            is not routed).
        route: task → model (``[models]`` of the config).
    """

    __slots__ = ("_default_model", "_route", "_schemas")

    def __init__(
        self, default_model: str, route: Callable[[str | None], str] | None = None
    ) -> None:
        self._default_model = default_model
        self._route = route
        # A schema's text as written in a line -> the strict schema made from it.
        self._schemas: dict[bytes, Mapping[str, Any]] = {}

    def read(self, raw: bytes, lineno: int) -> tuple[str, Request] | None:
        """The line's id and request, or ``None``: the general reader reads this line.

        The request is not checked here (see :func:`providers.validation.request_problems`).
        """
        try:
            line = _decode(raw)
        except msgspec.DecodeError:  # its ValidationError too: another shape
            return None
        schema_text = line.schema
        if schema_text is msgspec.UNSET:
            json_schema = None
        else:
            json_schema = self._schemas.get(bytes(schema_text))
            if json_schema is None:
                return None
        given = line.messages
        if given is not msgspec.UNSET:
            if not given or line.prompt is not msgspec.UNSET:
                return None
            messages = [Message(m.role, m.content) for m in given]
        elif line.prompt is not msgspec.UNSET:
            messages = [Message("user", line.prompt)]
        else:
            return None
        if line.system is not None:
            messages.insert(0, Message("system", line.system))
        task = line.task
        model = line.model
        if model is None:
            model = (self._route(task) if self._route else None) or self._default_model
        line_id = line.id
        request = Request(
            model=model,
            messages=tuple(messages),
            json_schema=json_schema,
            schema_name=line.schema_name or ("response" if json_schema is not None else None),
            max_tokens=line.max_tokens,
            temperature=line.temperature,
            task=task,
        )
        if line_id is msgspec.UNSET:
            return str(lineno), request
        return (line_id if type(line_id) is str else str(line_id)), request

    def learn(self, raw: bytes, request: Request) -> None:
        """Remember the schema the general reader made ``request`` with from the line ``raw``.

        The next lines with the same schema text are read here. A line that
        is not of the usual shape, or has no schema, teaches nothing.
        """
        if request.json_schema is None or len(self._schemas) >= MAX_SCHEMA_TEXTS:
            return
        try:
            line = _decode(raw)
        except msgspec.DecodeError:
            return
        if line.schema is not msgspec.UNSET:
            self._schemas[bytes(line.schema)] = request.json_schema
