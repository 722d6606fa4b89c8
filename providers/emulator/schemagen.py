"""Synthetic JSON values that fit a JSON schema.

A schema is compiled once into a tree of small generator functions (cached by
the schema's canonical bytes); each call walks it with a :class:`Rng`, so the
same seed always gives the same value. Supported: objects (all declared
properties), arrays (``minItems``/``maxItems``, ``prefixItems``,
``uniqueItems``), strings (``enum``, ``const``, ``minLength``/``maxLength``,
formats date, date-time, time, email, uri, uuid, hostname, ipv4), integers and
numbers (``minimum``/``maximum``, exclusive bounds, ``multipleOf``), booleans,
null, ``anyOf``/``oneOf``/``allOf``, type lists, ``nullable``, and
``$ref`` into ``$defs``/``definitions`` (recursion is cut off by depth: past
it an object gets only its required properties, and a schema that requires
itself without end, which no finite value fits, gets ``null`` where the cycle
closes, as a model could not answer it either).
``pattern`` is not honoured.

Strings read as ``"synthetic <property name> 3fa2"`` so nobody mistakes them
for real content.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from providers.emulator.rng import Rng

__all__ = ["Generator", "compile_schema", "generator_for", "invalidate"]

Generator = Callable[[Rng, int], Any]
"""A compiled schema: ``gen(rng, depth)`` returns one value."""

_MAX_DEPTH = 6
# Deep enough for any schema that has a finite value, shallow enough for the C stack.
_CUT_DEPTH = 48
# The Rng's step, inlined in the hottest generators (see providers.emulator.rng.Rng.next).
_A = 6364136223846793005
_C = 1442695040888963407
_M = (1 << 64) - 1
_CACHE: dict[bytes, Generator] = {}
_CACHE_LIMIT = 4096


def generator_for(schema: Mapping[str, Any]) -> Generator:
    """The (cached) generator of ``schema``."""
    key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    gen = _CACHE.get(key)
    if gen is None:
        if len(_CACHE) >= _CACHE_LIMIT:
            _CACHE.clear()
        gen = compile_schema(schema)
        _CACHE[key] = gen
    return gen


def compile_schema(schema: Mapping[str, Any]) -> Generator:
    """Compile ``schema`` (the root, which ``$ref`` pointers resolve against)."""
    return _Compiler(schema).compile(schema, "example")


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Generator] = {}

    def compile(self, node: Any, label: str) -> Generator:
        if not isinstance(node, Mapping):
            return _text(label, 0, None)
        if "$ref" in node:
            return self._ref(str(node["$ref"]), label)
        if "const" in node:
            const = node["const"]
            return lambda rng, depth: const
        if node.get("enum"):
            return _choice(list(node["enum"]))
        if "allOf" in node:
            merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
            for part in node["allOf"]:
                part = self._deref(part)
                for key, value in part.items():
                    if key == "properties":
                        merged["properties"] = {**merged.get("properties", {}), **value}
                    elif key == "required":
                        merged["required"] = [*merged.get("required", []), *value]
                    else:
                        merged.setdefault(key, value)
            return self.compile(merged, label)
        options = node.get("anyOf") or node.get("oneOf")
        if options:
            return _union([self.compile(o, label) for o in options], [_is_null(o) for o in options])
        kind = node.get("type")
        if isinstance(kind, list):
            branches = [{**node, "type": t} for t in kind]
            return _union([self.compile(b, label) for b in branches], [t == "null" for t in kind])
        if node.get("nullable") is True:
            inner = self.compile({k: v for k, v in node.items() if k != "nullable"}, label)
            return _union([inner, lambda rng, depth: None], [False, True])
        if kind is None:
            if "properties" in node:
                kind = "object"
            elif "items" in node or "prefixItems" in node:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self._object(node)
        if kind == "array":
            return self._array(node, label)
        if kind == "integer":
            return _integer(node)
        if kind == "number":
            return _number(node)
        if kind == "boolean":
            return lambda rng, depth: bool(rng.next() & 1)
        if kind == "null":
            return lambda rng, depth: None
        return _string(node, label)

    def _deref(self, node: Any) -> Mapping[str, Any]:
        while isinstance(node, Mapping) and "$ref" in node:
            node = self._resolve(str(node["$ref"]))
        return node if isinstance(node, Mapping) else {}

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for part in ref[1:].split("/"):
            if not part:
                continue
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        return node

    def _ref(self, ref: str, label: str) -> Generator:
        key = f"{ref}\x00{label}"
        refs = self.refs
        if key not in refs:
            # A placeholder first, so a recursive schema compiles to a cycle of lookups.
            refs[key] = lambda rng, depth: None
            refs[key] = self.compile(self._resolve(ref), label)

        def follow(rng: Rng, depth: int) -> Any:
            return refs[key](rng, depth) if depth < _CUT_DEPTH else None

        return follow

    def _object(self, node: Mapping[str, Any]) -> Generator:
        props = node.get("properties") or {}
        required = set(node.get("required") or [])
        fields = [(name, self.compile(sub, name)) for name, sub in props.items()]
        for name in node.get("required") or []:
            if name not in props:
                fields.append((name, _text(name, 0, None)))
        extra = node.get("additionalProperties")
        if not fields and isinstance(extra, Mapping) and extra:
            fields.append(("synthetic_key", self.compile(extra, "value")))
        # Past the depth limit only what must be there: an optional property
        # that leads back to its own object would otherwise never end.
        needed = [(name, g) for name, g in fields if name in required]

        def gen(rng: Rng, depth: int) -> Any:
            d = depth + 1
            return {name: g(rng, d) for name, g in (fields if depth < _MAX_DEPTH else needed)}

        return gen

    def _array(self, node: Mapping[str, Any], label: str) -> Generator:
        lo = int(node.get("minItems", 0))
        hi_given = node.get("maxItems")
        hi = int(hi_given) if hi_given is not None else max(lo, 3)
        lo_default = max(lo, 1) if hi >= 1 else 0
        prefix = [self.compile(p, label) for p in node.get("prefixItems") or []]
        items = node.get("items")
        item = self.compile(items, label) if isinstance(items, Mapping) else None
        if item is None and not prefix:
            item = _text(label, 0, None)
        unique = bool(node.get("uniqueItems"))
        if item is not None and not prefix and not unique:
            span = max(hi, lo_default) - lo_default + 1

            def plain(rng: Rng, depth: int) -> Any:
                if depth >= _MAX_DEPTH:
                    n = lo
                else:
                    rng.state = (rng.state * _A + _C) & _M
                    n = lo_default + (rng.state >> 32) % span
                d = depth + 1
                return [item(rng, d) for _ in range(n)]

            return plain

        def gen(rng: Rng, depth: int) -> Any:
            n = lo if depth >= _MAX_DEPTH else rng.between(lo_default, max(hi, lo_default))
            if item is None:
                n = min(n, len(prefix))
            d = depth + 1
            out = [p(rng, d) for p in prefix[:n]]
            tries = 0
            while len(out) < n and item is not None:
                value = item(rng, d)
                tries += 1
                if unique and value in out and tries < 4 * n + 8:
                    continue
                out.append(value)
            return out

        return gen


def _is_null(node: Any) -> bool:
    return isinstance(node, Mapping) and node.get("type") == "null"


def _union(branches: list[Generator], nulls: list[bool]) -> Generator:
    real = [b for b, is_null in zip(branches, nulls, strict=True) if not is_null]
    has_null = any(nulls)
    if not real:
        return lambda rng, depth: None

    def gen(rng: Rng, depth: int) -> Any:
        # Mostly a real value: answers full of nulls would test little.
        if has_null and (depth >= _MAX_DEPTH or rng.below(4) == 0):
            return None
        return real[rng.below(len(real))](rng, depth)

    return gen


def _choice(values: list[Any]) -> Generator:
    k = len(values)

    def gen(rng: Rng, depth: int) -> Any:
        rng.state = (rng.state * _A + _C) & _M
        return values[(rng.state >> 32) % k]

    return gen


def _bounds(node: Mapping[str, Any], integral: bool) -> tuple[float, float]:
    lo: Any = node.get("minimum")
    hi: Any = node.get("maximum")
    step = 1 if integral else 0.01
    if node.get("exclusiveMinimum") is not None and not isinstance(node["exclusiveMinimum"], bool):
        lo = node["exclusiveMinimum"] + step
    elif node.get("exclusiveMinimum") is True and lo is not None:
        lo = lo + step
    if node.get("exclusiveMaximum") is not None and not isinstance(node["exclusiveMaximum"], bool):
        hi = node["exclusiveMaximum"] - step
    elif node.get("exclusiveMaximum") is True and hi is not None:
        hi = hi - step
    if lo is None and hi is None:
        lo, hi = 0, 100
    elif lo is None:
        lo = min(0, hi) if hi >= 0 else hi - 100
    elif hi is None:
        hi = max(lo, 0) + 100
    return float(lo), float(hi)


def _integer(node: Mapping[str, Any]) -> Generator:
    lo_f, hi_f = _bounds(node, True)
    lo, hi = -int(-lo_f // 1), int(hi_f // 1)
    step = node.get("multipleOf")
    if isinstance(step, int) and step > 0:
        k_lo, k_hi = -(-lo // step), hi // step
        return lambda rng, depth: rng.between(k_lo, max(k_lo, k_hi)) * step
    return lambda rng, depth: rng.between(lo, max(lo, hi))


def _number(node: Mapping[str, Any]) -> Generator:
    lo, hi = _bounds(node, False)
    step = node.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        k_lo, k_hi = -int(-lo // step), int(hi // step)
        return lambda rng, depth: rng.between(k_lo, max(k_lo, k_hi)) * step
    span = max(hi - lo, 0.0)

    def gen(rng: Rng, depth: int) -> float:
        value = round(lo + rng.unit() * span, 2)
        return min(max(value, lo), hi)

    return gen


def _string(node: Mapping[str, Any], label: str) -> Generator:
    fmt = node.get("format")
    lo = int(node.get("minLength", 0))
    hi = node.get("maxLength")
    formatted = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if formatted is not None:
        return formatted
    return _text(label, lo, int(hi) if hi is not None else None)


def _text(label: str, lo: int, hi: int | None) -> Generator:
    word = label.replace("_", " ").strip() or "example"
    if len(word) > 40:
        word = word[:40]
    head = f"synthetic {word} "
    if lo <= len(head) + 4 and hi is None:

        def short(rng: Rng, depth: int) -> str:
            rng.state = state = (rng.state * _A + _C) & _M
            return f"{head}{state >> 48:04x}"

        return short

    def gen(rng: Rng, depth: int) -> str:
        text = head + rng.hex4()
        if len(text) < lo:
            text = (text + " " + "synthetic" * (lo // 9 + 1))[:lo]
        if hi is not None and len(text) > hi:
            text = text[:hi]
        return text

    return gen


def _date(rng: Rng, depth: int) -> str:
    return f"2024-{rng.between(1, 12):02d}-{rng.between(1, 28):02d}"


def _time(rng: Rng, depth: int) -> str:
    return f"{rng.below(24):02d}:{rng.below(60):02d}:{rng.below(60):02d}Z"


def _uuid(rng: Rng, depth: int) -> str:
    h = f"{rng.next():016x}{rng.next():016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


_FORMATS: dict[str, Generator] = {
    "date": _date,
    "time": _time,
    "date-time": lambda rng, depth: f"{_date(rng, depth)}T{_time(rng, depth)}",
    "email": lambda rng, depth: f"synthetic.{rng.hex4()}@example.com",
    "uri": lambda rng, depth: f"https://example.com/synthetic/{rng.hex4()}",
    "url": lambda rng, depth: f"https://example.com/synthetic/{rng.hex4()}",
    "hostname": lambda rng, depth: f"synthetic-{rng.hex4()}.example.com",
    "ipv4": lambda rng, depth: f"192.0.2.{rng.between(1, 254)}",
    "uuid": _uuid,
}


def invalidate(value: Any, schema: Mapping[str, Any]) -> Any:
    """A value close to ``value`` that does not fit ``schema`` (for the schema_invalid fault)."""
    if isinstance(value, dict):
        required = list(schema.get("required") or [])
        if required and required[0] in value:
            broken = dict(value)
            del broken[required[0]]
            return broken
        return ["synthetic invalid answer"]
    if isinstance(value, str):
        return {"synthetic": "invalid answer"}
    return "synthetic invalid answer"
