"""Fault injection: fractions, model-name markers, and that retries can succeed."""

from __future__ import annotations

import time
from typing import Any

import anthropic
import jsonschema
import openai
import orjson
import pytest
from emu_helpers import SCHEMA, batch_file, chat_body, lines_of, requests_of, run_batch, wait_ended

from providers.emulator import Emulator
from providers.emulator.rng import roll


def test_rate_limit_fraction_gives_429_with_retry_after(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(rate_limit=1.0, retry_after=0.25)
    with pytest.raises(openai.RateLimitError) as caught:
        oai.chat.completions.create(**chat_body("x"))
    assert caught.value.response.headers["retry-after"] == "0.25"
    assert caught.value.response.headers["retry-after-ms"] == "250"
    assert caught.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    emu.configure(rate_limit=0.0)
    assert oai.chat.completions.create(**chat_body("x")).choices


def test_rate_limit_once_marker_lets_the_retry_through(oai: openai.OpenAI) -> None:
    body = chat_body("x", model="gpt-4o-mini@rate-limit-once")
    with pytest.raises(openai.RateLimitError):
        oai.chat.completions.create(**body)
    answer = oai.chat.completions.create(**body)
    assert answer.model == "gpt-4o-mini@rate-limit-once"


def test_sdk_retries_through_a_server_error_once(emu: Emulator) -> None:
    client = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=2)
    answer = client.chat.completions.create(**chat_body("x", model="gpt-4o@server-error-once"))
    assert answer.choices[0].message.content
    billing = emu.billing()
    assert billing["immediate"]["requests"] == 1  # the failed try is not billed


