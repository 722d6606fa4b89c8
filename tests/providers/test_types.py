"""Requests: a stable key, and no serialized body kept once the key is known."""

from __future__ import annotations

import hashlib
import tracemalloc

from pydantic import BaseModel

from providers.jsonl import dumps_kept
from providers.types import KEY_PREFIX, Message, Request


class Entry(BaseModel):
    """A small response model."""

    word: str
    level: str


def _request(i: int, repeat: int = 8) -> Request:
    return Request(
        model="gpt-4o-mini",
        messages=(Message("user", f"Give the CEFR level of word number {i}. " * repeat),),
        response_model=Entry,
        task="cefr",
    )


def test_the_key_is_a_hash_of_the_canonical_body_and_ignores_the_task() -> None:
    request = _request(1)
    digest = hashlib.sha256(request.canonical_json).hexdigest()[:48]
    assert request.key == KEY_PREFIX + digest and len(request.key) == 51
    assert request.key == _request(1).key != _request(2).key
    assert Request(request.model, request.messages, Entry, task="other").key == request.key


def test_requests_awaiting_a_batch_hold_no_serialized_body() -> None:
    # Bodies of ~5 KB: a copy kept would show at its size. What a known key
    # costs (the key, its bytes, the attribute dict grown to hold them) is a
    # few hundred bytes whatever the body, though how many depends on the
    # attributes earlier code gave other requests (CPython's key-sharing dicts).
    requests = [_request(i, repeat=120) for i in range(300)]
    body = len(requests[0].canonical_json)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        keys = [r.key for r in requests]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert len(set(keys)) == 300 and body > 4000 and held / 300 < 1000, (held / 300, body)


def test_kept_json_is_sized_to_its_content() -> None:
    values = [{"custom_id": f"k{i}", "body": {"text": "x" * 500}} for i in range(200)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [dumps_kept(v) for v in values]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    held = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    text = sum(map(len, kept))
    assert kept[0] == b'{"custom_id":"k0","body":{"text":"' + b"x" * 500 + b'"}}'
    assert held < 1.5 * text, (held, text)
