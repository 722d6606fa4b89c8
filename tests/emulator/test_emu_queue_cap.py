"""The enqueued-token limit per model, refused in the words and shapes of the real APIs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from emu_helpers import batch_file, requests_of, run_batch, wait_ended

from providers.emulator import Emulator
from providers.emulator.queuecap import anthropic_tokens, openai_tokens


def _create(oai: openai.OpenAI, data: bytes) -> str:
    f = oai.files.create(file=("in.jsonl", data), purpose="batch")
    batch = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    return batch.id


def test_openai_fails_a_batch_past_the_limit_while_others_are_in_progress(
    emu: Emulator, oai: openai.OpenAI
) -> None:
    data = batch_file(3)
    one = openai_tokens(data)["gpt-4o-mini"]
    # Room for two such batches, not three; batches stay in progress for a while.
    emu.configure(enqueued_token_limit=2 * one + one // 2, batch_seconds=2.0)
    first, second = _create(oai, data), _create(oai, batch_file(3))
    third = _create(oai, batch_file(3))
    # Another model has its own room.
    other = _create(oai, batch_file(3, model="gpt-4o"))
    emu.configure(batch_seconds=0.0)
    refused = run_batch_by_id(oai, third)
    assert refused.status == "failed" and refused.failed_at is not None
    assert refused.errors and refused.errors.data
    error = refused.errors.data[0]
    assert error.code == "token_limit_exceeded"
    assert error.message == (
        "Enqueued token limit reached for gpt-4o-mini in organization org-lexibatch-emulator. "
        f"Limit: {2 * one + one // 2:,} enqueued tokens. Please try again once some "
        "in_progress batches have been completed."
    )
    assert refused.request_counts and refused.request_counts.total == 0
    assert refused.output_file_id is None and refused.error_file_id is None
    for batch_id in (first, second, other):
        assert run_batch_by_id(oai, batch_id).status == "completed"
    # Room again once those ended: the same requests go through, billed once.
    assert run_batch(oai, data).status == "completed"
    billing = emu.billing()["batch"]
    assert billing["requests"] == 12


def test_openai_refuses_a_batch_larger_than_the_limit_even_alone(
    emu: Emulator, oai: openai.OpenAI
) -> None:
    data = batch_file(4)
    emu.configure(enqueued_token_limit=openai_tokens(data)["gpt-4o-mini"] - 1)
    batch = run_batch(oai, data)
    assert batch.status == "failed"
    assert batch.errors and batch.errors.data
    assert batch.errors.data[0].code == "token_limit_exceeded"
    assert emu.billing()["batch"]["requests"] == 0


def test_anthropic_refuses_a_create_past_the_limit_with_429(
    emu: Emulator, ant: anthropic.Anthropic
) -> None:
    reqs = requests_of(3)
    one = anthropic_tokens(reqs)["claude-haiku-4-5"]
    emu.configure(enqueued_token_limit=one + one // 2, batch_seconds=1.0)
    first = ant.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
    with pytest.raises(anthropic.RateLimitError) as caught:
        ant.messages.batches.create(requests=requests_of(3))  # type: ignore[arg-type]
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "enqueued tokens for claude-haiku-4-5" in body["error"]["message"]  # type: ignore[index]
    # The limit counts per model.
    ant.messages.batches.create(requests=requests_of(3, model="claude-sonnet-4-5"))  # type: ignore[arg-type]
    emu.configure(batch_seconds=0.0)
    assert wait_ended(ant, first.id).request_counts.succeeded == 3
    # Ended, it holds no room: the next create is taken.
    again = ant.messages.batches.create(requests=requests_of(3))  # type: ignore[arg-type]
    assert again.processing_status == "in_progress"


def test_the_limit_is_set_through_the_control_endpoint(http: httpx.Client) -> None:
    answer = http.post("/_emulator/config", json={"enqueued_token_limit": 1234})
    assert answer.status_code == 200
    assert http.get("/_emulator/config").json()["enqueued_token_limit"] == 1234
    bad = http.post("/_emulator/config", json={"enqueued_token_limit": 0})
    assert bad.status_code == 400


def test_a_request_counts_its_prompt_tokens_not_its_maximum_output() -> None:
    from providers.tokens import count_tokens

    text = "Define the word 'serendipity' for a learner: ünïcødé, 漢字."
    schema = {"type": "object", "properties": {"word": {"type": "string"}}}
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}},
    }
    prompt = (
        3  # the reply's start
        + (3 + 1 + count_tokens("Be brief.", "gpt-4o-mini"))  # framing, role, text
        + (3 + 1 + count_tokens(text, "gpt-4o-mini"))
        + count_tokens(orjson.dumps(schema).decode(), "gpt-4o-mini")
    )
    # As the real queues count: tokens of the prompt (a real tokenizer's), not bytes / 4 ...
    assert openai_tokens(orjson.dumps({"custom_id": "a", "body": body})) == {"gpt-4o-mini": prompt}
    assert prompt < len(orjson.dumps(body)) // 4
    # ... and nothing for what the request may output.
    capped = {**body, "max_completion_tokens": 4000}
    assert openai_tokens(orjson.dumps({"custom_id": "a", "body": capped})) == {
        "gpt-4o-mini": prompt
    }
    # Anthropic's system prompt and a forced tool's schema count alike.
    params = {
        "model": "claude-haiku-4-5",
        "max_tokens": 4000,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}],
        "tools": [{"name": "w", "input_schema": schema}],
        "tool_choice": {"type": "tool", "name": "w"},
    }
    counted = anthropic_tokens([{"custom_id": "a", "params": params}])
    assert counted == {"claude-haiku-4-5": prompt}


def run_batch_by_id(oai: openai.OpenAI, batch_id: str) -> Any:
    """Poll an existing batch until it is terminal."""
    deadline = time.time() + 20
    batch = oai.batches.retrieve(batch_id)
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        assert time.time() < deadline
        time.sleep(0.01)
        batch = oai.batches.retrieve(batch_id)
    return batch


@pytest.mark.parametrize(
    "command",
    [["-m", "providers.emulator"], ["-m", "synthesis.cli", "emulator"]],
    ids=["python-m", "lexibatch"],
)
def test_the_limit_is_set_from_the_command_line(command: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, *command, "--port", "0", "--enqueued-token-limit", "777"],
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEXIBATCH_")},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        config = httpx.get(f"http://127.0.0.1:{match.group(1)}/_emulator/config").json()
        assert config["enqueued_token_limit"] == 777
    finally:
        proc.terminate()
        proc.wait(timeout=10)
