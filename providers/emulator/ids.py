"""Identifiers shaped like the real providers' ones.

OpenAI: ``file-`` + 22 alphanumerics, ``batch_`` / ``batch_req_`` + 32 hex
digits starting with the creation time in hex, ``chatcmpl-`` + 29
alphanumerics, ``resp_`` + 50 hex digits, ``req_`` + 32 hex (header) or 32 hex
(``request_id`` in output lines). Anthropic: ``msg_01`` / ``msgbatch_01`` /
``toolu_01`` / ``req_01`` + 22 alphanumerics.

Ids of the many items of one batch share a random stem and end in a counter,
which keeps a 100,000-line batch cheap to answer.
"""

from __future__ import annotations

import random
import time

__all__ = [
    "alnum",
    "anthropic_id",
    "chatcmpl_id",
    "file_id",
    "hex_time_id",
    "openai_request_id",
    "reseed",
    "response_id",
]

_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# Ids need to be unique, not secret; a seeded Mersenne twister is much faster.
_random = random.Random()


def reseed() -> None:
    """Draw fresh randomness (a forked child must not repeat its parent's ids)."""
    _random.seed()


def alnum(n: int) -> str:
    """``n`` random alphanumerics."""
    return "".join(_random.choices(_ALNUM, k=n))


def file_id() -> str:
    """``file-TnjeSoqJGFp7SfehYrEuHH``."""
    return "file-" + alnum(22)


def hex_time_id(prefix: str, at: float | None = None) -> str:
    """``batch_6780bb2f8f6c8190a6c0abfb8502bba6``: creation time in hex, then 24 random hex."""
    return f"{prefix}{int(at if at is not None else time.time()):08x}{_random.getrandbits(96):024x}"


def chatcmpl_id() -> str:
    """``chatcmpl-Ao2bZUcX4NWHN7CDnc08E2pPhqQ0Q``."""
    return "chatcmpl-" + alnum(29)


def response_id(prefix: str = "resp_") -> str:
    """``resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b`` (also ``msg_`` output items)."""
    return f"{prefix}{int(time.time()):08x}{_random.getrandbits(168):042x}"


def openai_request_id() -> str:
    """``req_65c009a7e02be406e20a0e1a9456d371`` (the ``x-request-id`` header)."""
    return f"req_{_random.getrandbits(128):032x}"


def request_hex() -> str:
    """``ed3ad7feb8ad212a440ab12a1175798e`` (``request_id`` in a batch output line)."""
    return f"{_random.getrandbits(128):032x}"


def anthropic_id(prefix: str) -> str:
    """``msg_01RCYATmUJZFc3vBxVtCSDov`` for prefix ``msg_``."""
    return prefix + "01" + alnum(22)


class Stem:
    """Ids for the items of one batch: a shared random stem plus a counter."""

    __slots__ = ("_alnum", "_hex", "_time")

    def __init__(self) -> None:
        self._time = f"{int(time.time()):08x}"
        self._hex = f"{_random.getrandbits(64):016x}"
        self._alnum = alnum(21)

    def chat_line_stems(self) -> tuple[str, str, str]:
        """What :meth:`batch_req`, :meth:`request_hex` and :meth:`chatcmpl` put before ``i:08x``."""
        batch_req = f"batch_req_{self._time}{self._hex}"
        return batch_req, f"{self._hex}{self._time}", f"chatcmpl-{self._alnum}"

    def batch_req(self, i: int) -> str:
        """``batch_req_`` + 32 hex."""
        return f"batch_req_{self._time}{self._hex}{i:08x}"

    def request_hex(self, i: int) -> str:
        """32 hex digits."""
        return f"{self._hex}{self._time}{i:08x}"

    def chatcmpl(self, i: int) -> str:
        """``chatcmpl-`` + 29 alphanumerics."""
        return f"chatcmpl-{self._alnum}{i:08x}"

    def resp(self, i: int) -> str:
        """``resp_`` + 50 hex digits."""
        return f"resp_{self._time}{self._hex}{self._hex}{i:010x}"

    def resp_msg(self, i: int) -> str:
        """``msg_`` + 50 hex digits (an output item of a response)."""
        return f"msg_{self._time}{self._hex}{self._hex}{i + (1 << 39):010x}"

    def msg(self, i: int) -> str:
        """``msg_01`` + 22 alphanumerics."""
        return f"msg_01{self._alnum[:14]}{i:08x}"

    def toolu(self, i: int) -> str:
        """``toolu_01`` + 22 alphanumerics."""
        return f"toolu_01{self._alnum[7:21]}{i:08x}"


class Fresh(Stem):
    """Ids for immediate calls: every id random, the counter argument ignored."""

    __slots__ = ()

    def batch_req(self, i: int) -> str:
        """``batch_req_`` + 32 hex."""
        return hex_time_id("batch_req_")

    def request_hex(self, i: int) -> str:
        """32 hex digits."""
        return request_hex()

    def chatcmpl(self, i: int) -> str:
        """``chatcmpl-`` + 29 alphanumerics."""
        return chatcmpl_id()

    def resp(self, i: int) -> str:
        """``resp_`` + 50 hex digits."""
        return response_id()

    def resp_msg(self, i: int) -> str:
        """``msg_`` + 50 hex digits."""
        return response_id("msg_")

    def msg(self, i: int) -> str:
        """``msg_01`` + 22 alphanumerics."""
        return anthropic_id("msg_")

    def toolu(self, i: int) -> str:
        """``toolu_01`` + 22 alphanumerics."""
        return anthropic_id("toolu_")