def test_server_error_fraction(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(server_error=1.0)
    statuses = set()
    for i in range(12):
        with pytest.raises(openai.InternalServerError) as caught:
            oai.chat.completions.create(**chat_body(f"x{i}"))
        statuses.add(caught.value.status_code)
    assert statuses == {500, 503}
    assert emu.billing()["immediate"]["requests"] == 0


def test_fractions_follow_roll(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(rate_limit=0.5)
    outcomes = []
    for i in range(10):
        try:
            oai.chat.completions.create(**chat_body(f"y{i}"))
            outcomes.append(True)
        except openai.RateLimitError:
            outcomes.append(False)
    assert 0 < sum(outcomes) < 10
    # Emulating the decision: the key is the body hash, the count starts at 0.
    from hashlib import blake2b

    from providers.emulator.answers import canonical

    for i, ok in enumerate(outcomes):
        key = blake2b(canonical(chat_body(f"y{i}")), digest_size=16).hexdigest()
        assert ok == (roll(0, "rate_limit", key, 0) >= 0.5)


def test_slow_and_latency(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(slow_seconds=0.3)
    body = chat_body("x", model="gpt-4o@slow-once")
    start = time.perf_counter()
    oai.chat.completions.create(**body)
    assert time.perf_counter() - start >= 0.3
    start = time.perf_counter()
    oai.chat.completions.create(**body)
    assert time.perf_counter() - start < 0.3
    emu.configure(latency=0.15)
    start = time.perf_counter()
    oai.chat.completions.create(**chat_body("w"))
    assert time.perf_counter() - start >= 0.15


def test_schema_invalid(emu: Emulator, oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    content = oai.chat.completions.create(**chat_body("x", model="gpt-4o@schema-invalid"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(orjson.loads(content.choices[0].message.content or ""), SCHEMA)
    emu.configure(schema_invalid=1.0)
    message = ant.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        messages=[{"role": "user", "content": "x"}],
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},  # type: ignore[typeddict-item]
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(orjson.loads(message.content[0].text), SCHEMA)  # type: ignore[union-attr]


def test_anthropic_rate_limit_and_overload(emu: Emulator, ant: anthropic.Anthropic) -> None:
    body: dict[str, Any] = {
        "model": "claude-haiku-4-5@rate-limit",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "x"}],
    }
    with pytest.raises(anthropic.RateLimitError) as caught:
        ant.messages.create(**body)
    assert caught.value.response.headers["retry-after"]
    assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    emu.configure(server_error=1.0)
    codes = set()
    for i in range(12):
        with pytest.raises(anthropic.APIStatusError) as err:
            ant.messages.create(**{**body, "model": "claude-haiku-4-5", "system": str(i)})
        codes.add(err.value.status_code)
    assert codes == {500, 529}


# -------------------------------------------------------------- batch faults


def test_fail_batch_marker_and_once(oai: openai.OpenAI, emu: Emulator) -> None:
    failed = run_batch(oai, batch_file(3, model="gpt-4o-mini@fail-batch"))
    assert failed.status == "failed" and failed.failed_at is not None
    assert failed.errors and failed.errors.data
    assert failed.errors.data[0].code == "batch_failed"
    assert failed.request_counts and failed.request_counts.total == 0
    data = batch_file(3, model="gpt-4o-mini@fail-batch-once")
    assert run_batch(oai, data).status == "failed"
    assert run_batch(oai, data).status == "completed"  # the resubmission goes through
    assert emu.billing()["batch"]["requests"] == 3


def test_fail_batch_pattern_and_fraction(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(batch_fail_pattern=r"^gpt-4o$")
    assert run_batch(oai, batch_file(1, model="gpt-4o")).status == "failed"
    assert run_batch(oai, batch_file(1, model="gpt-4o-mini")).status == "completed"
    emu.configure(batch_fail_pattern=None, batch_fail=1.0)
    assert run_batch(oai, batch_file(1, model="gpt-4o-mini")).status == "failed"


def test_expire_marker(emu: Emulator, oai: openai.OpenAI) -> None:
    batch = run_batch(oai, batch_file(30, model="gpt-4o-mini@expire"))
    assert batch.status == "expired" and batch.expired_at is not None
    done = lines_of(oai, batch.output_file_id)
    gone = lines_of(oai, batch.error_file_id)
    assert 0 < len(done) < 30 and len(done) + len(gone) == 30
    assert all(x["error"]["code"] == "batch_expired" for x in gone)
    assert batch.request_counts and batch.request_counts.completed == len(done)
    billing = emu.billing()
    assert billing["batch"]["requests"] == len(done)
    assert set(billing["by_key"]["batch"]) == {x["custom_id"] for x in done}


def test_cancel_fault(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(batch_cancel=1.0, partial_done=0.0)
    batch = run_batch(oai, batch_file(4))
    assert batch.status == "cancelled"
    assert batch.output_file_id is None
    assert {x["error"]["code"] for x in lines_of(oai, batch.error_file_id)} == {"batch_cancelled"}


def test_item_errors_and_retry(emu: Emulator, oai: openai.OpenAI) -> None:
    batch = run_batch(oai, batch_file(30, model="gpt-4o-mini@item-error-once"))
    assert batch.status == "completed" and batch.output_file_id is None
    errors = lines_of(oai, batch.error_file_id)
    assert len(errors) == 30 and batch.request_counts and batch.request_counts.failed == 30
    kinds = set()
    for line in errors:
        if line["response"] is None:
            kinds.add(line["error"]["code"])
        else:
            kinds.add(line["response"]["status_code"])
            assert "error" in line["response"]["body"] and line["error"] is None
    assert kinds == {500, 429, "request_timeout"}
    assert emu.billing()["batch"]["requests"] == 0
    again = run_batch(oai, batch_file(30, model="gpt-4o-mini@item-error-once"))
    assert len(lines_of(oai, again.output_file_id)) == 30 and again.error_file_id is None


def test_item_error_fraction_is_predictable(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(item_error=0.3, seed=7)
    batch = run_batch(oai, batch_file(40))
    failed = {x["custom_id"] for x in lines_of(oai, batch.error_file_id)}
    expected = {f"w{i}" for i in range(40) if roll(7, "item_error", f"w{i}", 0) < 0.3}
    assert failed == expected and 0 < len(failed) < 40


def test_output_file_missing_for_some_polls(emu: Emulator, oai: openai.OpenAI) -> None:
    emu.configure(output_file_missing_polls=2)
    f = oai.files.create(file=("in.jsonl", batch_file(1)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    polls = [oai.batches.retrieve(batch.id) for _ in range(3)]
    assert [p.status for p in polls] == ["completed"] * 3
    assert [p.output_file_id is None for p in polls] == [True, True, False]


def test_anthropic_batch_faults(ant: anthropic.Anthropic) -> None:
    def outcome(model: str, n: int = 20) -> tuple[Any, list[str]]:
        batch = ant.messages.batches.create(requests=requests_of(n, model))  # type: ignore[arg-type]
        ended = wait_ended(ant, batch.id)
        return ended, [r.result.type for r in ant.messages.batches.results(batch.id)]

    ended, types = outcome("claude-haiku-4-5@expire")
    assert set(types) == {"succeeded", "expired"}
    assert ended.request_counts.expired == types.count("expired")
    ended, types = outcome("claude-haiku-4-5@cancel")
    assert set(types) == {"succeeded", "canceled"} and ended.cancel_initiated_at is not None
    ended, types = outcome("claude-haiku-4-5@fail-batch")
    assert set(types) == {"errored"} and ended.request_counts.errored == 20
    batch = ant.messages.batches.create(requests=requests_of(10, "claude-haiku-4-5@item-error"))  # type: ignore[arg-type]
    wait_ended(ant, batch.id)
    results = list(ant.messages.batches.results(batch.id))
    assert {r.result.type for r in results} == {"errored"}
    error = results[0].result.error  # type: ignore[union-attr]
    assert error.type == "error" and error.error.type in ("api_error", "overloaded_error")


def test_config_endpoint_validates(emu: Emulator) -> None:
    import httpx

    r = httpx.post(emu.base_url + "/_emulator/config", json={"rate_limit": 2})
    assert r.status_code == 400
    r = httpx.post(emu.base_url + "/_emulator/config", json={"batch_seconds": 1.5})
    assert r.status_code == 200 and r.json()["batch_seconds"] == 1.5
    assert httpx.get(emu.base_url + "/_emulator/config").json()["batch_seconds"] == 1.5


# A client that hangs up while a slow answer is made: billed only when the emulator
# bills abandoned calls (as the real APIs do), on every provider's immediate route.
_CALLS = {
    "openai": (
        "/v1/chat/completions",
        {"Authorization": "Bearer sk-x"},
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hung up"}]},
    ),
    "mistral": (
        "/mistral/v1/chat/completions",
        {"Authorization": "Bearer m-x"},
        {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "hung up"}]},
    ),
    "gemini": (
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"x-goog-api-key": "g-x"},
        {"contents": [{"role": "user", "parts": [{"text": "hung up"}]}]},
    ),
}


@pytest.mark.parametrize("provider", sorted(_CALLS))
@pytest.mark.parametrize("bill_abandoned", [True, False])
def test_a_call_its_client_hung_up_on_is_billed_as_configured(
    provider: str, bill_abandoned: bool
) -> None:
    import time

    import httpx

    from providers.emulator import Emulator, EmulatorConfig

    path, headers, body = _CALLS[provider]
    config = EmulatorConfig(slow=1.0, slow_seconds=0.6, bill_abandoned=bill_abandoned)
    with Emulator(config) as emu:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(emu.base_url + path, json=body, headers=headers, timeout=0.2)
        time.sleep(0.9)  # the slow answer is made (or dropped) by now
        billed = emu.billing()["immediate"]["requests"]
    assert billed == (1 if bill_abandoned else 0), (provider, billed)
