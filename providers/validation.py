"""Checking a request before anything is sent, journaled or paid for.

:func:`check_request` looks at every field of a :class:`~providers.types.Request`
(types and ranges) and at its response schema *as a schema*: the JSON Schema
meta-schema, every ``pattern`` and ``patternProperties`` regex compiled, every
``$ref`` local and resolvable. A request that fails is refused with an
:class:`~providers.errors.InputError` naming the field; nothing is sent.

Schemas are checked, and compiled into validators, once per distinct schema:
a response model's schema is one object per class, and a request file's
identical schemas are one object (see :func:`plugins.jobs.read_requests`),
so the cache is looked up by identity first and by content second.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any, Final

import orjson
from pydantic import BaseModel

from providers.errors import InputError
from providers.types import Message, Request

__all__ = [
    "MAX_TEMPERATURE",
    "RESERVED_EXTRAS",
    "STRUCTURED_EXTRAS",
    "SchemaChecker",
    "check_request",
    "request_problems",
    "schema_problem",
    "schema_validator",
]

_ROLES: Final = frozenset({"system", "user", "assistant"})
#: The highest temperature a provider accepts (OpenAI: 2; Anthropic: 1).
MAX_TEMPERATURE: Final = 2.0
#: Body fields a request sets itself: an extra may not replace them.
RESERVED_EXTRAS: Final = frozenset({"model", "messages", "stream"})
#: Body fields through which a provider is asked for structured output (OpenAI and
#: its likes; Anthropic; Gemini, top level or in ``generationConfig``): an extra of
#: a request with a schema may not set them, or the answer would not be the schema's.
STRUCTURED_EXTRAS: Final = frozenset(
    {
        "response_format",
        "tools",
        "tool_choice",
        "output_config",
        "output_format",
        "responseMimeType",
        "responseJsonSchema",
        "responseSchema",
    }
)
# What both OpenAI (``json_schema.name``) and Anthropic accept as a schema name.
_SCHEMA_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TYPES: Final = "array, boolean, integer, null, number, object, string"
# Entries kept by the identity caches before they are cleared.
_REMEMBERED: Final = 1024


def check_request(request: Request, *, where: str = "request") -> None:
    """Refuse ``request`` if any field or its schema is invalid.

    Args:
        request: the request about to be sent.
        where: how the message names the request (``FILE:LINE`` for a line
            of a request file).

    Raises:
        InputError: one line per problem, ``WHERE: field: what is wrong``.
    """
    problems = request_problems(request)
    if problems:
        lines = [f"{where}: {p}" for p in problems]
        raise InputError("; ".join(lines), problems=lines)


def request_problems(request: Request) -> list[str]:
    """What is wrong with ``request`` (empty when nothing is), one entry per field."""
    if _plainly_valid(request):
        return []
    problems: list[str] = []
    # Typed as Any: a caller may have built the request from untyped data.
    fields: Any = request
    model = fields.model
    if not isinstance(model, str) or not model.strip():
        problems.append(f"model must be a non-empty string, got {_show(model)}")
    problems.extend(_message_problems(request.messages))
    max_tokens = fields.max_tokens
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        problems.append(f"max_tokens must be a positive integer, got {_show(max_tokens)}")
    temperature = fields.temperature
    if temperature is not None and (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not math.isfinite(temperature)
        or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        problems.append(
            f"temperature must be a number from 0 to {MAX_TEMPERATURE:g}, got {_show(temperature)}"
        )
    if fields.task is not None and not isinstance(fields.task, str):
        problems.append(f"task must be a string, got {_show(fields.task)}")
    problems.extend(_extras_problems(fields.extras, structured=fields.json_schema is not None))
    response_model = fields.response_model
    if response_model is not None and not (
        isinstance(response_model, type) and issubclass(response_model, BaseModel)
    ):
        problems.append(
            f"response_model must be a pydantic model class, got {_show(response_model)}"
        )
    schema = fields.json_schema
    if schema is not None:
        name = fields.schema_name
        if name is not None and (not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name)):
            problems.append(
                f"schema_name must be 1 to 64 letters, digits, '_' or '-', got {_show(name)}"
            )
        problem = schema_problem(schema)
        if problem is not None:
            problems.append(f"schema: {problem}")
    return problems


# Schema names seen valid (most requests share one or two).
_GOOD_NAMES: set[str] = set()


def _plainly_valid(request: Request) -> bool:
    """Whether ``request`` has the usual shape and every field of it is valid.

    The common case, decided without building the list of problems: every
    ``True`` here is a request :func:`request_problems` finds nothing wrong
    with (anything unusual is left to it, ``False``). Requests are checked by
    the hundred thousand when a request file is read.
    """
    # Typed as Any: a caller may have built the request from untyped data.
    fields: Any = request
    model = fields.model
    if type(model) is not str or not model.strip():
        return False
    messages = fields.messages
    if type(messages) is not tuple or not messages:
        return False
    for message in messages:
        if type(message) is not Message or message.role not in _ROLES:
            return False
        if type(message.content) is not str:
            return False
    max_tokens = fields.max_tokens
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        return False
    temperature = fields.temperature
    if temperature is not None and (
        # NaN and infinities fail the comparison.
        type(temperature) not in (int, float) or not 0 <= temperature <= MAX_TEMPERATURE
    ):
        return False
    task = fields.task
    if task is not None and type(task) is not str:
        return False
    extras = fields.extras
    if type(extras) is not dict or extras:
        return False
    response_model = fields.response_model
    if response_model is not None and not (
        isinstance(response_model, type) and issubclass(response_model, BaseModel)
    ):
        return False
    schema = fields.json_schema
    if schema is None:
        return True
    name = fields.schema_name
    if name is not None and (type(name) is not str or name not in _GOOD_NAMES):
        if type(name) is not str or not _SCHEMA_NAME.fullmatch(name):
            return False
        if len(_GOOD_NAMES) >= _REMEMBERED:
            _GOOD_NAMES.clear()
        _GOOD_NAMES.add(name)
    # A dict is a Mapping: its type is checked at a fifth of the ABC's cost,
    # and a schema seen before is found by identity without a call.
    if type(schema) is not dict and not isinstance(schema, Mapping):
        return False
    hit = _by_identity.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1] is None
    return _checked(schema)[0] is None


def _message_problems(messages: Any) -> Iterator[str]:
    if not isinstance(messages, tuple | list) or not messages:
        yield "messages must be a non-empty list of messages"
        return
    if all(type(m) is Message and m.role in _ROLES and type(m.content) is str for m in messages):
        return
    for i, item in enumerate(messages):
        message: Any = item
        if not isinstance(message, Message):
            yield f"messages[{i}] must be a Message, got {_show(message)}"
        elif message.role not in _ROLES:
            yield f"messages[{i}].role must be system, user or assistant, got {_show(message.role)}"
        else:
            content: Any = message.content
            if not isinstance(content, str):
                yield f"messages[{i}].content must be a string, got {_show(content)}"


def _extras_problems(extras: Any, *, structured: bool) -> Iterator[str]:
    if not isinstance(extras, Mapping):
        yield f"extras must be an object of provider body fields, got {_show(extras)}"
        return
    if not extras:
        return
    for key in extras:
        if not isinstance(key, str):
            yield f"extras keys must be strings, got {_show(key)}"
        elif key in RESERVED_EXTRAS:
            yield f"extras may not set {key!r}: the request sets it itself"
        elif structured and key in STRUCTURED_EXTRAS:
            yield (
                f"extras may not set {key!r} on a request with a schema: the schema asks "
                "for the structured answer itself (leave it out, or drop the schema)"
            )
    config = extras.get("generationConfig")
    if structured and isinstance(config, Mapping):
        for key in sorted(STRUCTURED_EXTRAS.intersection(config)):
            yield (
                f"extras may not set generationConfig.{key} on a request with a schema: the "
                "schema asks for the structured answer itself"
            )
    try:
        orjson.dumps(dict(extras))
    except TypeError as exc:
        yield f"extras must be plain JSON values ({exc})"


# ------------------------------------------------------------------- schemas


def schema_problem(schema: Any) -> str | None:
    """What makes ``schema`` unusable as a response schema, or ``None``; checked once per schema."""
    if not isinstance(schema, Mapping):
        return f"must be a JSON schema object, got {_show(schema)}"
    return _checked(schema)[0]


def schema_validator(schema: Mapping[str, Any]) -> SchemaChecker:
    """The compiled checker of ``schema`` (one per distinct schema).

    Raises:
        InputError: the schema is not a valid JSON schema.
    """
    problem, validator = _checked(schema)
    if validator is None:
        raise InputError(f"schema: {problem}")
    return validator


# id(schema) -> (the schema, kept so its id is not reused; problem; checker)
_by_identity: dict[int, tuple[Mapping[str, Any], str | None, SchemaChecker | None]] = {}


def _checked(schema: Mapping[str, Any]) -> tuple[str | None, SchemaChecker | None]:
    hit = _by_identity.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1], hit[2]
    problem: str | None
    validator: SchemaChecker | None
    try:
        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        problem, validator = f"not plain JSON ({exc})", None
    else:
        problem, validator = _check_text(text)
    if len(_by_identity) >= _REMEMBERED:
        _by_identity.clear()
    _by_identity[id(schema)] = (schema, problem, validator)
    return problem, validator


class SchemaChecker:
    """Answers checked against one compiled JSON schema.

    ``jsonschema`` is the reference: its verdict and its words are what a
    failed answer reports. Most answers fit, so a schema without keywords
    whose meaning the two engines may read differently (regular
    expressions, formats) is first checked by ``jsonschema_rs``, compiled
    from the same schema, at a fiftieth of the cost; only an answer it
    refuses is checked again by ``jsonschema``, which decides.
    """

    __slots__ = ("_fast", "_full")

    def __init__(self, full: Any, fast: Any) -> None:
        self._full = full
        self._fast = fast

    def first_error(self, value: Any) -> Any:
        """The first ``jsonschema.ValidationError`` of ``value``, or ``None`` when it fits."""
        if self._fast is not None and self._fast.is_valid(value):
            return None
        return next(iter(self._full.iter_errors(value)), None)

    def iter_errors(self, value: Any) -> Iterator[Any]:
        """Every ``jsonschema.ValidationError`` of ``value`` (none when it fits)."""
        if self._fast is not None and self._fast.is_valid(value):
            return iter(())
        return iter(self._full.iter_errors(value))


@lru_cache(maxsize=_REMEMBERED)
def _check_text(text: bytes) -> tuple[str | None, SchemaChecker | None]:
    import jsonschema

    schema = orjson.loads(text)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return _schema_error(exc), None
    problem = _walk(schema, schema, "")
    if problem is not None:
        return problem, None
    return None, SchemaChecker(cls(schema), _fast_validator(schema, text))


# Keywords the two engines read differently: Python's regular expressions
# against ECMA 262's, and formats (asserted or not, and how).
_ENGINE_DEPENDENT: Final = (b'"pattern"', b'"patternProperties"', b'"format"')


def _fast_validator(schema: Any, text: bytes) -> Any:
    """The ``jsonschema_rs`` validator of ``schema``; ``None``: ``jsonschema`` alone is used."""
    if any(word in text for word in _ENGINE_DEPENDENT):
        return None
    try:
        import jsonschema_rs

        # Formats are annotations, as for jsonschema without a format checker;
        # offline: a reference is never fetched (only local ones pass _walk).
        return jsonschema_rs.validator_for(schema, validate_formats=False, offline=True)
    except Exception:
        # A schema it does not take (or a build without it): jsonschema alone.
        return None


def _schema_error(exc: Any) -> str:
    where = "/".join(str(p) for p in exc.absolute_path)
    message = str(exc.message)
    if exc.absolute_path and exc.absolute_path[-1] == "type" and exc.validator == "anyOf":
        # The meta-schema's own words ("not valid under any of the given schemas") hide the typo.
        named = exc.instance if isinstance(exc.instance, list) else [exc.instance]
        wrong = [t for t in named if t not in _TYPES.split(", ")] or named
        message = f"{wrong[0]!r} is not a JSON Schema type (one of {_TYPES})"
    if len(message) > 200:
        message = message[:197] + "..."
    return f"{where or '(root)'}: {message}" if where else message


def _walk(node: Any, root: Mapping[str, Any], path: str) -> str | None:
    """Regexes that do not compile, and ``$ref`` that do not resolve inside the schema."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            problem = _walk(item, root, f"{path}/{i}")
            if problem is not None:
                return problem
        return None
    if not isinstance(node, Mapping):
        return None
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        problem = _regex_problem(pattern)
        if problem is not None:
            return f"{path}/pattern: {problem}"
    props = node.get("patternProperties")
    if isinstance(props, Mapping):
        for key in props:
            problem = _regex_problem(str(key))
            if problem is not None:
                return f"{path}/patternProperties: {problem}"
    ref = node.get("$ref")
    if isinstance(ref, str) and not _resolves(ref, root):
        return f"{path or '(root)'}/$ref: {ref!r} does not point inside the schema"
    for key, value in node.items():
        # Values of these keywords are names or data, not subschemas.
        if key in ("enum", "const", "examples", "default", "required"):
            continue
        problem = _walk(value, root, f"{path}/{key}")
        if problem is not None:
            return problem
    return None


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        return f"{pattern!r} is not a valid regular expression ({exc})"
    return None


def _resolves(ref: str, root: Mapping[str, Any]) -> bool:
    # Only references inside the schema: a remote one would be fetched over
    # the network while answers are validated.
    if not ref.startswith("#"):
        return False
    if ref != "#" and not ref.startswith("#/"):
        return True  # a named anchor: resolved by the validator
    node: Any = root
    for part in ref[2:].split("/") if ref != "#" else ():
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})" if not isinstance(value, str) else text
