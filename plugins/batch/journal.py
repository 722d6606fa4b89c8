"""How a request is written into the journal, and rebuilt from it.

The journal keeps each request's canonical body (and the import path of its
response model), so that ``lexibatch resume`` and retry rounds can rebuild
the request without the original input. The response schema, which is the
same for every request of a task and often longer than its prompt, is kept
once in the store's ``schemas`` table; a journal body names it by reference.

A journal body is JSON: ``{"c": canonical body without the schema, "s":
schema reference or null, "t": task, "m": response model import path}``.
Bodies written before schemas were stored apart carry the schema inside
``"c"`` and no ``"s"``; they are read as they are.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from typing import Any, Final

import orjson
from pydantic import BaseModel

from plugins.store import Store
from providers.errors import ConfigError, InputError
from providers.jsonl import dumps_kept
from providers.schema import fixed_schema_part, schema_for
from providers.types import Message, Request
from providers.validation import request_problems

__all__ = ["SchemaBook", "decode_request", "encode_request", "model_ref", "schema_ref"]

# Response models whose schema reference is remembered; past this many the memory is cleared.
_REMEMBERED: Final = 1024


def model_ref(model: type[BaseModel] | None) -> str | None:
    """``module:QualName`` of a response model class, when it can be imported back."""
    if model is None or "<locals>" in model.__qualname__:
        return None
    return f"{model.__module__}:{model.__qualname__}"


def schema_ref(name: str | None, schema: Mapping[str, Any]) -> tuple[str, bytes]:
    """The reference of a response schema and the bytes stored under it.

    The bytes are the ``{"name", "schema"}`` part of the canonical body, with
    sorted keys; the reference is a hash of them, so equal schemas share one.
    """
    body = dumps_kept({"name": name, "schema": schema}, option=orjson.OPT_SORT_KEYS)
    return _ref_of(body), body


def _ref_of(body: bytes) -> str:
    """The reference of a schema stored as ``body`` (see :func:`schema_ref`)."""
    return "s-" + hashlib.sha256(body).hexdigest()[:32]


def encode_request(request: Request, ref: str | None, bare: bytes | None = None) -> bytes:
    """The journal body of ``request``, its schema named by ``ref`` (see :func:`schema_ref`).

    ``"c"`` is the canonical body without its schema, with sorted keys:
    ``bare`` when given, else :meth:`Request.canonical_json_without_schema`.
    """
    if bare is None:
        bare = request.canonical_json_without_schema()
    tail = orjson.dumps({"s": ref, "t": request.task, "m": model_ref(request.response_model)})
    # Joined into new bytes sized to their content: kept in the journal buffer until its
    # group commits (see providers.jsonl.dumps_kept).
    return b'{"c":%b,%b' % (bare, tail[1:])


def decode_request(body: bytes, schemas: Mapping[str, bytes]) -> Request:
    """Rebuild a request from its journal body.

    Args:
        body: the journal body.
        schemas: the stored schemas by reference (only the one the body names
            is read).

    The response model class is re-imported when it can be; otherwise the
    answer is validated against the stored JSON schema.

    Raises:
        ConfigError: the body names a schema that is not stored (a damaged store).
    """
    parsed = {ref: orjson.loads(stored) for ref, stored in schemas.items()}
    return _decode(orjson.loads(body), parsed)


def _decode(data: dict[str, Any], schemas: Mapping[str, Mapping[str, Any]]) -> Request:
    canonical = data["c"]
    ref = data.get("s")
    if ref is None:
        schema = canonical.get("schema")
    elif ref in schemas:
        schema = schemas[ref]
    else:
        raise ConfigError(
            f"the journal names response schema {ref}, which the store does not hold: "
            "the store file is damaged — restore it from a backup",
            key="connector.db",
        )
    return Request(
        model=canonical["model"],
        messages=tuple(Message(m["role"], m["content"]) for m in canonical["messages"]),
        response_model=_import_model(data.get("m")),
        json_schema=schema["schema"] if schema else None,
        schema_name=schema["name"] if schema else None,
        max_tokens=canonical.get("max_tokens"),
        temperature=canonical.get("temperature"),
        task=data.get("t"),
        extras=canonical.get("extras") or {},
    )


class SchemaBook:
    """Journal bodies for one store: each response schema stored once, by reference.

    :meth:`encode` names a request's schema by reference; :meth:`take` hands
    over the schemas named since the last take, for the caller to store in
    the same transaction as the journal rows that name them. Every group of
    rows thus carries its own schemas (a row already stored is ignored), so
    no committed row can name a schema that a rolled-back group held.
    :meth:`decode` reads referenced schemas from the store, once each.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # The reference of each response model's schema, by model class and schema name.
        self._of_model: dict[tuple[type[BaseModel], str | None], tuple[str, bytes]] = {}
        # The reference of each fixed schema, by its serialized part (bytes keep their hash).
        self._of_part: dict[bytes, tuple[str, bytes]] = {}
        # The end of a journal body (schema reference, task, model), by reference, task and model.
        self._tails: dict[tuple[str, str | None, type[BaseModel] | None], bytes] = {}
        self._named: dict[str, bytes] = {}
        self._read: dict[str, Mapping[str, Any]] = {}

    def encode(self, request: Request, bare: bytes | None = None) -> bytes:
        """The journal body of ``request``; its schema is named until the next :meth:`take`.

        ``bare``: :meth:`Request.canonical_json_without_schema`, when the caller
        has it already (it computed the key from them).
        """
        if bare is None:
            bare = request.canonical_json_without_schema()
        schema = request.json_schema
        if schema is None:
            return encode_request(request, None, bare)
        model = request.response_model
        # A model's schema is computed once per class (schema_for) and so is its
        # reference; so is a fixed schema's (see providers.schema.fix_schema). Any
        # other raw schema is a caller's dict, which may change between
        # requests, and is hashed each time.
        if model is not None and schema is schema_for(model):
            known = self._of_model.get((model, request.schema_name))
            if known is None:
                if len(self._of_model) >= _REMEMBERED:
                    self._of_model.clear()
                known = schema_ref(request.schema_name, schema)
                self._of_model[(model, request.schema_name)] = known
        else:
            part = fixed_schema_part(schema, request.schema_name)
            if part is None:
                known = schema_ref(request.schema_name, schema)
                self._named[known[0]] = known[1]
                return encode_request(request, known[0], bare)
            known = self._of_part.get(part)
            if known is None:
                if len(self._of_part) >= _REMEMBERED:
                    self._of_part.clear()
                known = self._of_part[part] = (_ref_of(part), part)
        ref, stored = known
        self._named[ref] = stored
        # Everything after the canonical body is the same for every request of
        # a task and model: serialized once, appended to each body unchanged
        # (the same bytes encode_request writes).
        tail = self._tails.get((ref, request.task, model))
        if tail is None:
            if len(self._tails) >= _REMEMBERED:
                self._tails.clear()
            whole = orjson.dumps({"s": ref, "t": request.task, "m": model_ref(model)})
            tail = b"," + whole[1:]
            self._tails[(ref, request.task, model)] = tail
        return b'{"c":%b%b' % (bare, tail)

    def take(self) -> dict[str, bytes]:
        """The schemas named by the bodies encoded since the last take, by reference."""
        named, self._named = self._named, {}
        return named

    def name(self, schemas: Mapping[str, bytes]) -> None:
        """Name ``schemas`` again (taken for rows whose write failed and will be retried)."""
        self._named.update(schemas)

    def decode(self, body: bytes) -> Request:
        """Rebuild a request from its journal body (see :func:`decode_request`)."""
        return self.decode_many([body])[0]

    def decode_many(self, bodies: list[bytes]) -> list[Request]:
        """Rebuild requests from their journal bodies, reading their schemas at once."""
        parsed: list[dict[str, Any]] = [orjson.loads(body) for body in bodies]
        wanted = {d["s"] for d in parsed if d.get("s") and d["s"] not in self._read}
        if wanted:
            for ref, stored in self.store.get_schemas(wanted).items():
                self._read[ref] = orjson.loads(stored)
        return [_decode(data, self._read) for data in parsed]

    def decode_each(
        self, keys: list[str], bodies: list[bytes], *, check: bool = False
    ) -> list[Request | InputError]:
        """Like :meth:`decode_many`, but one body that cannot be rebuilt fails alone.

        A body written by another version, or damaged, gives an
        :class:`InputError` in its place instead of stopping the others.

        Args:
            keys: the request keys, for the messages.
            bodies: their journal bodies.
            check: also check each rebuilt request (see
                :func:`providers.validation.request_problems`), so one that
                would be refused today is not sent.
        """
        try:
            decoded: list[Request | InputError] = list(self.decode_many(bodies))
        except Exception:
            decoded = [self._decode_one(key, body) for key, body in zip(keys, bodies, strict=True)]
        if check:
            for i, (key, request) in enumerate(zip(keys, decoded, strict=True)):
                if isinstance(request, Request):
                    problems = request_problems(request)
                    if problems:
                        decoded[i] = InputError(
                            f"journaled request {key}: {'; '.join(problems)} — not sent"
                        )
        return decoded

    def _decode_one(self, key: str, body: bytes) -> Request | InputError:
        try:
            return self.decode_many([body])[0]
        except Exception as exc:
            text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            return InputError(f"journaled request {key} cannot be rebuilt ({text}) — not sent")


def _import_model(ref: str | None) -> type[BaseModel] | None:
    if not ref:
        return None
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    if isinstance(obj, type) and issubclass(obj, BaseModel):
        return obj
    return None
