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
from typing import Any

from pydantic import BaseModel

__all__ = ["make_strict", "schema_for"]

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
