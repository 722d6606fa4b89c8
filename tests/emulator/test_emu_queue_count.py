"""Enqueued tokens are counted when needed; the limit holds as if counted at each create."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from emu_helpers import batch_file, requests_of, wait_ended

from providers.emulator import Emulator
from providers.emulator.queuecap import anthropic_tokens, openai_tokens


def _create(oai: openai.OpenAI, data: bytes) -> tuple[str, str]:
    """A batch of ``data``: ``(batch id, input file id)``."""
    f = oai.files.create(file=("in.jsonl", data), purpose="batch")
    batch = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return batch.id, f.id


def _ended(oai: openai.OpenAI, batch_id: str) -> str:
    batch = oai.batches.retrieve(batch_id)
    while batch.status not in ("completed", "failed", "expired", "cancelled"):
        batch = oai.batches.retrieve(batch_id)
    return batch.status


def test_without_a_limit_a_batch_is_not_counted_until_asked(
    emu: Emulator, oai: openai.OpenAI, http: httpx.Client
) -> None:
    data = batch_file(3)
    emu.configure(batch_seconds=2.0)
    batch_id, _ = _create(oai, data)
    # Nothing counted at create: the tokenizer's pass is left for when it is needed.
    assert "tokens" not in emu.app.state.batches[batch_id]
    answer = http.get(f"/_emulator/batches/{batch_id}/tokens")
    assert answer.status_code == 200
    assert answer.json() == {"id": batch_id, "tokens": openai_tokens(data)}
    assert http.get("/_emulator/batches/batch_nope/tokens").status_code == 404


def test_a_limit_set_later_counts_the_batches_already_in_progress(
    emu: Emulator, oai: openai.OpenAI
) -> None:
    data = batch_file(3)
    one = openai_tokens(data)["gpt-4o-mini"]
    emu.configure(batch_seconds=2.0)
    first, _ = _create(oai, data)
    second, _ = _create(oai, batch_file(3))
    # Room for two such batches, not three: the two taken without a limit hold theirs.
    emu.configure(enqueued_token_limit=2 * one + one // 2)
    third, _ = _create(oai, batch_file(3))
    emu.configure(batch_seconds=0.0)
    assert _ended(oai, third) == "failed"
    assert emu.billing()["queue_refusals"] == 1
    assert [_ended(oai, b) for b in (first, second)] == ["completed", "completed"]
    # Ended, they hold nothing: the same requests go through.
    fourth, _ = _create(oai, data)
    assert _ended(oai, fourth) == "completed"
    assert emu.billing()["batch"]["requests"] == 9


def test_a_batch_in_progress_keeps_its_count_when_its_input_file_is_deleted(
    emu: Emulator, oai: openai.OpenAI, http: httpx.Client
) -> None:
    data = batch_file(3)
    one = openai_tokens(data)["gpt-4o-mini"]
    emu.configure(batch_seconds=2.0)
    first, file_id = _create(oai, data)
    assert oai.files.delete(file_id).deleted
    assert http.get(f"/_emulator/batches/{first}/tokens").json()["tokens"] == {"gpt-4o-mini": one}
    emu.configure(enqueued_token_limit=one + one // 2)
    second, _ = _create(oai, batch_file(3))
    emu.configure(batch_seconds=0.0)
    assert _ended(oai, second) == "failed"


def test_anthropic_batches_taken_without_a_limit_hold_room_under_a_later_one(
    emu: Emulator, ant: anthropic.Anthropic, http: httpx.Client
) -> None:
    reqs = requests_of(3)
    one = anthropic_tokens(reqs)["claude-haiku-4-5"]
    emu.configure(batch_seconds=1.0)
    first = ant.messages.batches.create(requests=reqs)  # type: ignore[arg-type]
    assert "tokens" not in emu.app.state.batches[first.id]
    emu.configure(enqueued_token_limit=one + one // 2)
    with pytest.raises(anthropic.RateLimitError):
        ant.messages.batches.create(requests=requests_of(3))  # type: ignore[arg-type]
    assert http.get(f"/_emulator/batches/{first.id}/tokens").json()["tokens"] == {
        "claude-haiku-4-5": one
    }
    emu.configure(batch_seconds=0.0)
    assert wait_ended(ant, first.id).request_counts.succeeded == 3
    again = ant.messages.batches.create(requests=requests_of(3))  # type: ignore[arg-type]
    # Counted at its create, under the limit.
    assert emu.app.state.batches[again.id]["tokens"] == {"claude-haiku-4-5": one}
