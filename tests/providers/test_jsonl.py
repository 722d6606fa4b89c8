"""Cutting streamed JSONL bodies into lines."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from providers.jsonl import LineSplitter, line_batches, split_lines

BODY = b'{"a":1}\n\n{"b":2}\r\n   \n{"c":3}\n{"d":4}'


def _chunks(body: bytes, size: int) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 1000])
def test_lines_straddling_chunks_come_out_whole_and_blank_ones_are_dropped(size: int) -> None:
    assert split_lines(_chunks(BODY, size)) == [b'{"a":1}', b'{"b":2}\r', b'{"c":3}', b'{"d":4}']


def test_a_body_ending_in_a_newline_has_no_empty_last_line() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert splitter.feed(b":2}\n") == [b'{"b":2}']
    assert splitter.close() == []
    assert split_lines([]) == [] and split_lines([b"\n \n"]) == []


async def test_line_batches_gives_one_list_per_chunk_that_completes_lines() -> None:
    async def stream() -> AsyncIterator[bytes]:
        for chunk in (b'{"a":1}\n{"b', b"", b'":2}\n', b'{"c":3}'):
            yield chunk

    batches = [lines async for lines in line_batches(stream())]
    assert batches == [[b'{"a":1}'], [b'{"b":2}'], [b'{"c":3}']]
