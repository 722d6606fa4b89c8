"""Faults look on the wire as real failures do: headers, counts, cancels, small batches."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from emu_helpers import HEADERS, chat_body, params

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
