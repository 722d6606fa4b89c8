"""The Gemini side of the emulator, driven by the official ``google-genai`` SDK.

The SDK is used as a user would, with its base URL pointed at the emulator
(and mostly the API version lexibatch calls, ``v1beta``; its default ``v1``
works too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from google import genai
from google.genai import errors, types

from providers.emulator import Emulator, EmulatorConfig

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
}
MODEL = "gemini-2.5-flash"


def _client(emu: Emulator, key: str = "gemini-test-key") -> genai.Client:
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=emu.base_url, api_version="v1beta")
    )


def _json_config() -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_mime_type="application/json", response_json_schema=SCHEMA
    )


def _input_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "requests.jsonl"
    lines = [
        {
            "key": f"request-{i}",
            "request": {
                "contents": [{"parts": [{"text": f"Capital number {i}?"}], "role": "user"}],
                "generationConfig": {
                    "responseMimeType": "application/json",
                    "responseJsonSchema": SCHEMA,
                },
            },
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_generate_content_answers_schema_valid_json_with_usage(emu: Emulator) -> None:
    client = _client(emu)
    response = client.models.generate_content(
        model=MODEL, contents="Largest city in Mexico?", config=_json_config()
    )
    jsonschema.validate(json.loads(response.text or ""), SCHEMA)
    assert response.candidates and response.candidates[0].finish_reason == "STOP"
    usage = response.usage_metadata
    assert usage is not None and usage.prompt_token_count and usage.candidates_token_count
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == MODEL and len(response.response_id or "") == 23
    again = client.models.generate_content(
        model=MODEL, contents="Largest city in Mexico?", config=_json_config()
    )
    assert again.text == response.text  # deterministic
    assert emu.billing()["immediate"]["requests"] == 2


def test_requests_without_a_key_are_refused(emu: Emulator) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        emu.base_url + f"/v1beta/models/{MODEL}:generateContent",
        data=b'{"contents": [{"parts": [{"text": "hi"}]}]}',
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)
    body = json.loads(caught.value.read())
    assert caught.value.code == 403 and body["error"]["status"] == "PERMISSION_DENIED"


def test_faults_answer_in_googles_error_shape(emu: Emulator) -> None:
    client = _client(emu)
    with pytest.raises(errors.ClientError) as limited:
        client.models.generate_content(model=f"{MODEL}@rate-limit", contents="hi")
    assert limited.value.code == 429 and limited.value.status == "RESOURCE_EXHAUSTED"
    details = limited.value.details["error"]["details"]
    assert details[0]["@type"].endswith("RetryInfo") and details[0]["retryDelay"].endswith("s")
    with pytest.raises(errors.ServerError) as failed:
        client.models.generate_content(model=f"{MODEL}@server-error", contents="hi")
    assert failed.value.code in (500, 503)
    assert emu.billing()["immediate"]["requests"] == 0  # refusals are not billed


def test_file_batch_lifecycle(emu: Emulator, tmp_path: Path) -> None:
    client = _client(emu)
    uploaded = client.files.upload(
        file=str(_input_file(tmp_path, 3)),
        config=types.UploadFileConfig(display_name="batch-input", mime_type="jsonl"),
    )
    assert re.fullmatch(r"files/[a-z0-9]{12}", uploaded.name or "")
    assert uploaded.state == "ACTIVE" and uploaded.source == "UPLOADED"
    assert client.files.get(name=uploaded.name or "").size_bytes == uploaded.size_bytes
    job = client.batches.create(model=MODEL, src=uploaded.name, config={"display_name": "dn-1"})
    assert re.fullmatch(r"batches/[a-z0-9]{36}", job.name or "")
    assert job.state == "JOB_STATE_PENDING" and job.display_name == "dn-1"
    done = client.batches.get(name=job.name or "")
    assert done.state == "JOB_STATE_SUCCEEDED"
    assert done.dest is not None and done.dest.file_name == f"files/batch-{job.name[8:]}"  # type: ignore[index]
    lines = [json.loads(x) for x in client.files.download(file=done.dest.file_name).splitlines()]
    assert sorted(line["key"] for line in lines) == ["request-0", "request-1", "request-2"]
    for line in lines:
        text = line["response"]["candidates"][0]["content"]["parts"][0]["text"]
        jsonschema.validate(json.loads(text), SCHEMA)
        assert line["response"]["usageMetadata"]["promptTokenCount"] > 0
    assert emu.billing()["batch"]["requests"] == 3


def test_inline_batch_answers_in_order_with_metadata(emu: Emulator) -> None:
    client = _client(emu)
    src = [
        {
            "contents": [{"parts": [{"text": f"poem {i}"}], "role": "user"}],
            "metadata": {"key": f"k{i}"},
        }
        for i in range(3)
    ]
    job = client.batches.create(model=MODEL, src=src)  # type: ignore[arg-type]
    done = client.batches.get(name=job.name or "")
    assert done.state == "JOB_STATE_SUCCEEDED" and done.dest is not None
    responses = done.dest.inlined_responses or []
    assert [r.metadata for r in responses] == [{"key": "k0"}, {"key": "k1"}, {"key": "k2"}]
    assert all(r.response is not None and r.response.text for r in responses)


def test_list_pages_newest_first_and_cancel_ends_a_running_batch(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(batch_seconds=30)) as emu:
        client = _client(emu)
        names = []
        for i in range(3):
            src = [{"contents": [{"parts": [{"text": f"q{i}"}], "role": "user"}]}]
            names.append(client.batches.create(model=MODEL, src=src).name)  # type: ignore[arg-type]
        pager = client.batches.list(config={"page_size": 2})
        assert [b.name for b in pager] == names[::-1]
        client.batches.cancel(name=names[0] or "")
        job = client.batches.get(name=names[0] or "")
        assert job.state in ("JOB_STATE_RUNNING", "JOB_STATE_CANCELLED")
        emu.configure(batch_seconds=0.0)
        import time

        deadline = time.monotonic() + 10
        while job.state != "JOB_STATE_CANCELLED" and time.monotonic() < deadline:
            time.sleep(0.05)
            job = client.batches.get(name=names[0] or "")
        assert job.state == "JOB_STATE_CANCELLED"


def test_a_failed_batch_says_why_and_an_expired_one_has_no_results(emu: Emulator) -> None:
    client = _client(emu)
    src = [{"contents": [{"parts": [{"text": "q"}], "role": "user"}]}]
    failed = client.batches.get(
        name=client.batches.create(model=f"{MODEL}@fail-batch", src=src).name or ""  # type: ignore[arg-type]
    )
    assert failed.state == "JOB_STATE_FAILED" and failed.dest is None
    expired = client.batches.get(
        name=client.batches.create(model=f"{MODEL}@expire", src=src).name or ""  # type: ignore[arg-type]
    )
    assert expired.state == "JOB_STATE_EXPIRED" and expired.dest is None
    assert emu.billing()["batch"]["requests"] == 0


def test_batches_survive_a_restart_with_state(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Emulator(EmulatorConfig(), state_dir=state) as emu:
        client = _client(emu)
        uploaded = client.files.upload(
            file=str(_input_file(tmp_path, 2)), config=types.UploadFileConfig(mime_type="jsonl")
        )
        name = client.batches.create(model=MODEL, src=uploaded.name).name or ""
    with Emulator(EmulatorConfig(), state_dir=state) as emu:
        client = _client(emu)
        done = client.batches.get(name=name)
        assert done.state == "JOB_STATE_SUCCEEDED" and done.dest is not None
        assert len(client.files.download(file=done.dest.file_name).splitlines()) == 2


def test_only_the_configured_keys_are_accepted() -> None:
    with Emulator(EmulatorConfig(api_keys=["good-key"])) as emu:
        good, bad = _client(emu, "good-key"), _client(emu, "bad-key")
        assert good.models.generate_content(model=MODEL, contents="hi").text
        with pytest.raises(errors.ClientError) as refused:
            bad.models.generate_content(model=MODEL, contents="hi")
        assert refused.value.code == 400 and "API key not valid" in str(refused.value.message)


def test_the_sdks_default_api_version_works_with_only_the_base_url(
    emu: Emulator, tmp_path: Path
) -> None:
    # google-genai 3 calls the v1 API unless told otherwise; OpenAI keeps its own /v1.
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emu.base_url))
    assert client.models.generate_content(model=MODEL, contents="hi").text
    uploaded = client.files.upload(
        file=str(_input_file(tmp_path, 2)), config=types.UploadFileConfig(mime_type="jsonl")
    )
    assert client.files.get(name=uploaded.name or "").name == uploaded.name
    job = client.batches.create(model=MODEL, src=uploaded.name)
    done = client.batches.get(name=job.name or "")
    assert done.state == "JOB_STATE_SUCCEEDED" and done.dest is not None
    assert len(client.files.download(file=done.dest.file_name).splitlines()) == 2
    assert [b.name for b in client.batches.list()] == [job.name]
    client.batches.delete(name=job.name or "")
    import openai

    oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="sk-test", max_retries=0)
    assert oai.batches.list().data == []
