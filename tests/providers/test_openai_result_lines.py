"""OpenAI batch result lines: the typed reading of the common line agrees with the general one."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from providers.errors import BatchExpiredError, ProviderError
from providers.openai_wire import _parse_any_line, parse_result_line
from providers.types import Completion, ItemResult, Usage

LINE: dict[str, Any] = {
    "id": "batch_req_1",
    "custom_id": "lb-1",
    "response": {
        "status_code": 200,
        "request_id": "req_1",
        "body": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1796557001,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": '{"word": "cat"}',
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 79,
                "completion_tokens": 16,
                "total_tokens": 95,
                "prompt_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 3},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
            "service_tier": "default",
        },
    },
    "error": None,
}


def _variant(change: Callable[[dict[str, Any]], Any]) -> bytes:
    line = copy.deepcopy(LINE)
    change(line)
    return orjson.dumps(line)


def _body(line: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = line["response"]["body"]
    return body


def _choice(line: dict[str, Any]) -> dict[str, Any]:
    choice: dict[str, Any] = _body(line)["choices"][0]
    return choice


VARIANTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "as sent": lambda d: None,
    "failed with HTTP 500": lambda d: d["response"].update(status_code=500),
    "a status that is not a number": lambda d: d["response"].update(status_code="200"),
    "an error line": lambda d: d.update(
        response=None, error={"code": "batch_expired", "message": "expired"}
    ),
    "a Responses API body": lambda d: _body(d).update(object="response"),
    "a body with an output": lambda d: _body(d).update(output=None),
    "no choices": lambda d: _body(d).update(choices=[]),
    "null choices": lambda d: _body(d).update(choices=None),
    "no usage": lambda d: _body(d).pop("usage"),
    "null usage": lambda d: _body(d).update(usage=None),
    "a null token count": lambda d: _body(d)["usage"].update(prompt_tokens=None),
    "a token count that is not an integer": lambda d: _body(d)["usage"].update(prompt_tokens=1.5),
    "no token details": lambda d: _body(d)["usage"].update(
        prompt_tokens_details=None, completion_tokens_details=None
    ),
    "a null message": lambda d: _choice(d).update(message=None),
    "a refusal": lambda d: _choice(d)["message"].update(content=None, refusal="I can't"),
    "content in parts": lambda d: _choice(d)["message"].update(content=[{"type": "text"}]),
    "cut at the limit": lambda d: _choice(d).update(finish_reason="length"),
    "no stop reason": lambda d: _choice(d).update(finish_reason=None),
    "no model": lambda d: _body(d).update(model=None),
    "no request id": lambda d: d["response"].update(request_id=None),
    "a custom id that is a number": lambda d: d.update(custom_id=17),
    "a body that is text": lambda d: d["response"].update(body="upstream error"),
    "no body": lambda d: d["response"].update(body=None),
}


def _read(read: Callable[[bytes | str, str], ItemResult], line: bytes | str) -> Any:
    try:
        item = read(line, "openai")
    except Exception as exc:
        return type(exc)
    return item.custom_id, item.completion, type(item.error), str(item.error)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_shape_of_line_reads_as_the_general_parser_reads_it(name: str) -> None:
    line = _variant(VARIANTS[name])
    expected = _read(_parse_any_line, line)
    assert _read(parse_result_line, line) == expected
    assert _read(parse_result_line, line.decode()) == expected


@pytest.mark.parametrize("line", [b'{"custom_id": "x"}', b"[1]", b"nope", b'{"custom_id": "x"'])
def test_lines_that_are_not_result_lines_read_as_before(line: bytes) -> None:
    assert _read(parse_result_line, line) == _read(_parse_any_line, line)


def test_the_common_line_gives_its_answer_usage_and_ids() -> None:
    item = parse_result_line(orjson.dumps(LINE))
    assert item.custom_id == "lb-1" and item.error is None
    assert item.completion == Completion(
        '{"word": "cat"}', Usage(79, 16, 64, 5, 3), "gpt-4o-mini", "req_1", "stop", None
    )
    without_request_id = parse_result_line(_variant(VARIANTS["no request id"]))
    assert without_request_id.completion is not None
    assert without_request_id.completion.request_id == "chatcmpl-1"


def test_failed_and_expired_lines_carry_their_errors() -> None:
    failed = parse_result_line(_variant(VARIANTS["failed with HTTP 500"]))
    assert failed.completion is None and isinstance(failed.error, ProviderError)
    expired = parse_result_line(_variant(VARIANTS["an error line"]))
    assert isinstance(expired.error, BatchExpiredError)
    with pytest.raises(ValueError):
        parse_result_line(b'{"response": null}')
