"""Small wire details of the Gemini and Mistral emulations, as the real APIs send them."""

from __future__ import annotations

import time

import httpx

from providers.emulator import Emulator, EmulatorConfig

MISTRAL = {"Authorization": "Bearer mistral-key"}
CHAT = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hi"}]}


def test_mistral_answers_report_its_rate_limits() -> None:
    with (
        Emulator(EmulatorConfig(rpm_limit=2, tpm_limit=100_000)) as emu,
        httpx.Client(base_url=emu.base_url + "/mistral", headers=MISTRAL) as http,
    ):
        first = http.post("/v1/chat/completions", json=CHAT)
        assert first.status_code == 200
        h = first.headers
        assert h["x-ratelimit-limit-req-minute"] == "2"
        assert h["x-ratelimit-remaining-req-minute"] == "1"
        assert h["x-ratelimit-limit-tokens-minute"] == "100000"
        cost = int(h["x-ratelimit-tokens-query-cost"])
        assert cost == first.json()["usage"]["total_tokens"] > 0
        assert int(h["x-ratelimit-remaining-tokens-minute"]) == 100_000 - cost
        month = int(h["x-ratelimit-limit-tokens-month"])
        assert int(h["x-ratelimit-remaining-tokens-month"]) == month - cost
        second = http.post("/v1/chat/completions", json=CHAT)
        assert second.headers["x-ratelimit-remaining-req-minute"] == "0"
        third = http.post("/v1/chat/completions", json=CHAT)
        assert third.status_code == 429 and float(third.headers["retry-after"]) > 0
        assert third.headers["x-ratelimit-remaining-req-minute"] == "0"


def test_a_mistral_fault_429_reports_no_request_left() -> None:
    with (
        Emulator(EmulatorConfig()) as emu,
        httpx.Client(base_url=emu.base_url + "/mistral", headers=MISTRAL) as http,
    ):
        body = {**CHAT, "model": "mistral-small-latest@rate-limit"}
        r = http.post("/v1/chat/completions", json=body)
        assert r.status_code == 429
        assert r.headers["x-ratelimit-remaining-req-minute"] == "0"
        assert r.headers["x-ratelimit-tokens-query-cost"] == "0"


GOOGLE = {"x-goog-api-key": "gemini-key"}
PROMPT = {"contents": [{"role": "user", "parts": [{"text": "Largest city in Mexico?"}]}]}


def test_gemini_usage_details_the_candidates_tokens_as_the_prompt_tokens() -> None:
    with (
        Emulator(EmulatorConfig()) as emu,
        httpx.Client(base_url=emu.base_url, headers=GOOGLE) as http,
    ):
        r = http.post("/v1beta/models/gemini-2.5-flash:generateContent", json=PROMPT)
        usage = r.json()["usageMetadata"]
        out = usage["candidatesTokenCount"]
        assert usage["candidatesTokensDetails"] == [{"modality": "TEXT", "tokenCount": out}]
        prompt = usage["promptTokenCount"]
        assert usage["promptTokensDetails"] == [{"modality": "TEXT", "tokenCount": prompt}]


def test_gemini_item_errors_are_worded_as_googles() -> None:
    requests = [{"request": PROMPT, "metadata": {"key": f"k{i}"}} for i in range(12)]
    batch = {"batch": {"displayName": "x", "inputConfig": {"requests": {"requests": requests}}}}
    with (
        Emulator(EmulatorConfig()) as emu,
        httpx.Client(base_url=emu.base_url, headers=GOOGLE) as http,
    ):
        made = http.post(
            "/v1beta/models/gemini-2.5-flash@item-error:batchGenerateContent", json=batch
        )
        done = http.get(f"/v1beta/{made.json()['name']}").json()
        responses = done["response"]["inlinedResponses"]["inlinedResponses"]
        errors = [r["error"] for r in responses]
        assert {e["code"] for e in errors} >= {500, 429}
        for error in errors:
            assert "openai" not in error["message"].lower()
            if error["code"] == 500:
                assert error["status"] == "INTERNAL"
                assert error["message"].startswith("An internal error has occurred.")


def test_an_ended_gemini_batch_has_nothing_pending() -> None:
    requests = [{"request": PROMPT, "metadata": {"key": f"k{i}"}} for i in range(4)]
    batch = {"batch": {"displayName": "x", "inputConfig": {"requests": {"requests": requests}}}}
    with (
        Emulator(EmulatorConfig(batch_seconds=4.0)) as emu,
        httpx.Client(base_url=emu.base_url, headers=GOOGLE) as http,
    ):
        made = http.post("/v1beta/models/gemini-2.5-flash:batchGenerateContent", json=batch)
        name = made.json()["name"]
        assert made.json()["metadata"]["batchStats"]["pendingRequestCount"] == "4"
        assert http.post(f"/v1beta/{name}:cancel").status_code == 200
        expiring = http.post(
            "/v1beta/models/gemini-2.5-flash@expire:batchGenerateContent", json=batch
        ).json()["name"]
        ended = {}
        deadline = time.time() + 15
        while len(ended) < 2:
            assert time.time() < deadline
            time.sleep(0.1)
            for each in (name, expiring):
                got = http.get(f"/v1beta/{each}").json()
                if got.get("done"):
                    ended[each] = got
        assert ended[name]["metadata"]["state"] == "BATCH_STATE_CANCELLED"
        assert ended[expiring]["metadata"]["state"] == "BATCH_STATE_EXPIRED"
        for op in ended.values():
            stats = op["metadata"]["batchStats"]
            assert stats["requestCount"] == "4" and "pendingRequestCount" not in stats
