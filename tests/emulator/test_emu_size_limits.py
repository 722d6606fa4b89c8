"""Batches refused at create for their size, in the words and shapes of the real APIs."""

from __future__ import annotations

import anthropic
import openai
import pytest
from emu_helpers import batch_file, requests_of

from providers.emulator import Emulator


def test_openai_refuses_an_input_file_over_the_byte_limit_at_create(
    emu: Emulator, oai: openai.OpenAI
) -> None:
    data = batch_file(3)
    emu.configure(openai_max_bytes=len(data) - 1)
    f = oai.files.create(file=("in.jsonl", data), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        oai.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["message"] == (
        f"The batch input file is larger than the {len(data) - 1} maximum for the gpt-4o-mini "
        "model. Please try again with a smaller batch."
    )
    assert error["type"] == "invalid_request_error" and error["code"] is None
    assert emu.billing()["batch"]["requests"] == 0
    emu.configure(openai_max_bytes=len(data))  # at the limit: taken
    batch = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"


def test_anthropic_refuses_a_create_over_the_byte_limit_with_413(
    emu: Emulator, ant: anthropic.Anthropic
) -> None:
    emu.configure(anthropic_max_bytes=500)
    with pytest.raises(anthropic.APIStatusError) as caught:
        ant.messages.batches.create(requests=requests_of(5))  # type: ignore[arg-type]
    assert caught.value.status_code == 413
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"] == {
        "type": "request_too_large",
        "message": "Request exceeds the maximum allowed number of bytes.",
    }
    emu.configure(anthropic_max_bytes=None)
    assert ant.messages.batches.create(requests=requests_of(5)).processing_status == "in_progress"  # type: ignore[arg-type]
