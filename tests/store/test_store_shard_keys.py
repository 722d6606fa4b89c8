"""``Store.shard_keys``: the keys of a shard's requests, without their bodies."""

from __future__ import annotations

import pytest

from plugins.store import JournalRequest, Store


def _journal(store: Store, keys: list[str]) -> None:
    store.add_requests("openai", [JournalRequest(k, "m", None, b'{"c":{}}') for k in keys])


def test_shard_keys_lists_the_unfinished_requests_of_a_shard_by_state(store: Store) -> None:
    _journal(store, ["k3", "k1", "k2", "k4", "other"])
    store.set_request_state("openai", ["k3", "k1", "k2", "k4"], "submitted", shard_id="s1")
    store.set_request_state("openai", ["other"], "submitted", shard_id="s2")
    store.set_request_state("openai", ["k4"], "failed", error={"type": "X"})
    # A request that succeeded leaves its shard: the journal keeps its key and state only.
    store.set_request_state("openai", ["k1"], "succeeded")
    in_order = [r.key for r in store.requests_of_shard("s1")]
    assert store.shard_keys("s1") == in_order == ["k2", "k3", "k4"]
    assert store.shard_keys("s1", "submitted") == ["k2", "k3"]
    assert store.shard_keys("s1", "failed") == ["k4"]
    assert store.shard_keys("s1", "succeeded") == []
    assert store.get_requests("openai", ["k1"])["k1"].state == "succeeded"
    assert store.shard_keys("s2") == ["other"]
    assert store.shard_keys("nope") == []


def test_shard_keys_refuses_an_unknown_state(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown request state"):
        store.shard_keys("s1", "done")


def test_requests_of_shard_keeps_errors_and_bodies(store: Store) -> None:
    _journal(store, ["a"])
    store.set_request_state("openai", ["a"], "failed", shard_id="s", error={"type": "X"})
    (row,) = store.requests_of_shard("s")
    assert row.body == b'{"c":{}}' and isinstance(row.body, bytes)
    assert row.error == {"type": "X"} and row.state == "failed" and row.shard_id == "s"


def test_claims_in_shard_are_the_claims_on_its_submitted_requests_only(store: Store) -> None:
    _journal(store, ["a", "b", "c", "d", "e"])
    store.set_request_state("openai", ["a", "b", "c"], "submitted", shard_id="s1")
    store.set_request_state("openai", ["d"], "submitted", shard_id="s2")
    store.set_request_state("openai", ["c"], "failed", error={"type": "X"})
    never = lambda owner, expires: False  # noqa: E731 - no claim lapses here
    for key in ("a", "c", "d", "e"):
        assert store.take_claim("openai", key, f"host:1:{key}", 9e9, never) is None
    # A claim of another provider on the same key is not this shard's.
    assert store.take_claim("anthropic", "b", "host:2:x", 9e9, never) is None
    assert store.claims_in_shard("openai", "s1") == [("a", "host:1:a", 9e9)]
    assert store.claims_in_shard("openai", "s2") == [("d", "host:1:d", 9e9)]
    assert store.claims_in_shard("anthropic", "s1") == []
