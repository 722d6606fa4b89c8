"""JSON schemas that strict structured-output modes accept.

OpenAI's ``strict: true`` and Anthropic's ``output_config.format`` both want
a closed schema: every object lists all its properties as required and sets
``additionalProperties: false``, and a few keywords (``default``) are refused.
Pydantic's schema is rewritten into that shape once per model class.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

import orjson
from pydantic import BaseModel

__all__ = ["fix_schema", "fixed_schema_part", "make_strict", "schema_for"]

# Keywords strict mode refuses; the model class still applies them on validation.
_DROP = frozenset({"default", "examples", "discriminator"})


@lru_cache(maxsize=1024)
def schema_for(model: type[BaseModel]) -> Mapping[str, Any]:
    """The strict JSON schema of ``model`` (computed once per class)."""
    return make_strict(model.model_json_schema())


def make_strict(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` rewritten for strict structured output.

    Every object gets ``additionalProperties: false`` and all its properties
    listed in ``required``; refused keywords are dropped. ``$defs``/``$ref``
    are kept, since both providers resolve them.
    """
    out = copy.deepcopy(dict(schema))
    _strict_node(out)
    return out


def _strict_node(node: Any) -> None:
    if isinstance(node, dict):
        for key in _DROP & node.keys():
            del node[key]
        props = node.get("properties")
        if isinstance(props, dict):
            node["required"] = list(props.keys())
            node.setdefault("type", "object")
            node["additionalProperties"] = False
        elif node.get("type") == "object" and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for sub in value.values():
                    _strict_node(sub)
            else:
                _strict_node(value)
    elif isinstance(node, list):
        for item in node:
            _strict_node(item)


# id(schema) -> (the schema, kept so its id is not reused; schema name -> its
# serialized {"name", "schema"} part).
_FIXED: dict[int, tuple[Mapping[str, Any], dict[str | None, bytes]]] = {}
#: Fixed schemas remembered at once; past it they are forgotten (and serialized again).
FIXED_SCHEMAS_MAX: Final = 4096


def fix_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Promise that ``schema`` (a raw JSON schema object) will never change; it is returned.

    A raw schema is a caller's dict, which may change between two requests,
    so each request serializes it again. A schema whose owner made it and
    hands it to no one who changes it (a request file's strict schema, one
    object per distinct schema) is fixed instead: its serialized parts are
    made once (see :func:`fixed_schema_part`).
    """
    if len(_FIXED) >= FIXED_SCHEMAS_MAX:
        _FIXED.clear()
    hit = _FIXED.get(id(schema))
    if hit is None or hit[0] is not schema:
        _FIXED[id(schema)] = (schema, {})
    return schema


def fixed_schema_part(schema: Mapping[str, Any], name: str | None) -> bytes | None:
    """``{"name": name, "schema": schema}`` serialized with sorted keys, for a fixed schema.

    Made once per fixed schema and name; ``None`` for a schema not fixed
    (see :func:`fix_schema`), which the caller serializes itself.
    """
    hit = _FIXED.get(id(schema))
    if hit is None or hit[0] is not schema:
        return None
    parts = hit[1]
    part = parts.get(name)
    if part is None:
        body = {"name": name, "schema": schema}
        part = parts[name] = b"%b" % orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return part
