"""The Anthropic side of the emulator, driven by the official ``anthropic`` SDK."""

from __future__ import annotations

import anthropic
import httpx
import jsonschema
import orjson
import pytest
from emu_helpers import HEADERS, params, requests_of, wait_ended
from emu_helpers import PLACE_SCHEMA as SCHEMA

from providers.emulator import Emulator, EmulatorConfig


def test_message_with_output_config_format(ant: anthropic.Anthropic) -> None:
    body = params("Tell me about London")
    message = ant.messages.create(**body)
    assert message.id.startswith("msg_01") and len(message.id) == 28
    assert message.model == "claude-haiku-4-5" and message.stop_reason == "end_turn"
    block = message.content[0]
    assert block.type == "text"
    jsonschema.validate(orjson.loads(block.text), SCHEMA)
    again = ant.messages.create(**body)
    assert again.content[0].text == block.text  # type: ignore[union-attr]
    assert message.usage.input_tokens >= 1 and message.usage.output_tokens >= 1
    assert message.usage.service_tier == "standard"


def test_forced_tool_use(ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model="claude-haiku-4-5",
        max_tokens=512,
        messages=[{"role": "user", "content": "Largest city?"}],
        tools=[{"name": "final_result", "description": "answer", "input_schema": SCHEMA}],
        tool_choice={"type": "tool", "name": "final_result"},
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use" and block.name == "final_result"
    assert block.id.startswith("toolu_01")
    jsonschema.validate(block.input, SCHEMA)


def test_message_without_schema(ant: anthropic.Anthropic) -> None:
    message = ant.messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    )
    assert "synthetic" in message.content[0].text.lower()  # type: ignore[union-attr]


def test_auth_and_version_headers(http: httpx.Client) -> None:
    r = http.post("/v1/messages", json=params("x"), headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert r.headers["request-id"].startswith("req_01")
    r = http.post("/v1/messages", json=params("x"), headers={"x-api-key": "k"})
    assert r.status_code == 400 and "anthropic-version" in r.json()["error"]["message"]
    r = http.post("/v1/messages", json=params("x"), headers=HEADERS)
    assert r.status_code == 200 and r.headers["request-id"].startswith("req_01")


def test_full_batch_cycle(ant: anthropic.Anthropic, http: httpx.Client) -> None:
    batch = ant.messages.batches.create(requests=requests_of(12))  # type: ignore[arg-type]
    assert batch.id.startswith("msgbatch_01") and len(batch.id) == 33
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 12
    early = http.get(f"/v1/messages/batches/{batch.id}/results", headers=HEADERS)
    assert early.status_code == 404 and early.json()["error"]["type"] == "not_found_error"
    ended = wait_ended(ant, batch.id)
    assert ended.request_counts.succeeded == 12 and ended.request_counts.processing == 0
    assert ended.ended_at is not None and ended.results_url is not None
    assert ended.results_url.endswith(f"/v1/messages/batches/{batch.id}/results")
    results = list(ant.messages.batches.results(batch.id))
    ids = [r.custom_id for r in results]
    assert sorted(ids) == sorted(f"r{i}" for i in range(12))
    assert ids != [f"r{i}" for i in range(12)]  # not in input order
    again = [r.custom_id for r in ant.messages.batches.results(batch.id)]
    assert again == ids  # the same order every time
    for r in results:
        assert r.result.type == "succeeded"
        message = r.result.message  # type: ignore[union-attr]
        assert message.usage.service_tier == "batch"
        jsonschema.validate(orjson.loads(message.content[0].text), SCHEMA)  # type: ignore[union-attr]


def test_batch_timestamps_are_rfc3339(http: httpx.Client) -> None:
    body = http.post(
        "/v1/messages/batches", json={"requests": requests_of(1)}, headers=HEADERS
    ).json()
    created = body["created_at"]
    assert created.endswith("+00:00") and "T" in created and "." in created
    assert body["expires_at"] > created and body["ended_at"] is None


def test_batch_validation(http: httpx.Client) -> None:
    dup = requests_of(2)
    dup[1]["custom_id"] = "r0"
    r = http.post("/v1/messages/batches", json={"requests": dup}, headers=HEADERS)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    bad = requests_of(1)
    bad[0]["custom_id"] = "no spaces allowed"
    r = http.post("/v1/messages/batches", json={"requests": bad}, headers=HEADERS)
    assert r.status_code == 400


def test_cancel(ant: anthropic.Anthropic) -> None:
    batch = ant.messages.batches.create(requests=requests_of(3))  # type: ignore[arg-type]
    canceling = ant.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    ended = wait_ended(ant, batch.id)
    assert ended.request_counts.canceled == 3
    assert {r.result.type for r in ant.messages.batches.results(batch.id)} == {"canceled"}
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.batches.cancel(batch.id)


def test_list_pagination(ant: anthropic.Anthropic) -> None:
    created = [ant.messages.batches.create(requests=requests_of(1)).id for _ in range(5)]  # type: ignore[arg-type]
    page = ant.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == created[::-1][:2] and page.has_more
    assert [b.id for b in ant.messages.batches.list(limit=2)] == created[::-1]


def test_unknown_batch(ant: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.batches.retrieve("msgbatch_01nope")


def test_batch_progress_over_time() -> None:
    with Emulator(EmulatorConfig(batch_seconds=0.4)) as emu:
        ant = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
        batch = ant.messages.batches.create(requests=requests_of(2))  # type: ignore[arg-type]
        assert ant.messages.batches.retrieve(batch.id).processing_status == "in_progress"
        ended = wait_ended(ant, batch.id)
        assert ended.request_counts.succeeded == 2
