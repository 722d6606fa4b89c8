"""Faults look on the wire as real failures do: headers, counts, cancels, small batches."""

from __future__ import annotations

import time
from datetime import datetime
from itertools import pairwise

import httpx
import orjson
import pytest
from emu_helpers import HEADERS, batch_file, chat_body, params, requests_of

from providers.emulator import Emulator, EmulatorConfig

AUTH = {"Authorization": "Bearer sk-test"}


def test_a_fault_429_reports_its_limit_used_up_until_retry_after() -> None:
    with (
        Emulator(EmulatorConfig(retry_after=2.5)) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as http,
    ):
        r = http.post("/v1/chat/completions", json=chat_body("x", "gpt-4o-mini@rate-limit"))
        assert r.status_code == 429
        assert "Limit 500, Used 500" in r.json()["error"]["message"]
        assert r.headers["x-ratelimit-limit-requests"] == "500"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert r.headers["x-ratelimit-reset-requests"] == "2.5s"
        assert r.headers["retry-after"] == "2.5"
        before = time.time()
        a = http.post(
            "/v1/messages", json=params("x", "claude-haiku-4-5@rate-limit"), headers=HEADERS
        )
        assert a.status_code == 429
        assert "of 50 requests per minute" in a.json()["error"]["message"]
        assert a.headers["anthropic-ratelimit-requests-limit"] == "50"
        assert a.headers["anthropic-ratelimit-requests-remaining"] == "0"
        reset = datetime.fromisoformat(a.headers["anthropic-ratelimit-requests-reset"])
        assert before + 2.5 <= reset.timestamp() <= time.time() + 2.5 + 1
        # The next answer reports the emulator's own limits again.
        ok = http.post("/v1/chat/completions", json=chat_body("y"))
        assert ok.status_code == 200
        assert int(ok.headers["x-ratelimit-remaining-requests"]) > 0


def _poll_counts(http: httpx.Client, data: bytes) -> list[tuple[str, dict[str, int]]]:
    """Every ``(status, request_counts)`` an OpenAI batch of ``data`` shows until it ends."""
    f = http.post("/v1/files", files={"file": ("in.jsonl", data)}, data={"purpose": "batch"})
    body = {
        "input_file_id": f.json()["id"],
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    batch = http.post("/v1/batches", json=body).json()
    seen = [(batch["status"], batch["request_counts"])]
    deadline = time.time() + 20
    while seen[-1][0] not in ("completed", "failed", "expired", "cancelled"):
        assert time.time() < deadline
        time.sleep(0.01)
        got = http.get(f"/v1/batches/{batch['id']}").json()
        seen.append((got["status"], got["request_counts"]))
    return seen


def _only_rise(seen: list[tuple[str, dict[str, int]]]) -> None:
    started = [counts for status, counts in seen if status != "validating"]
    for before, after in pairwise(started):
        assert after["total"] == before["total"]
        assert after["completed"] >= before["completed"], seen
        assert after["failed"] >= before["failed"], seen


def test_openai_request_counts_only_rise_and_end_as_they_ran() -> None:
    config = EmulatorConfig(batch_seconds=1.0, item_error=0.4, seed=3)
    with Emulator(config) as emu, httpx.Client(base_url=emu.base_url, headers=AUTH) as http:
        seen = _poll_counts(http, batch_file(12))
        assert [s for s, _ in seen][-1] == "completed"
        _only_rise(seen)
        final = seen[-1][1]
        assert 0 < final["failed"] < 12 and final["completed"] + final["failed"] == 12
        running = [c for s, c in seen if s == "in_progress"]
        # Failures show up as their items run, not all at once at the end.
        assert any(0 < c["failed"] < final["failed"] for c in running), seen
        assert all(c == final for s, c in seen if s == "finalizing")

        every = _poll_counts(http, batch_file(3, model="gpt-4o-mini@item-error"))
        _only_rise(every)
        assert every[-1] == ("completed", {"total": 3, "completed": 0, "failed": 3})
        assert all(c["completed"] == 0 for _, c in every)

        expired = _poll_counts(http, batch_file(10, model="gpt-4o-mini@expire"))
        _only_rise(expired)
        status, counts = expired[-1]
        assert status == "expired" and counts["completed"] + counts["failed"] == 10
        assert max(c["completed"] for _, c in expired) == counts["completed"] < 10


def test_an_openai_batch_cancelled_while_validating_ran_nothing() -> None:
    with (
        Emulator(EmulatorConfig(batch_seconds=4.0)) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as http,
    ):
        f = http.post(
            "/v1/files", files={"file": ("in.jsonl", batch_file(2))}, data={"purpose": "batch"}
        )
        body = {
            "input_file_id": f.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        batch = http.post("/v1/batches", json=body).json()
        cancelling = http.post(f"/v1/batches/{batch['id']}/cancel").json()
        nothing = {"total": 0, "completed": 0, "failed": 0}
        assert cancelling["status"] == "cancelling"
        assert cancelling["request_counts"] == nothing
        assert cancelling["in_progress_at"] is None and cancelling["cancelling_at"] is not None
        deadline = time.time() + 10
        got = cancelling
        while got["status"] != "cancelled":
            assert time.time() < deadline
            time.sleep(0.05)
            got = http.get(f"/v1/batches/{batch['id']}").json()
        assert got["request_counts"] == nothing
        assert got["output_file_id"] is None and got["error_file_id"] is None
        assert got["in_progress_at"] is None and got["cancelled_at"] is not None
        assert emu.billing()["batch"]["requests"] == 0


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_batch_fault_hits_a_small_anthropic_batch(n: int) -> None:
    with (
        Emulator(EmulatorConfig()) as emu,
        httpx.Client(base_url=emu.base_url, headers=HEADERS) as http,
    ):
        for model, kind in (
            ("claude-haiku-4-5@expire", "expired"),
            ("claude-haiku-4-5@cancel", "canceled"),
        ):
            made = http.post("/v1/messages/batches", json={"requests": requests_of(n, model)})
            ended = http.get(f"/v1/messages/batches/{made.json()['id']}").json()
            assert ended["processing_status"] == "ended"
            counts = ended["request_counts"]
            assert counts[kind] >= 1 and counts["succeeded"] == n // 2
            assert counts["succeeded"] + counts[kind] == n
            lines = http.get(ended["results_url"]).content.splitlines()
            kinds = sorted(orjson.loads(x)["result"]["type"] for x in lines)
            assert kinds.count(kind) == counts[kind] and len(kinds) == n


def test_a_batch_fault_leaves_one_item_undone_even_when_all_should_run() -> None:
    with (
        Emulator(EmulatorConfig(partial_done=1.0)) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as http,
    ):
        seen = _poll_counts(http, batch_file(3, model="gpt-4o-mini@expire"))
        assert seen[-1] == ("expired", {"total": 3, "completed": 2, "failed": 1})
