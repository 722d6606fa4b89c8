"""The faster ``__init__`` of the value types: the same parameters, still frozen."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field

import pytest

from providers.frozen import fast_init
from providers.types import Completion, ItemResult, Message, Response, Usage


@fast_init
@dataclass(frozen=True, slots=True)
class Point:
    """A small value type with a default."""

    x: int
    y: int = 7


def test_the_fields_are_set_positionally_and_by_name_with_their_defaults() -> None:
    assert (Point(1).x, Point(1).y) == (1, 7)
    assert Point(1, 2) == Point(y=2, x=1)
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, z=3)  # type: ignore[call-arg]


def test_an_instance_stays_frozen_hashable_and_copyable() -> None:
    point = Point(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 5  # type: ignore[misc]
    assert hash(point) == hash(Point(1, 2))
    assert dataclasses.replace(point, y=3) == Point(1, 3)
    assert pickle.loads(pickle.dumps(point)) == point


def test_a_class_it_cannot_speed_up_is_refused() -> None:
    @dataclass(frozen=True)
    class Plain:
        x: int

    @dataclass(slots=True)
    class Mutable:
        x: int

    @dataclass(frozen=True, slots=True)
    class Factory:
        x: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True, kw_only=True)
    class KeywordOnly:
        x: int

    for cls in (Plain, Mutable, Factory, KeywordOnly):
        with pytest.raises(TypeError):
            fast_init(cls)


def test_the_value_types_are_built_as_their_fields_say() -> None:
    usage = Usage(3, 4, cached_tokens=1)
    assert dataclasses.astuple(usage) == (3, 4, 1, 0, 0, 0)
    completion = Completion("{}", usage, "m", finish_reason="stop")
    assert (completion.request_id, completion.refusal, completion.rate_limit) == (None,) * 3
    response = Response({}, "{}", usage, 0.5, "openai", "m", "batch", "k", batch_id="b")
    assert (response.request_id, response.cached, response.batch_id) == (None, False, "b")
    assert ItemResult("k", completion=completion).error is None
    assert Message("user", "hi").to_dict() == {"role": "user", "content": "hi"}
    for value in (usage, completion, response, ItemResult("k"), Message("user", "hi")):
        first = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, first, "other")
