"""The reports people read: batches and cost tables, the spend chart, money for machines."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from plugins.spendchart import bucket_size, spend_buckets, spend_chart
from plugins.store import CallRecord, Shard, Store
from plugins.tables import (
    age,
    batch_views,
    batches_table,
    cost_json,
    cost_rows,
    cost_table,
)
from providers.money import usd_json
from providers.types import Usage


def _render(renderable: Any, width: int = 200) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _call(
    key: str,
    cost: float | None,
    *,
    mode: str = "batch",
    ts: float,
    batch: str | None = None,
    task: str = "define",
    provider: str = "openai",
) -> CallRecord:
    immediate = None if cost is None else cost * 2 if mode == "batch" else cost
    return CallRecord(
        provider, "gpt-4o-mini", task, mode, key, Usage(100, 20), cost, immediate, batch, ts
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.db")
    yield s
    s.close()


def test_usd_json_is_exact_and_free_of_float_noise() -> None:
    assert usd_json(0.000012149999999999999) == "0.00001215"
    assert usd_json(0.1 + 0.2) == "0.3"
    assert usd_json(Decimal("1234.5")) == "1234.5"
    assert usd_json(0) == "0" and usd_json(None) == "0"


def test_ages_read_as_people_say_them() -> None:
    assert [age(s) for s in (5, 185, 7_740, 273_600, -3)] == [
        "5s",
        "3m 05s",
        "2h 09m",
        "3d 4h",
        "0s",
    ]


def test_batches_table_shows_counts_cost_and_local_times(store: Store) -> None:
    now = time.time()
    store.add_shard(Shard("shard_a", "openai", "gpt-4o-mini", requests=3))
    store.update_shard(
        "shard_a",
        state="collected",
        batch_id="batch_a",
        batch_status="completed",
        counts={"total": 3, "succeeded": 2, "failed": 1},
    )
    store.add_shard(Shard("shard_b", "openai", "gpt-4o-mini", requests=5))
    store.record_calls([_call(f"k{i}", 0.1, ts=now, batch="batch_a") for i in range(2)])
    views = batch_views(store, store.shards())
    assert [v.cost_usd for v in views] == [Decimal("0.2"), Decimal(0)]
    text = _render(batches_table(views, now=now + 125))
    row_a = next(line for line in text.splitlines() if "batch_a" in line)
    cells = [c.strip() for c in row_a.split("│")[1:-1]]
    assert cells[:9] == [
        "batch_a",
        "openai",
        "gpt-4o-mini",
        "collected",
        "completed",
        "3",
        "2",
        "1",
        "$0.20",
    ]
    assert cells[9] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(views[0].shard.created_at))
    assert cells[10].startswith("2m ")
    assert "(shard_b)" in text  # never reached the provider: named by its shard
    assert "2 batches, 8 requests, $0.20 spent through them" in text


def test_a_batch_failed_whole_counts_its_requests_failed(store: Store) -> None:
    # The provider rejected the batch: it counts none of its requests, ran none.
    store.add_shard(Shard("shard_f", "openai", "gpt-4o-mini", requests=4))
    store.update_shard(
        "shard_f",
        state="failed",
        batch_id="batch_f",
        batch_status="failed",
        counts={"total": 0, "succeeded": 0, "failed": 0},
        error="the input file failed validation",
    )
    (view,) = batch_views(store, store.shards())
    assert view.done == (0, 4)
    row = next(line for line in _render(batches_table([view])).splitlines() if "batch_f" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[3:8] == ["failed", "failed", "4", "0", "4"]


def test_cost_table_by_provider_with_the_saving(store: Store) -> None:
    now = time.time()
    store.record_calls(
        [
            _call("a", 0.000012149999999999999, ts=now),
            _call("b", 0.00001215, ts=now),
            _call("c", 0.05, mode="immediate", ts=now, provider="anthropic", task="t"),
            _call("d", None, ts=now),
        ]
    )
    rows = cost_rows(store)
    assert [(r.provider, r.mode, r.calls, r.unpriced) for r in rows] == [
        ("anthropic", "immediate", 1, 0),
        ("openai", "batch", 3, 1),
    ]
    text = _render(cost_table(rows))
    openai = next(line for line in text.splitlines() if "openai" in line)
    assert "$0.0000243" in openai and "$0.0000486" in openai and "(50%)" in openai
    assert "$0.0000000" not in text and "$0.0000 " not in text
    total = next(line for line in text.splitlines() if "total" in line)
    assert "$0.05" in total and "4" in total
    assert "1 calls on unpriced models are not counted" in text
    data = cost_json(rows)
    assert data["rows"][1]["cost_usd"] == "0.0000243"
    assert data["total"]["cost_usd"] == "0.0500243"
    assert data["total"]["saved_usd"] == "0.0000243"


def test_bucket_size_fits_the_span() -> None:
    assert bucket_size(0)[1] == "minute"
    assert bucket_size(3 * 3600)[1] == "5 minutes"
    assert bucket_size(30 * 3600)[1] == "hour"
    assert bucket_size(20 * 86400)[1] == "day"
    assert bucket_size(3 * 365 * 86400)[1] == "week"


def test_spend_chart_draws_a_bar_per_bucket_scaled_to_the_peak(store: Store) -> None:
    base = (time.time() // 3600) * 3600 - 10 * 3600  # ten hours of history, hour-aligned
    store.record_calls(
        [
            _call("a", 1.0, ts=base + 60),  # $2 in the first quarter hour
            _call("b", 1.0, ts=base + 120),
            _call("c", 0.5, ts=base + 5 * 3600 + 60),  # $0.50 five hours later
            _call("d", 0.0001, ts=base + 9 * 3600 + 60),  # a sliver, but shown
        ]
    )
    buckets, name, fmt = spend_buckets(store)
    assert name == "15 minutes"
    assert sum(b.calls for b in buckets) == 4
    assert buckets[0].cost_usd == Decimal(2) and buckets[-1].calls == 1
    text = _render(spend_chart(buckets, name, fmt, width=40))
    lines = [line for line in text.splitlines() if "$" in line]
    assert len(lines) == 3  # empty buckets have no amount
    assert "█" * 40 in lines[0] and "$2.00" in lines[0] and "2 calls" in lines[0]
    assert "█" * 10 in lines[1] and "█" * 11 not in lines[1] and "$0.50" in lines[1]
    assert "▏" in lines[2] and "$0.0001" in lines[2]
    assert "spend per 15 minutes (local time)" in text
    # Empty buckets in between keep the time axis straight.
    assert len(text.splitlines()) - 1 == len(buckets) == 9 * 4 + 1


def test_cost_command_json_and_chart(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    now = time.time()
    with Store(db) as s:
        s.record_calls([_call("a", 0.000012149999999999999, ts=now)])
    env_cmd = [sys.executable, "-m", "synthesis.cli"]
    as_json = subprocess.run(
        [*env_cmd, "cost", "--json", "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["total"]["cost_usd"] == "0.00001215"
    chart = subprocess.run(
        [*env_cmd, "cost", "--chart", "--db", str(db)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert chart.returncode == 0, chart.stderr
    assert "spend by provider, mode, task and model" in chart.stdout
    assert "spend per minute (local time)" in chart.stdout
    # The float noise is gone before rounding: 0.00001215 reads $0.0000122 (half up).
    assert "█" * 40 + " $0.0000122 1 call" in chart.stdout
