"""A lock another process holds is waited for through the one retry policy."""

from __future__ import annotations

import time

import pytest

from plugins.retry import retry_while_busy


class Busy(Exception):
    pass


def _busy(exc: BaseException) -> bool:
    return isinstance(exc, Busy)


def test_a_busy_call_is_tried_again_until_it_gets_through() -> None:
    calls = 0

    def locked_twice() -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise Busy("database is locked")
        return "written"

    assert retry_while_busy(locked_twice, busy=_busy, give_up_after=5.0) == "written"
    assert calls == 3


def test_another_failure_is_not_tried_again() -> None:
    calls = 0

    def full_disk() -> None:
        nonlocal calls
        calls += 1
        raise OSError("database or disk is full")

    with pytest.raises(OSError, match="disk is full"):
        retry_while_busy(full_disk, busy=_busy, give_up_after=5.0)
    assert calls == 1


def test_a_lock_held_past_the_time_allowed_raises_the_busy_error() -> None:
    calls = 0

    def always_locked() -> None:
        nonlocal calls
        calls += 1
        raise Busy("database is locked")

    started = time.monotonic()
    with pytest.raises(Busy):
        retry_while_busy(always_locked, busy=_busy, give_up_after=0.2)
    assert 0.2 <= time.monotonic() - started < 5.0
    assert calls > 2
