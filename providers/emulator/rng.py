"""Deterministic randomness: seeds from request bodies, fault rolls, a tiny PRNG.

Answers and fault decisions must be reproducible (same body, same answer)
and cheap enough for 100,000 batch items a second, so this uses blake2b for
fault rolls, crc32 for answer seeds and a linear congruential stream instead
of :mod:`random`.
"""

from __future__ import annotations

from hashlib import blake2b
from zlib import crc32

__all__ = ["Rng", "body_seed", "roll"]

_MASK = (1 << 64) - 1


def body_seed(seed: int, data: bytes) -> int:
    """A seed for the answer to ``data`` (a canonical request body) under emulator seed ``seed``."""
    # crc32 is enough to tell bodies apart for answer variety, and it is cheap.
    return (crc32(data) << 32) ^ ((seed * 0x9E3779B97F4A7C15) & _MASK)


def roll(seed: int, kind: str, key: str, seen: int = 0) -> float:
    """A number in [0, 1) fixed by (seed, fault kind, request key, times seen).

    A fault with fraction ``f`` happens when ``roll(...) < f``; tests can call
    this to predict which requests a fraction will hit.
    """
    data = f"{seed}\x00{kind}\x00{key}\x00{seen}".encode()
    return int.from_bytes(blake2b(data, digest_size=7).digest(), "little") / (1 << 56)


class Rng:
    """A 64-bit linear congruential stream (high bits only): fast and good enough here."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        # One splitmix64 round spreads nearby seeds apart.
        z = (seed + 0x9E3779B97F4A7C15) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        self.state = z ^ (z >> 31)

    def next(self) -> int:
        """The next pseudo-random number (32 bits)."""
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & _MASK
        return self.state >> 32

    def below(self, n: int) -> int:
        """An integer in [0, n)."""
        return self.next() % n if n > 0 else 0

    def between(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return lo + self.below(hi - lo + 1) if hi > lo else lo

    def unit(self) -> float:
        """A float in [0, 1)."""
        return self.next() / 4294967296.0

    def hex4(self) -> str:
        """Four hex digits."""
        return f"{self.next() >> 16:04x}"
