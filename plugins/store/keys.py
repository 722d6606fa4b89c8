"""How request keys are stored: lexibatch's own keys as 24 raw bytes, any other key as text.

A request key (:attr:`providers.types.Request.key`) is ``lb-`` and 48
lowercase hex digits: 51 characters of text, written in the cache, the
journal, the ledger and their indexes for every request. Its 24 bytes
say the same in under half the room, and every B-tree holding them is that
much smaller, so more of it stays in the page cache as the store grows.
A key of any other form (a test's ``"k1"``, a foreign ``custom_id`` read from
a provider's result file) is kept as the text it is; SQLite compares a text
and a blob as different values, so the two kinds never collide.

The conversion is exact both ways: :func:`key_cell` of a key read back by
:func:`key_text` is the key itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["KEY_PREFIX", "cell_order", "in_order", "key_cell", "key_text"]

#: The prefix of lexibatch's own request keys (:data:`providers.types.KEY_PREFIX`).
KEY_PREFIX: Final = "lb-"
_KEY_LENGTH: Final = len(KEY_PREFIX) + 48


def key_cell(key: str) -> bytes | str:
    """What is stored for request ``key``: its digest's bytes, or the text of a foreign key."""
    if len(key) == _KEY_LENGTH and key.startswith(KEY_PREFIX):
        digits = key[3:]
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            return key
        # fromhex also reads upper case and spaces: only the exact form round-trips.
        # 24 bytes from 48 characters leave no room for spaces; then a digit
        # string with a letter and no upper case (islower) is the exact form.
        if len(raw) == 24 and (digits.islower() or raw.hex() == digits):
            return raw
    return key


def key_text(cell: bytes | str) -> str:
    """The request key a stored cell holds (the inverse of :func:`key_cell`)."""
    if type(cell) is bytes:
        return KEY_PREFIX + cell.hex()
    return str(cell)


def cell_order(cell: bytes | str) -> tuple[bool, bytes | str]:
    """A sort key putting cells in SQLite's order (text before blobs), for in-order writes."""
    return (type(cell) is bytes, cell)


def in_order(cells: Iterable[bytes | str]) -> list[bytes | str]:
    """``cells`` in SQLite's order: text before blobs.

    Each kind is sorted on its own, with no key function: a batch's hundred
    thousand keys are sorted for each read and write of them.
    """
    texts: list[bytes | str] = []
    blobs: list[bytes | str] = []
    for cell in cells:
        (blobs if type(cell) is bytes else texts).append(cell)
    texts.sort()
    blobs.sort()
    return texts + blobs
