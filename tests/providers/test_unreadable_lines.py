"""A batch result line its reader cannot read: its request ends, or the line is skipped."""

from __future__ import annotations

import logging

import pytest

from providers.errors import UnusableAnswerError
from providers.jsonl import unreadable_line
from providers.openai_wire import parse_result_line


@pytest.mark.parametrize(
    "line",
    [
        b'{"custom_id": "k1", "response": {"status_code": 200, "body": {"choices": "no"}}}',
        b'{"custom_id": "k1", "response": {"status_code": 200, "body": {"choices": [7]}}}',
    ],
)
def test_a_line_with_a_readable_id_ends_its_request_unretried(line: bytes) -> None:
    try:
        item = parse_result_line(line, "openai")
    except Exception as exc:
        found = unreadable_line(line, exc, provider="openai", where="batch file f1")
        assert found is not None
        item = found
    assert item.custom_id == "k1" and item.completion is None
    assert isinstance(item.error, UnusableAnswerError) and not item.error.retryable


@pytest.mark.parametrize(
    "line", [b"not json", b"[1, 2]", b'{"custom_id": ""}', b'{"custom_id": true}', b"{}"]
)
def test_a_line_naming_no_id_is_skipped_with_a_warning(
    line: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        assert unreadable_line(line, ValueError("x"), provider="openai", where="file f1") is None
    assert "skipping a malformed line in file f1" in caplog.text


def test_an_unreadable_line_says_why_and_that_it_is_not_sent_again() -> None:
    item = unreadable_line(
        b'{"custom_id": 42}',
        AttributeError("'str' object has no attribute 'get'"),
        provider="anthropic",
        where="the results of msgbatch_1",
    )
    assert item is not None and item.custom_id == "42"
    assert str(item.error) == (
        "anthropic: its result line in the results of msgbatch_1 could not be read "
        "(AttributeError: 'str' object has no attribute 'get'); not sent again, as its answer "
        "may be paid for (run it again to pay again)"
    )
