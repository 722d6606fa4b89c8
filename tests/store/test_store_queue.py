"""Queueing requests into an open shard and submitting a whole shard at once."""

from __future__ import annotations

from plugins.store import JournalRequest, Store


def _row(key: str, shard: str) -> JournalRequest:
    return JournalRequest(key=key, model="m", task="t", body=b"{}", shard_id=shard)


def test_queue_then_submit_a_shard(store: Store) -> None:
    assert store.queue_requests("p", [_row("a", "s1"), _row("b", "s1"), _row("c", "s2")]) == 3
    assert store.submit_shard_requests("p", "s1") == 2
    rows = store.get_requests("p", ["a", "b", "c"])
    assert {k: (r.state, r.shard_id, r.attempts) for k, r in rows.items()} == {
        "a": ("submitted", "s1", 1),
        "b": ("submitted", "s1", 1),
        "c": ("queued", "s2", 0),
    }
    # Submitting again changes nothing: only queued rows move.
    assert store.submit_shard_requests("p", "s1") == 0


def test_queue_requeues_queued_and_failed_but_not_settled_rows(store: Store) -> None:
    store.queue_requests("p", [_row(k, "old") for k in ("queued", "failed", "ok", "sent")])
    store.submit_shard_requests("p", "old")
    store.set_request_state("p", ["failed"], "failed", error={"message": "boom"})
    store.set_request_state("p", ["ok"], "succeeded")
    store.set_request_state("p", ["queued"], "queued")
    store.queue_requests("p", [_row(k, "new") for k in ("queued", "failed", "ok", "sent")])
    rows = store.get_requests("p", ["queued", "failed", "ok", "sent"])
    assert {k: (r.state, r.shard_id) for k, r in rows.items()} == {
        "queued": ("queued", "new"),
        "failed": ("queued", "new"),
        "ok": ("succeeded", None),  # a succeeded request leaves its shard
        "sent": ("submitted", "old"),
    }
    assert store.submit_shard_requests("p", "new") == 2
    attempts = {k: r.attempts for k, r in store.get_requests("p", ["queued", "failed"]).items()}
    assert attempts == {"queued": 2, "failed": 2}
    assert store.get_requests("p", ["failed"])["failed"].error is None


def test_open_requests_are_those_queued_or_submitted(store: Store) -> None:
    assert not store.has_open_requests("openai")
    store.queue_requests("openai", [_row("k1", "s1")])
    assert store.has_open_requests("openai") and not store.has_open_requests("anthropic")
    store.submit_shard_requests("openai", "s1")
    assert store.has_open_requests("openai")
    store.set_request_state("openai", ["k1"], "succeeded")
    assert not store.has_open_requests("openai")
