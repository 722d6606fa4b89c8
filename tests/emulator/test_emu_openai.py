"""The OpenAI side of the emulator, driven by the official ``openai`` SDK."""

from __future__ import annotations

import time

import httpx
import jsonschema
import openai
import orjson
import pytest
from emu_helpers import SCHEMA, batch_file, chat_body, jsonl, lines_of, run_batch

from providers.emulator import Emulator, EmulatorConfig

# ------------------------------------------------------------------ immediate


def test_chat_completion_strict_schema_is_valid_and_deterministic(oai: openai.OpenAI) -> None:
    body = chat_body("serendipity")
    first = oai.chat.completions.create(**body)
    second = oai.chat.completions.create(**body)
    content = first.choices[0].message.content
    assert content is not None
    value = orjson.loads(content)
    jsonschema.validate(value, SCHEMA)
    assert "synthetic" in value["word"]
    assert content == second.choices[0].message.content
    assert first.id != second.id and first.id.startswith("chatcmpl-") and len(first.id) == 38
    assert first.model == "gpt-4o-mini"
    other = oai.chat.completions.create(**chat_body("petrichor"))
    assert other.choices[0].message.content != content
    usage = first.usage
    assert usage is not None and usage.prompt_tokens >= 1 and usage.completion_tokens >= 1
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens == max(1, (len(content) + 3) // 4)


def test_chat_without_schema_says_synthetic(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
    )
    assert "synthetic" in (answer.choices[0].message.content or "").lower()


def test_forced_function_tool_call_fits_parameters(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "x"}],
        tools=[{"type": "function", "function": {"name": "entry", "parameters": SCHEMA}}],
        tool_choice={"type": "function", "function": {"name": "entry"}},
    )
    calls = answer.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "entry"  # type: ignore[union-attr]
    jsonschema.validate(orjson.loads(calls[0].function.arguments), SCHEMA)  # type: ignore[union-attr]


def test_responses_api_text_format(oai: openai.OpenAI) -> None:
    answer = oai.responses.create(
        model="gpt-4.1-mini",
        instructions="Describe words.",
        input="lexicon",
        text={"format": {"type": "json_schema", "name": "entry", "schema": SCHEMA, "strict": True}},
    )
    assert answer.id.startswith("resp_") and answer.status == "completed"
    jsonschema.validate(orjson.loads(answer.output_text), SCHEMA)
    assert answer.usage is not None and answer.usage.input_tokens >= 1


def test_max_tokens_cuts_the_answer(oai: openai.OpenAI) -> None:
    answer = oai.chat.completions.create(**chat_body("cut"), max_tokens=3)
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens <= 3


def test_missing_key_gets_real_401(http: httpx.Client) -> None:
    r = http.post("/v1/chat/completions", json=chat_body("x"))
    assert r.status_code == 401
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and "API key" in err["message"]
    r = http.post("/v1/chat/completions", json=chat_body("x"), headers={"Authorization": "Bearer"})
    assert r.status_code == 401


def test_response_headers(http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions", json=chat_body("x"), headers={"Authorization": "Bearer k"}
    )
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-request-id"].startswith("req_") and len(r.headers["x-request-id"]) == 36
    assert r.headers["openai-version"] == "2020-10-01"


# -------------------------------------------------------------------- batches


def test_full_batch_cycle_with_progression() -> None:
    with Emulator(EmulatorConfig(batch_seconds=0.6)) as emu:
        oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
        f = oai.files.create(file=("in.jsonl", batch_file(5)), purpose="batch")
        assert f.status == "processed" and f.id.startswith("file-") and len(f.id) == 27
        assert oai.files.retrieve(f.id).bytes == len(batch_file(5))
        batch = oai.batches.create(
            input_file_id=f.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"run": "t"},
        )
        assert batch.id.startswith("batch_") and len(batch.id) == 38
        assert int(batch.id[6:14], 16) == batch.created_at
        assert batch.expires_at == batch.created_at + 86400
        statuses = [batch.status]
        while batch.status != "completed":
            time.sleep(0.02)
            batch = oai.batches.retrieve(batch.id)
            if batch.status != statuses[-1]:
                statuses.append(batch.status)
        assert statuses == ["validating", "in_progress", "finalizing", "completed"]
        assert batch.request_counts is not None
        assert (batch.request_counts.total, batch.request_counts.completed) == (5, 5)
        assert batch.error_file_id is None and batch.metadata == {"run": "t"}
        assert batch.in_progress_at and batch.finalizing_at and batch.completed_at
        out = lines_of(oai, batch.output_file_id)
        assert [x["custom_id"] for x in out] == [f"w{i}" for i in range(5)]
        for line in out:
            assert line["id"].startswith("batch_req_") and len(line["id"]) == 42
            assert line["error"] is None and line["response"]["status_code"] == 200
            assert len(line["response"]["request_id"]) == 32
            content = line["response"]["body"]["choices"][0]["message"]["content"]
            jsonschema.validate(orjson.loads(content), SCHEMA)
        out_file = oai.files.retrieve(batch.output_file_id)  # type: ignore[arg-type]
        assert out_file.purpose == "batch_output"
        assert out_file.filename == f"{batch.id}_output.jsonl"


