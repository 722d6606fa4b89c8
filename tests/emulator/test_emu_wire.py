"""Field-for-field: our objects have the keys of the real ones.

The key sets below were read from real recorded OpenAI and Anthropic traffic
(batch cycles, cancels and structured-output calls, recorded in 2025); they
are written out here so the tests need nothing outside the repository.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
from emu_helpers import HEADERS, batch_file, chat_body, params, requests_of

from providers.emulator import Emulator, EmulatorConfig

REAL_OPENAI_FILE = {
    "object",
    "id",
    "purpose",
    "filename",
    "bytes",
    "created_at",
    "expires_at",
    "status",
    "status_details",
}
REAL_OPENAI_BATCH = {
    "id",
    "object",
    "endpoint",
    "errors",
    "input_file_id",
    "completion_window",
    "status",
    "output_file_id",
    "error_file_id",
    "created_at",
    "in_progress_at",
    "expires_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
    "request_counts",
    "metadata",
}
# Batches made since September 2025 add the batch's model and token totals.
REAL_OPENAI_BATCH_NEWEST = REAL_OPENAI_BATCH | {"model", "usage"}
REAL_BATCH_USAGE = {
    "input_tokens",
    "input_tokens_details",
    "output_tokens",
    "output_tokens_details",
    "total_tokens",
}
REAL_OPENAI_COUNTS = {"total", "completed", "failed"}
REAL_OPENAI_RATE_HEADERS = {
    f"x-ratelimit-{what}-{unit}"
    for what in ("limit", "remaining", "reset")
    for unit in ("requests", "tokens")
}
REAL_ANTHROPIC_RATE_HEADERS = {
    f"anthropic-ratelimit-{unit}-{what}"
    for unit in ("requests", "tokens", "input-tokens", "output-tokens")
    for what in ("limit", "remaining", "reset")
}
REAL_FILE_LIST = {"object", "data", "first_id", "last_id", "has_more"}
REAL_FILE_DELETED = {"id", "object", "deleted"}
REAL_OUTPUT_LINE = {"id", "custom_id", "response", "error"}
REAL_OUTPUT_RESPONSE = {"status_code", "request_id", "body"}
REAL_CHAT = {
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "service_tier",
    "system_fingerprint",
}
REAL_CHOICE = {"index", "message", "logprobs", "finish_reason"}
REAL_CHAT_MESSAGE = {"role", "content", "refusal", "annotations"}
REAL_CHAT_USAGE = {
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
}
REAL_PROMPT_DETAILS = {"cached_tokens", "audio_tokens"}
REAL_COMPLETION_DETAILS = {
    "reasoning_tokens",
    "audio_tokens",
    "accepted_prediction_tokens",
    "rejected_prediction_tokens",
}
REAL_OPENAI_HEADERS = {"x-request-id", "openai-version", "openai-organization", "content-type"}

REAL_MESSAGE_BATCH = {
    "id",
    "type",
    "processing_status",
    "request_counts",
    "ended_at",
    "created_at",
    "expires_at",
    "archived_at",
    "cancel_initiated_at",
    "results_url",
}
REAL_MESSAGE_BATCH_COUNTS = {"processing", "succeeded", "errored", "canceled", "expired"}
REAL_RESULT_LINE = {"custom_id", "result"}
REAL_SUCCEEDED = {"type", "message"}
# Batch results (Jan 2025) carry the first set; messages of late 2025 add the rest.
REAL_MESSAGE = {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence", "usage"}
REAL_MESSAGE_NEWEST = REAL_MESSAGE | {"stop_details"}
REAL_MESSAGE_USAGE = {
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
}
REAL_MESSAGE_USAGE_NEWEST = REAL_MESSAGE_USAGE | {"cache_creation", "service_tier", "inference_geo"}
REAL_CACHE_CREATION = {"ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens"}
REAL_TOOL_USE = {"id", "input", "name", "type"}
REAL_ANTHROPIC_HEADERS = {"request-id", "content-type"}

AUTH = {"Authorization": "Bearer k"}


def _check_chat(body: dict[str, Any]) -> None:
    assert set(body) == REAL_CHAT
    assert set(body["choices"][0]) == REAL_CHOICE
    assert set(body["choices"][0]["message"]) == REAL_CHAT_MESSAGE
    usage = body["usage"]
    assert set(usage) == REAL_CHAT_USAGE
    assert set(usage["prompt_tokens_details"]) == REAL_PROMPT_DETAILS
    assert set(usage["completion_tokens_details"]) == REAL_COMPLETION_DETAILS
    assert isinstance(body["created"], int) and body["object"] == "chat.completion"


def test_openai_objects_have_the_real_keys() -> None:
    with (
        Emulator(EmulatorConfig(batch_seconds=0.3)) as emu,
        httpx.Client(base_url=emu.base_url, headers=AUTH) as http,
    ):
        r = http.post("/v1/chat/completions", json=chat_body("x"))
        assert set(r.headers) >= REAL_OPENAI_HEADERS | REAL_OPENAI_RATE_HEADERS
        _check_chat(r.json())
        up = http.post(
            "/v1/files", files={"file": ("upload", batch_file(2))}, data={"purpose": "batch"}
        )
        assert set(up.json()) == REAL_OPENAI_FILE and up.json()["expires_at"] is None
        got = http.get(f"/v1/files/{up.json()['id']}").json()
        assert set(got) == REAL_OPENAI_FILE and got["expires_at"] == got["created_at"] + 30 * 86400
        created = http.post(
            "/v1/batches",
            json={
                "input_file_id": got["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"k": "v"},
            },
        ).json()
        seen = []
        while True:
            batch = http.get(f"/v1/batches/{created['id']}").json()
            assert set(batch) == REAL_OPENAI_BATCH_NEWEST
            assert set(batch["usage"]) == REAL_BATCH_USAGE
            assert (batch["model"] is None) == (batch["status"] == "validating")
            assert set(batch["request_counts"]) == REAL_OPENAI_COUNTS
            for key in ("created_at", "expires_at", "in_progress_at", "completed_at"):
                assert batch[key] is None or isinstance(batch[key], int)
            seen.append(batch["status"])
            if batch["status"] == "completed":
                break
            time.sleep(0.02)
        assert set(created) == REAL_OPENAI_BATCH_NEWEST and created["status"] == "validating"
        assert created["model"] is None and batch["model"] == chat_body("x")["model"]
        assert batch["usage"]["input_tokens"] > 0 and batch["usage"]["output_tokens"] > 0
        assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
        content = http.get(f"/v1/files/{batch['output_file_id']}/content")
        assert content.headers["content-type"] == "application/octet-stream"
        assert content.headers["content-disposition"] == (
            f'attachment; filename="{created["id"]}_output.jsonl"'
        )
        for raw in content.content.splitlines():
            line = orjson.loads(raw)
            assert set(line) == REAL_OUTPUT_LINE
            assert set(line["response"]) == REAL_OUTPUT_RESPONSE
            _check_chat(line["response"]["body"])
            assert line["response"]["body"]["system_fingerprint"] is None


def test_anthropic_objects_have_the_real_keys(emu: Emulator, http: httpx.Client) -> None:
    r = http.post("/v1/messages", json=params("x"), headers=HEADERS)
    assert set(r.headers) >= REAL_ANTHROPIC_HEADERS | REAL_ANTHROPIC_RATE_HEADERS
    message = r.json()
    assert set(message) == REAL_MESSAGE_NEWEST
    assert set(message["usage"]) == REAL_MESSAGE_USAGE_NEWEST
    assert set(message["usage"]["cache_creation"]) == REAL_CACHE_CREATION
    tool = http.post(
        "/v1/messages",
        headers=HEADERS,
        json={
            "model": "claude-haiku-4-5",
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [
                {
                    "name": "final_result",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
                }
            ],
            "tool_choice": {"type": "tool", "name": "final_result"},
        },
    ).json()
    assert set(tool["content"][0]) == REAL_TOOL_USE
    created = http.post("/v1/messages/batches", json={"requests": requests_of(2)}, headers=HEADERS)
    batch = created.json()
    assert (
        set(batch) == REAL_MESSAGE_BATCH
        and set(batch["request_counts"]) == REAL_MESSAGE_BATCH_COUNTS
    )
    ended = http.get(f"/v1/messages/batches/{batch['id']}", headers=HEADERS).json()
    assert set(ended) == REAL_MESSAGE_BATCH and ended["processing_status"] == "ended"
    results = http.get(f"/v1/messages/batches/{batch['id']}/results", headers=HEADERS)
    name = f"{batch['id']}_results.jsonl"
    assert results.headers["content-type"] == "application/x-jsonl"
    assert results.headers["content-disposition"] == (
        f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
    )
    for raw in results.content.splitlines():
        line = orjson.loads(raw)
        assert set(line) == REAL_RESULT_LINE and set(line["result"]) == REAL_SUCCEEDED
        assert set(line["result"]["message"]) >= REAL_MESSAGE
        assert set(line["result"]["message"]["usage"]) >= REAL_MESSAGE_USAGE
    listing = http.get("/v1/messages/batches", headers=HEADERS).json()
    assert set(listing) == {"data", "has_more", "first_id", "last_id"}
