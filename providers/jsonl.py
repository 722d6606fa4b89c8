"""JSONL: cutting a streamed body (a batch's result file) into lines, and lines that are kept.

A result line a provider's reader cannot read is never the end of the file:
:func:`unreadable_line` says what becomes of it.

Result files arrive in chunks of any size; a line may straddle two chunks.
The lines of each chunk are handed over as one list, so a provider's
``results()`` iterates them with a plain loop rather than through another
asynchronous generator per line (tens of thousands of lines per batch).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import orjson

from providers.errors import UnusableAnswerError
from providers.types import ItemResult

__all__ = [
    "LineSplitter",
    "dumps_kept",
    "line_batches",
    "result_items",
    "split_lines",
    "unreadable_line",
]

log = logging.getLogger(__name__)


def dumps_kept(value: Any, *, option: int | None = None) -> bytes:
    """``orjson.dumps(value)`` for bytes that are kept: sized to their content.

    The bytes ``orjson`` returns keep a buffer of at least 4 KiB whatever
    their length. Kept by the thousand (journal rows waiting for their
    commit, an emulator's result lines) that is ten times the memory the
    JSON needs; the copy costs about 0.1 µs.
    """
    return b"%b" % orjson.dumps(value, option=option)


class LineSplitter:
    """Turns byte chunks into complete lines; blank lines are dropped."""

    __slots__ = ("_rest",)

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines completed by ``chunk`` (an unfinished last line is kept for later)."""
        lines = chunk.split(b"\n")
        if self._rest:
            # Only the straddling line is joined: the chunk itself is not copied.
            lines[0] = self._rest + lines[0]
        self._rest = lines.pop()
        return [line for line in lines if line and not line.isspace()]

    def close(self) -> list[bytes]:
        """The last line, when the body did not end with a newline."""
        rest, self._rest = self._rest, b""
        return [rest] if rest and not rest.isspace() else []


async def line_batches(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The non-blank lines of a chunked body, one list per chunk that completes any."""
    splitter = LineSplitter()
    async for chunk in chunks:
        lines = splitter.feed(chunk)
        if lines:
            yield lines
    tail = splitter.close()
    if tail:
        yield tail


def split_lines(chunks: Iterable[bytes]) -> list[bytes]:
    """The non-blank lines of a body already in memory (in one or more chunks)."""
    splitter = LineSplitter()
    lines: list[bytes] = []
    for chunk in chunks:
        lines.extend(splitter.feed(chunk))
    lines.extend(splitter.close())
    return lines


def unreadable_line(
    line: bytes | str, exc: Exception, *, provider: str, where: str
) -> ItemResult | None:
    """What a batch result line its reader failed on (with ``exc``) becomes.

    Its request, when its ``custom_id`` can be read, ends with an
    :class:`~providers.errors.UnusableAnswerError`: the answer may be billed,
    so it is not sent again by itself. A line naming no id is skipped, with
    a warning (``None``); the batch's reconciliation then finds its request
    missing. Either way the lines after it are read: they are answers paid for.
    """
    custom_id: Any = None
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        custom_id = data.get("custom_id")
    if not isinstance(custom_id, (str, int)) or isinstance(custom_id, bool) or custom_id == "":
        log.warning("skipping a malformed line in %s", where)
        return None
    what = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return ItemResult(
        str(custom_id),
        error=UnusableAnswerError(
            f"its result line in {where} could not be read ({what}); not sent again, as its "
            "answer may be paid for (run it again to pay again)",
            provider=provider,
        ),
    )


def result_items(
    lines: Iterable[bytes], parse: Callable[[bytes], ItemResult], *, provider: str, where: str
) -> Iterator[ItemResult]:
    """``parse`` of each of ``lines`` (a chunk of a result file), none the end of them.

    A line ``parse`` fails on becomes what :func:`unreadable_line` says.
    """
    for line in lines:
        try:
            item: ItemResult | None = parse(line)
        except Exception as exc:
            item = unreadable_line(line, exc, provider=provider, where=where)
        if item is not None:
            yield item
