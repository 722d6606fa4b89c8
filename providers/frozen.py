"""A faster ``__init__`` for the frozen, slotted dataclasses made once per request or answer.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, "name", value)``: a global lookup, an attribute
lookup and a call by name per field. A batch of a hundred thousand answers
makes a :class:`~providers.types.Response`, a
:class:`~providers.types.Completion` and more for each, so that costs a
visible share of a run. :func:`fast_init` gives such a class an ``__init__``
with the same parameters that stores each field through its slot's
descriptor directly, in half the time. The class is otherwise untouched: it
stays frozen (assigning to a field still raises), compares, hashes, prints
and copies (``dataclasses.replace``) as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init"]

_T = TypeVar("_T")


def fast_init(cls: type[_T]) -> type[_T]:
    """Give the frozen, slotted dataclass ``cls`` a faster ``__init__`` (see the module).

    Apply it above ``@dataclass(frozen=True, slots=True)``.

    Raises:
        TypeError: ``cls`` is not a frozen dataclass with slots, or a field
            has a default factory or is not a positional ``__init__``
            parameter (keep the generated ``__init__`` for those).
    """
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass with slots")
    namespace: dict[str, Any] = {}
    signature: list[str] = []
    body: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        if field.default_factory is not dataclasses.MISSING or not field.init or field.kw_only:
            raise TypeError(
                f"{cls.__name__}.{name}: a default factory, or not a positional __init__ parameter"
            )
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        if field.default is dataclasses.MISSING:
            signature.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            signature.append(f"{name}=_default_{name}")
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body) + "\n"
    # Made from the class's own field names, as dataclasses make theirs.
    exec(source, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - a method replaced on the class
    return cls
