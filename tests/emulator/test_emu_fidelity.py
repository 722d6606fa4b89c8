"""The emulator answers as the real APIs do: keys, context length, rate limits, files, shapes."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from emu_helpers import HEADERS, batch_file, chat_body, params, requests_of

from providers.emulator import Emulator, EmulatorConfig

AUTH = {"Authorization": "Bearer sk-good-key-0000000000"}
SCHEMA = {
    "type": "object",
    "properties": {"word": {"type": "string"}, "level": {"type": "integer"}},
    "required": ["word", "level"],
    "additionalProperties": False,
}


def _client(emu: Emulator, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=emu.base_url, headers=headers or AUTH)


def test_a_key_outside_the_set_gets_each_apis_401() -> None:
    keys = ["sk-good-key-0000000000"]
    with Emulator(EmulatorConfig(api_keys=keys)) as emu, _client(emu) as http:
        assert http.post("/v1/chat/completions", json=chat_body("x")).status_code == 200
        bad = http.post(
            "/v1/chat/completions",
            json=chat_body("x"),
            headers={"Authorization": "Bearer sk-wrong-key-123456789"},
        )
        assert bad.status_code == 401
        error = bad.json()["error"]
        assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
        assert "sk-wrong-key-123456789" not in error["message"]
        assert error["message"].startswith("Incorrect API key provided: sk-wrong")
        ok = http.post("/v1/messages", json=params("x"), headers={**HEADERS, "x-api-key": keys[0]})
        assert ok.status_code == 200
        refused = http.post("/v1/messages", json=params("x"), headers=HEADERS)
        assert refused.status_code == 401
        body = refused.json()
        assert body["type"] == "error" and body["request_id"].startswith("req_")
        assert body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}


def test_any_key_is_accepted_by_default(emu: Emulator) -> None:
    with _client(emu, {"Authorization": "Bearer whatever"}) as http:
        assert http.post("/v1/chat/completions", json=chat_body("x")).status_code == 200


def test_an_over_long_prompt_is_refused_per_model() -> None:
    config = EmulatorConfig(context_window=1000, context_windows={"gpt-4o": 50})
    long = "word " * 100  # 500 characters: about 125 tokens
    with Emulator(config) as emu, _client(emu) as http:
        assert http.post("/v1/chat/completions", json=chat_body(long, "o3-mini")).status_code == 200
        r = http.post("/v1/chat/completions", json=chat_body(long, "gpt-4o-mini"))
        assert r.status_code == 400
        error = r.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (
            "context_length_exceeded",
            "messages",
            "invalid_request_error",
        )
        assert re.match(
            r"This model's maximum context length is 50 tokens\. However", error["message"]
        )
        a = http.post("/v1/messages", json=params("word " * 1000), headers=HEADERS)
        assert a.status_code == 400
        assert re.fullmatch(
            r"prompt is too long: \d+ tokens > 1000 maximum", a.json()["error"]["message"]
        )
        assert a.json()["error"]["type"] == "invalid_request_error"


def test_an_over_long_prompt_in_a_batch_fails_that_item_alone() -> None:
    config = EmulatorConfig(context_windows={"claude-haiku": 30})
    with Emulator(config) as emu, _client(emu, HEADERS) as http:
        requests = requests_of(2)
        requests[1]["params"]["messages"][0]["content"] = "word " * 100
        batch = http.post("/v1/messages/batches", json={"requests": requests}).json()
        ended = http.get(f"/v1/messages/batches/{batch['id']}").json()
        assert ended["request_counts"]["succeeded"] == 1
        assert ended["request_counts"]["errored"] == 1
        lines = [orjson.loads(x) for x in http.get(ended["results_url"]).content.splitlines()]
        errored = next(x for x in lines if x["custom_id"] == "r1")["result"]
        assert errored["type"] == "errored"
        assert errored["error"]["error"]["message"].startswith("prompt is too long:")


def test_rate_limit_headers_count_down_to_the_429() -> None:
    with Emulator(EmulatorConfig(rpm_limit=2)) as emu, _client(emu) as http:
        first = http.post("/v1/chat/completions", json=chat_body("a"))
        second = http.post("/v1/chat/completions", json=chat_body("b"))
        third = http.post("/v1/chat/completions", json=chat_body("c"))
        assert first.headers["x-ratelimit-limit-requests"] == "2"
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        assert re.fullmatch(
            r"(\d+m)?\d+(\.\d+)?s|\d+ms", second.headers["x-ratelimit-reset-requests"]
        )
        assert int(first.headers["x-ratelimit-remaining-tokens"]) > int(
            second.headers["x-ratelimit-remaining-tokens"]
        )
        assert third.status_code == 429
        assert third.json()["error"]["code"] == "rate_limit_exceeded"
        assert 50 < float(third.headers["retry-after"]) <= 60
        assert third.headers["x-ratelimit-remaining-requests"] == "0"
        m = http.post("/v1/messages", json=params("x"), headers=HEADERS)
        assert m.status_code == 429
        assert m.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert m.headers["anthropic-ratelimit-requests-reset"].endswith("Z")


def _upload(http: httpx.Client, purpose: str = "batch") -> dict[str, Any]:
    r = http.post(
        "/v1/files", files={"file": ("f.jsonl", batch_file(1))}, data={"purpose": purpose}
    )
    assert r.status_code == 200
    result: dict[str, Any] = r.json()
    return result


def test_files_are_listed_by_purpose_in_pages_and_deleted(emu: Emulator) -> None:
    with _client(emu) as http:
        ids = [_upload(http)["id"] for _ in range(3)]
        other = _upload(http, "user_data")["id"]
        listing = http.get("/v1/files", params={"purpose": "batch", "limit": 2}).json()
        assert set(listing) == {"object", "data", "first_id", "last_id", "has_more"}
        assert listing["has_more"] is True and len(listing["data"]) == 2
        rest = http.get(
            "/v1/files", params={"purpose": "batch", "limit": 2, "after": listing["last_id"]}
        ).json()
        assert rest["has_more"] is False
        seen = [f["id"] for f in listing["data"] + rest["data"]]
        assert sorted(seen) == sorted(ids) and other not in seen
        deleted = http.delete(f"/v1/files/{ids[0]}")
        assert deleted.json() == {"id": ids[0], "object": "file", "deleted": True}
        assert http.delete(f"/v1/files/{ids[0]}").status_code == 404
        assert http.get(f"/v1/files/{ids[0]}").status_code == 404
        every = [f["id"] for f in http.get("/v1/files").json()["data"]]
        assert ids[0] not in every and other in every
        assert http.get("/v1/files", params={"limit": 0}).status_code == 400


def test_a_schema_in_the_prompt_gets_an_answer_that_fits_it(emu: Emulator) -> None:
    system = "Answer only with JSON matching this schema:\n" + orjson.dumps(SCHEMA).decode()
    chat = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "swift"}],
    }
    with _client(emu) as http:
        content = http.post("/v1/chat/completions", json=chat).json()
        jsonschema.validate(orjson.loads(content["choices"][0]["message"]["content"]), SCHEMA)
        json_mode = {**chat, "response_format": {"type": "json_object"}}
        content = http.post("/v1/chat/completions", json=json_mode).json()
        jsonschema.validate(orjson.loads(content["choices"][0]["message"]["content"]), SCHEMA)
        message = http.post(
            "/v1/messages",
            headers=HEADERS,
            json={
                "model": "claude-haiku-4-5",
                "max_tokens": 200,
                "system": system,
                "messages": [{"role": "user", "content": "swift"}],
            },
        ).json()
        jsonschema.validate(orjson.loads(message["content"][0]["text"]), SCHEMA)
        plain = http.post("/v1/chat/completions", json=chat_body("x") | {"response_format": None})
        assert "Synthetic answer" in plain.json()["choices"][0]["message"]["content"]


def test_reasoning_models_answer_with_a_reasoning_item_first(emu: Emulator) -> None:
    body = {"model": "o3-mini", "input": "Define swift."}
    with _client(emu) as http:
        answer = http.post("/v1/responses", json=body).json()
    kinds = [item["type"] for item in answer["output"]]
    assert kinds == ["reasoning", "message"]
    assert answer["output"][0]["id"].startswith("rs_")
    assert answer["usage"]["output_tokens_details"]["reasoning_tokens"] > 0


@pytest.mark.parametrize("finalizing", [0.0, 0.2])
def test_a_batch_may_go_from_in_progress_to_completed(finalizing: float) -> None:
    config = EmulatorConfig(batch_seconds=0.6, finalizing=finalizing)
    with Emulator(config) as emu, _client(emu) as http:
        file_id = _upload(http)["id"]
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        batch = http.post("/v1/batches", json=body).json()
        seen: list[str] = []
        while not seen or seen[-1] != "completed":
            status = http.get(f"/v1/batches/{batch['id']}").json()["status"]
            if not seen or seen[-1] != status:
                seen.append(status)
            time.sleep(0.02)
    expected = ["validating", "in_progress", "completed"]
    if finalizing:
        expected.insert(2, "finalizing")
    assert seen == expected


def test_result_lines_carry_request_ids_shaped_like_the_real_ones(emu: Emulator) -> None:
    with _client(emu) as http:
        file_id = _upload(http)["id"]
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        batch = http.post("/v1/batches", json=body).json()
        done = http.get(f"/v1/batches/{batch['id']}").json()
        line = orjson.loads(http.get(f"/v1/files/{done['output_file_id']}/content").content)
    # ``ed3ad7feb8ad212a440ab12a1175798e`` in the real recordings: 32 hex digits, no prefix.
    assert re.fullmatch(r"[0-9a-f]{32}", line["response"]["request_id"])
    assert re.fullmatch(r"batch_req_[0-9a-f]{32}", line["id"])


def test_a_message_batch_in_progress_says_when_to_ask_again() -> None:
    config = EmulatorConfig(batch_seconds=5, poll_retry_after=10)
    with Emulator(config) as emu, _client(emu, HEADERS) as http:
        batch = http.post("/v1/messages/batches", json={"requests": requests_of(1)}).json()
        polled = http.get(f"/v1/messages/batches/{batch['id']}")
        assert polled.json()["processing_status"] == "in_progress"
        assert polled.headers["retry-after"] == "10"