def test_batch_answer_equals_immediate_answer(oai: openai.OpenAI) -> None:
    batch = run_batch(oai, batch_file(1))
    line = lines_of(oai, batch.output_file_id)[0]
    immediate = oai.chat.completions.create(**chat_body("word 0"))
    assert line["response"]["body"]["choices"][0]["message"]["content"] == (
        immediate.choices[0].message.content
    )


def test_responses_endpoint_batch(oai: openai.OpenAI) -> None:
    body = {
        "model": "gpt-4.1-mini",
        "input": "x",
        "text": {"format": {"type": "json_schema", "name": "e", "schema": SCHEMA}},
    }
    data = jsonl([{"custom_id": "r1", "method": "POST", "url": "/v1/responses", "body": body}])
    batch = run_batch(oai, data, "/v1/responses")
    assert batch.status == "completed"
    body_out = lines_of(oai, batch.output_file_id)[0]["response"]["body"]
    assert body_out["object"] == "response" and body_out["id"].startswith("resp_")
    jsonschema.validate(orjson.loads(body_out["output"][0]["content"][0]["text"]), SCHEMA)


def test_invalid_lines_fail_the_batch(oai: openai.OpenAI) -> None:
    data = (
        batch_file(2)
        + b"not json\n"
        + jsonl([{"custom_id": "w0", "method": "POST", "url": "/v1/chat/completions", "body": {}}])
    )
    batch = run_batch(oai, data)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None and batch.errors.data is not None
    codes = [(e.code, e.line) for e in batch.errors.data]
    assert codes == [("invalid_json_line", 3), ("duplicate_custom_id", 4)]
    assert batch.output_file_id is None and batch.error_file_id is None


def test_cancel_right_after_create(oai: openai.OpenAI) -> None:
    f = oai.files.create(file=("in.jsonl", batch_file(4)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert cancelling.request_counts is not None and cancelling.request_counts.total == 0
    done = oai.batches.retrieve(batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    # Cancelled while validating: none of its requests ran, so there is nothing to read.
    assert done.output_file_id is None and done.error_file_id is None
    assert done.request_counts is not None and done.request_counts.total == 0
    with pytest.raises(openai.ConflictError):
        oai.batches.cancel(batch.id)
    assert oai.batches.retrieve(batch.id).status == "cancelled"


def test_cancel_midway_keeps_done_items() -> None:
    with Emulator(EmulatorConfig(batch_seconds=1.0)) as emu:
        oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
        f = oai.files.create(file=("in.jsonl", batch_file(40)), purpose="batch")
        batch = oai.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        time.sleep(0.5)
        assert oai.batches.cancel(batch.id).status == "cancelling"
        while batch.status != "cancelled":
            time.sleep(0.02)
            batch = oai.batches.retrieve(batch.id)
        done = lines_of(oai, batch.output_file_id)
        gone = lines_of(oai, batch.error_file_id)
        assert 0 < len(done) < 40 and len(done) + len(gone) == 40
        assert batch.request_counts is not None
        assert batch.request_counts.completed == len(done)
        assert emu.billing()["batch"]["requests"] == len(done)


def test_list_pagination(oai: openai.OpenAI) -> None:
    f = oai.files.create(file=("in.jsonl", batch_file(1)), purpose="batch")
    created = [
        oai.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        ).id
        for _ in range(5)
    ]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == created[::-1][:2]
    assert page.has_more
    assert [b.id for b in oai.batches.list(limit=2)] == created[::-1]  # auto-paging
    last = oai.batches.list(limit=2, after=created[1])
    assert [b.id for b in last.data] == [created[0]] and not last.has_more


def test_list_page_shape(http: httpx.Client, oai: openai.OpenAI) -> None:
    run_batch(oai, batch_file(1))
    page = http.get(
        "/v1/batches", params={"limit": 1}, headers={"Authorization": "Bearer k"}
    ).json()
    assert set(page) == {"object", "data", "first_id", "last_id", "has_more"}
    assert page["object"] == "list" and page["first_id"] == page["last_id"] == page["data"][0]["id"]


def test_unknown_ids_are_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve("file-nope")
    with pytest.raises(openai.BadRequestError):
        oai.batches.create(input_file_id="x", endpoint="/v1/embeddings", completion_window="24h")
