"""The Mistral side of the emulator, driven by the official ``mistralai`` SDK.

The SDK's ``server_url`` is the emulator's ``/mistral`` (where Mistral's API
is served, since its paths are OpenAI's too); nothing else is changed.
"""

from __future__ import annotations

import json
import re
import time

import jsonschema
import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from providers.emulator import Emulator, EmulatorConfig

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
    "additionalProperties": False,
}
MODEL = "mistral-small-latest"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _client(emu: Emulator) -> Mistral:
    return Mistral(api_key="mistral-test-key", server_url=emu.base_url + "/mistral")


def _format() -> dict[str, object]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "summary", "schema": SCHEMA, "strict": True},
    }


def _batch_file(n: int, model: str | None = None) -> bytes:
    lines = []
    for i in range(n):
        body: dict[str, object] = {
            "messages": [{"role": "user", "content": f"Summarise article {i}"}],
            "response_format": _format(),
            "max_tokens": 200,
        }
        if model:
            body["model"] = model
        lines.append(json.dumps({"custom_id": str(i), "body": body}))
    return ("\n".join(lines) + "\n").encode()


def test_chat_completion_with_json_schema(emu: Emulator) -> None:
    client = _client(emu)
    response = client.chat.complete(
        model=MODEL,
        messages=[{"role": "user", "content": "Apples are tasty, by Hadley Wickham"}],
        response_format=_format(),  # type: ignore[arg-type]
    )
    assert re.fullmatch(r"[0-9a-f]{32}", response.id) and response.object == "chat.completion"
    content = response.choices[0].message.content  # type: ignore[union-attr]
    assert isinstance(content, str)
    jsonschema.validate(json.loads(content), SCHEMA)
    assert response.usage.prompt_tokens and response.usage.completion_tokens
    assert (
        response.usage.total_tokens
        == response.usage.prompt_tokens + response.usage.completion_tokens
    )
    assert emu.billing()["immediate"]["requests"] == 1


def test_a_missing_key_and_faults_are_errors_in_mistrals_shape(emu: Emulator) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        emu.base_url + "/mistral/v1/chat/completions",
        data=json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 401 and json.loads(refused.value.read())["message"]
    client = _client(emu)
    with pytest.raises(mistral_errors.MistralError) as limited:
        client.chat.complete(
            model=f"{MODEL}@rate-limit", messages=[{"role": "user", "content": "hi"}]
        )
    assert limited.value.status_code == 429
    assert json.loads(limited.value.body)["type"] == "rate_limited"
    assert emu.billing()["immediate"]["requests"] == 0


def test_batch_job_lifecycle_with_files(emu: Emulator) -> None:
    client = _client(emu)
    uploaded = client.files.upload(
        file={"file_name": "batch.jsonl", "content": _batch_file(3)}, purpose="batch"
    )
    assert re.fullmatch(UUID, uploaded.id) and uploaded.purpose == "batch"
    assert uploaded.sample_type == "batch_request" and uploaded.num_lines == 3
    job = client.batch.jobs.create(
        input_files=[uploaded.id],
        model=MODEL,
        endpoint="/v1/chat/completions",
        metadata={"lexibatch_shard": "s-1"},
    )
    assert re.fullmatch(UUID, job.id) and job.status == "QUEUED" and job.total_requests == 0
    done = client.batch.jobs.get(job_id=job.id)
    assert done.status == "SUCCESS" and done.total_requests == 3
    assert done.succeeded_requests == 3 and done.failed_requests == 0 and done.error_file is None
    assert done.started_at is not None and done.completed_at is not None
    output = client.files.download(file_id=done.output_file or "").read().decode()
    lines = [json.loads(x) for x in output.splitlines()]
    assert sorted(line["custom_id"] for line in lines) == ["0", "1", "2"]
    for line in lines:
        assert line["id"].startswith(line["custom_id"] + "-") and line["error"] is None
        assert line["response"]["status_code"] == 200
        body = line["response"]["body"]
        jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), SCHEMA)
        assert body["model"] == MODEL and body["usage"]["prompt_tokens"] > 0
    listed = client.batch.jobs.list(metadata={"lexibatch_shard": "s-1"})
    assert listed.total == 1 and listed.data and listed.data[0].id == job.id
    assert client.batch.jobs.list(metadata={"lexibatch_shard": "other"}).total == 0
    assert emu.billing()["batch"]["requests"] == 3


def test_item_errors_go_to_the_error_file(emu: Emulator) -> None:
    client = _client(emu)
    uploaded = client.files.upload(
        file={"file_name": "b.jsonl", "content": _batch_file(2)}, purpose="batch"
    )
    job = client.batch.jobs.create(
        input_files=[uploaded.id], model=f"{MODEL}@item-error", endpoint="/v1/chat/completions"
    )
    done = client.batch.jobs.get(job_id=job.id)
    assert done.status == "SUCCESS" and done.failed_requests == 2 and done.output_file is None
    errors = client.files.download(file_id=done.error_file or "").read().decode().splitlines()
    assert len(errors) == 2
    for raw in errors:
        line = json.loads(raw)
        assert (line["response"] or {}).get("status_code") != 200
    assert emu.billing()["batch"]["requests"] == 0


def test_cancel_and_timeout_states() -> None:
    with Emulator(EmulatorConfig(batch_seconds=30)) as emu:
        client = _client(emu)
        uploaded = client.files.upload(
            file={"file_name": "b.jsonl", "content": _batch_file(2)}, purpose="batch"
        )
        job = client.batch.jobs.create(
            input_files=[uploaded.id], model=MODEL, endpoint="/v1/chat/completions"
        )
        assert client.batch.jobs.cancel(job_id=job.id).status == "CANCELLATION_REQUESTED"
        emu.configure(batch_seconds=0.0)
        deadline = time.monotonic() + 10
        status = ""
        while status != "CANCELLED" and time.monotonic() < deadline:
            time.sleep(0.05)
            status = str(client.batch.jobs.get(job_id=job.id).status)
        assert status == "CANCELLED"
        timed_out = client.batch.jobs.create(
            input_files=[uploaded.id], model=f"{MODEL}@expire", endpoint="/v1/chat/completions"
        )
        assert client.batch.jobs.get(job_id=timed_out.id).status == "TIMEOUT_EXCEEDED"


def test_only_the_configured_keys_are_accepted() -> None:
    with Emulator(EmulatorConfig(api_keys=["good-key"])) as emu:
        good = Mistral(api_key="good-key", server_url=emu.base_url + "/mistral")
        assert good.chat.complete(model=MODEL, messages=[{"role": "user", "content": "hi"}]).id
        bad = Mistral(api_key="bad-key", server_url=emu.base_url + "/mistral")
        with pytest.raises(mistral_errors.MistralError) as refused:
            bad.chat.complete(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 401
