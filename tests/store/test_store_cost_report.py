"""The cost report: one group summed without sorting, several grouped; the same figures."""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from plugins.store import CallRecord, Store
from plugins.store.rows import CostRow
from providers.types import Usage

# The report as plain grouping makes it: what every shortcut must give.
_GROUPED = (
    "SELECT mode, task, model, COUNT(*), TOTAL(input_tokens), TOTAL(output_tokens), "
    "TOTAL(cached_tokens), TOTAL(reasoning_tokens), TOTAL(cost_usd), "
    "TOTAL(COALESCE(immediate_cost_usd, CASE WHEN mode = 'immediate' THEN cost_usd END)), "
    "TOTAL(cost_usd IS NULL) FROM calls{where} "
    "GROUP BY mode, task, model ORDER BY mode, task, model"
)


def _grouped(store: Store, where: str = "", params: tuple[Any, ...] = ()) -> list[CostRow]:
    return [
        CostRow(r[0], r[1], r[2], *(int(v) for v in r[3:8]), float(r[8]), float(r[9]), int(r[10]))
        for r in store.query(_GROUPED.format(where=where), params)
    ]


def _calls(groups: list[tuple[str, str | None, str]], n: int, seed: int) -> list[CallRecord]:
    rnd = random.Random(seed)
    calls = []
    for i in range(n):
        mode, task, model = rnd.choice(groups)
        usage = Usage(rnd.randint(1, 500), rnd.randint(1, 50), rnd.randint(0, 5), rnd.randint(0, 3))
        cost = None if rnd.random() < 0.1 else rnd.random() / 1000
        immediate = None if rnd.random() < 0.5 else rnd.random() / 500
        key = f"k{seed}-{i}"
        calls.append(CallRecord("openai", model, task, mode, key, usage, cost, immediate))
    return calls


@pytest.mark.parametrize(
    "groups",
    [
        [("batch", "define", "m1")],
        [("batch", None, "m1")],
        [("immediate", "define", "m1")],
        [("batch", "define", "m1"), ("batch", "define", "m2")],
        [("batch", "define", "m1"), ("batch", None, "m1")],
        [("batch", None, "m1"), ("immediate", None, "m1")],
        [("batch", "define", "m1"), ("batch", "enhance", "m1"), ("immediate", "define", "m2")],
    ],
)
def test_the_report_is_what_grouping_gives(
    store: Store, groups: list[tuple[str, str | None, str]]
) -> None:
    store.record_calls(_calls(groups, 300, seed=len(groups)))
    report = store.cost_report()
    assert report == _grouped(store)
    assert len(report) == len(groups)
    assert sum(r.requests for r in report) == 300


def test_a_run_in_one_group_is_reported_apart_from_another_runs_calls(db_path: Any) -> None:
    with Store(db_path) as first, Store(db_path) as second:
        started = time.time()
        first.record_calls(_calls([("batch", "define", "m1")], 50, seed=1))
        second.record_calls(_calls([("immediate", "enhance", "m2")], 40, seed=2))
        mine = first.cost_report(since=started, run=first.run_id)
        assert [(r.mode, r.task, r.model, r.requests) for r in mine] == [
            ("batch", "define", "m1", 50)
        ]
        assert mine == _grouped(
            first,
            " WHERE ts >= ? AND run = (SELECT id FROM runs WHERE run_id = ?)",
            (started, first.run_id),
        )
        assert len(first.cost_report()) == 2
        assert first.cost_report(since=time.time() + 60) == []


@pytest.mark.parametrize("after", ["LIMIT 1", "EXISTS"])
def test_calls_of_another_group_written_while_the_report_is_read_are_grouped(
    store: Store, monkeypatch: pytest.MonkeyPatch, after: str
) -> None:
    store.record_calls(_calls([("batch", "define", "m1")], 20, seed=3))
    read = store._read
    written: list[int] = []

    def racing(sql: str, params: Any = ()) -> list[Any]:
        rows = read(sql, params)
        if after in sql and not written:
            # Another process records a call of another group between two reads.
            written.append(store.record_calls(_calls([("batch", "define", "m9")], 1, seed=4)))
        return rows

    monkeypatch.setattr(store, "_read", racing)
    report = store.cost_report()
    assert written == [1]
    assert [(r.model, r.requests) for r in report] == [("m1", 20), ("m9", 1)]
    assert report == _grouped(store)


def test_several_groups_are_found_at_the_first_call_of_another(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.record_calls(_calls([("batch", "define", "m1"), ("batch", "enhance", "m1")], 50, 5))
    statements: list[str] = []
    read = store._read

    def seen(sql: str, params: Any = ()) -> list[Any]:
        statements.append(sql)
        return read(sql, params)

    monkeypatch.setattr(store, "_read", seen)
    assert len(store.cost_report()) == 2
    # No sums of the first group alone: straight from the probe to grouping.
    assert ["LIMIT 1" in s for s in statements] == [True, False, False]
    assert "EXISTS" in statements[1] and "GROUP BY" in statements[2]


class _SQLiteMemory:
    """The memory SQLite itself holds in this process (its C allocations, which
    Python's own counters do not see), read from the library ``sqlite3`` uses."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("sqlite3")
        if name is None:
            pytest.skip("the SQLite library is not a shared library here")
        lib = ctypes.CDLL(name)
        if lib.sqlite3_libversion_number() != _version_number(sqlite3.sqlite_version_info):
            pytest.skip("ctypes finds another SQLite library than the sqlite3 module's")
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.restype = ctypes.c_int64
        lib.sqlite3_memory_highwater.argtypes = [ctypes.c_int]
        self._lib = lib

    def used(self) -> int:
        return int(self._lib.sqlite3_memory_used())

    def peak_since_reset(self, reset: bool) -> int:
        return int(self._lib.sqlite3_memory_highwater(1 if reset else 0))


def _version_number(info: tuple[int, int, int]) -> int:
    return info[0] * 1_000_000 + info[1] * 1_000 + info[2]


def test_a_report_over_more_calls_than_the_page_cache_holds_sorts_outside_memory(
    db_path: Path,
) -> None:
    # Twenty groups, so the report groups (sorts) its calls. A store holds
    # its page cache; the sort of a report larger than it spills to a
    # temporary file instead of growing SQLite's memory by the calls' size.
    memory = _SQLiteMemory()
    groups: list[tuple[str, str | None, str]] = [("batch", f"task{i}", "m1") for i in range(20)]
    with Store(db_path) as store:
        store.record_calls(_calls(groups, 150_000, seed=11))
    with Store(db_path) as store:
        assert memory.used() > 0, "ctypes reads another copy of SQLite than the store uses"
        # A 1 MiB page cache, which also bounds what a sort keeps in memory.
        store._conn.execute("PRAGMA cache_size = -1024")
        store.query("SELECT COUNT(*), TOTAL(input_tokens), TOTAL(cost_usd) FROM calls")
        base = memory.used()
        memory.peak_since_reset(reset=True)
        report = store.cost_report()
        grew = memory.peak_since_reset(reset=False) - base
        assert report == _grouped(store)
        assert len(report) == 20 and sum(r.requests for r in report) == 150_000
    # Held in memory, the sort takes about 9 MB here (some 60 bytes a call).
    assert grew < 3_000_000, f"SQLite's memory grew {grew:,} bytes for the report"
