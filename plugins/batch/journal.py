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
from providers.errors import ConfigError
from providers.types import Message, Request

__all__ = ["SchemaBook", "decode_request", "encode_request", "model_ref", "schema_ref"]

# Schemas remembered by object identity; past this many the memory is cleared
# (requests read from files carry a schema object each).
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
    body = orjson.dumps({"name": name, "schema": schema}, option=orjson.OPT_SORT_KEYS)
    return "s-" + hashlib.sha256(body).hexdigest()[:32], body


def encode_request(request: Request, ref: str | None) -> bytes:
    """The journal body of ``request``, its schema named by ``ref`` (see :func:`schema_ref`)."""
    canonical = request.canonical()
    canonical.pop("schema", None)
    return orjson.dumps(
        {"c": canonical, "s": ref, "t": request.task, "m": model_ref(request.response_model)}
    )


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
    return _decode(orjson.loads(body), schemas)


def _decode(data: dict[str, Any], schemas: Mapping[str, bytes]) -> Request:
    canonical = data["c"]
    ref = data.get("s")
    if ref is None:
        schema = canonical.get("schema")
    elif ref in schemas:
        schema = orjson.loads(schemas[ref])
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

    :meth:`encode` names a request's schema by reference and remembers the
    schemas not yet stored; the caller writes :meth:`unwritten` in the same
    transaction as the journal rows that refer to them, then calls
    :meth:`written`. :meth:`decode` reads referenced schemas from the store
    (once each).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # id(schema object) -> (the object, kept alive so its id stays its own; name; ref)
        self._refs: dict[int, tuple[Mapping[str, Any], str | None, str]] = {}
        self._stored: set[str] = set()
        self._unwritten: dict[str, bytes] = {}
        self._read: dict[str, bytes] = {}

    def encode(self, request: Request) -> bytes:
        """The journal body of ``request``; its schema joins :meth:`unwritten` if new."""
        schema = request.json_schema
        if schema is None:
            return encode_request(request, None)
        known = self._refs.get(id(schema))
        if known is not None and known[0] is schema and known[1] == request.schema_name:
            ref = known[2]
        else:
            ref, stored = schema_ref(request.schema_name, schema)
            if len(self._refs) >= _REMEMBERED:
                self._refs.clear()
            self._refs[id(schema)] = (schema, request.schema_name, ref)
            if ref not in self._stored:
                self._unwritten[ref] = stored
        return encode_request(request, ref)

    def unwritten(self) -> dict[str, bytes]:
        """The schemas named by encoded bodies and not yet stored, by reference."""
        return dict(self._unwritten)

    def written(self, refs: Mapping[str, bytes]) -> None:
        """``refs`` were committed to the store."""
        for ref in refs:
            self._unwritten.pop(ref, None)
            self._stored.add(ref)

    def decode(self, body: bytes) -> Request:
        """Rebuild a request from its journal body (see :func:`decode_request`)."""
        return self.decode_many([body])[0]

    def decode_many(self, bodies: list[bytes]) -> list[Request]:
        """Rebuild requests from their journal bodies, reading their schemas at once."""
        parsed: list[dict[str, Any]] = [orjson.loads(body) for body in bodies]
        wanted = {d["s"] for d in parsed if d.get("s") and d["s"] not in self._read}
        if wanted:
            self._read.update(self.store.get_schemas(wanted))
        return [_decode(data, self._read) for data in parsed]


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
