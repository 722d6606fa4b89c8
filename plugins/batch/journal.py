"""How a request is written into the journal, and rebuilt from it.

The journal keeps each request's canonical body (and the import path of its
response model), so that ``lexibatch resume`` and retry rounds can rebuild
the request without the original input.
"""

from __future__ import annotations

import importlib
from typing import Any

import orjson
from pydantic import BaseModel

from providers.types import Message, Request

__all__ = ["decode_request", "encode_request", "model_ref"]


def model_ref(model: type[BaseModel] | None) -> str | None:
    """``module:QualName`` of a response model class, when it can be imported back."""
    if model is None or "<locals>" in model.__qualname__:
        return None
    return f"{model.__module__}:{model.__qualname__}"


def encode_request(request: Request) -> bytes:
    """The journal body of ``request``."""
    tail = orjson.dumps({"t": request.task, "m": model_ref(request.response_model)})
    # Splice the already-serialized canonical body in rather than serializing it again.
    return b'{"c":' + request.canonical_json + b"," + tail[1:]


def decode_request(body: bytes) -> Request:
    """Rebuild a request from its journal body.

    The response model class is re-imported when it can be; otherwise the
    answer is validated against the stored JSON schema.
    """
    data: dict[str, Any] = orjson.loads(body)
    canonical = data["c"]
    schema = canonical.get("schema")
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
