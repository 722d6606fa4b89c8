"""The journal is appended in written order, and a request's body is kept only until it succeeds."""

from __future__ import annotations

from plugins.store import JournalRequest, Store


def _row(key: str, shard: str | None = "s1", body: bytes = b"{}", **kw: object) -> JournalRequest:
    return JournalRequest(key=key, model="m", task="t", body=body, shard_id=shard, **kw)  # type: ignore[arg-type]


def _bodies(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) FROM request_bodies")[0][0])


def test_each_write_appends_its_new_rows_after_the_last_whatever_their_keys(store: Store) -> None:
    store.queue_requests("p", [_row(k, "s1") for k in ("m", "z", "a")])
    (a_id,) = store.query("SELECT id FROM requests WHERE key = 'a'")[0]
    store.queue_requests("p", [_row(k, "s2") for k in ("b", "y", "a")])
    rows = store.query("SELECT id, key, shard_id FROM requests ORDER BY id")
    first = [r for r in rows if r[1] in ("m", "z", "a")]
    second = [r for r in rows if r[1] in ("b", "y")]
    assert max(r[0] for r in first) < min(r[0] for r in second)
    # A known key keeps its row (and id), queued again in the new shard.
    assert (a_id, "a", "s2") in rows and len(rows) == 5
    # Each body is stored under its own request's id.
    assert sorted(store.query("SELECT id FROM request_bodies")) == sorted((r[0],) for r in rows)


def test_a_known_key_is_left_alone_and_keeps_its_body(store: Store) -> None:
    assert store.add_requests("p", [_row("a", body=b"first")]) == 1
    assert store.add_requests("p", [_row("a", body=b"second"), _row("b", body=b"b")]) == 1
    rows = store.get_requests("p", ["a", "b"])
    assert (rows["a"].body, rows["b"].body) == (b"first", b"b")
    assert _bodies(store) == 2


def test_a_succeeded_row_is_journaled_without_a_body(store: Store) -> None:
    store.add_requests("p", [_row("done", state="succeeded", body=b"x")])
    assert store.get_requests("p", ["done"])["done"].body == b""
    assert _bodies(store) == 0


def test_queued_again_with_the_new_body(store: Store) -> None:
    store.queue_requests("p", [_row(k, "old", body=b"old " + k.encode()) for k in ("q", "f", "r")])
    store.submit_shard_requests("p", "old")
    store.set_request_state("p", ["f"], "failed", error={"message": "boom"})
    store.set_request_state("p", ["q"], "queued")
    # A retired answer: succeeded (body dropped), then failed with no body.
    store.set_request_state("p", ["r"], "succeeded")
    store.set_request_state("p", ["r"], "failed", error={"message": "stale"})
    assert store.get_requests("p", ["r"])["r"].body == b""
    written = store.queue_requests("p", [_row(k, "new", body=b"new " + k.encode()) for k in "qfr"])
    assert written == 3
    rows = store.get_requests("p", ["q", "f", "r"])
    assert {k: (r.state, r.shard_id, r.body) for k, r in rows.items()} == {
        "q": ("queued", "new", b"new q"),
        "f": ("queued", "new", b"new f"),
        "r": ("queued", "new", b"new r"),
    }
    assert _bodies(store) == 3


def test_a_submitted_row_keeps_its_body_when_queued_again(store: Store) -> None:
    store.queue_requests("p", [_row("s", "old", body=b"sent")])
    store.submit_shard_requests("p", "old")
    assert store.queue_requests("p", [_row("s", "new", body=b"other")]) == 0
    row = store.get_requests("p", ["s"])["s"]
    assert (row.state, row.shard_id, row.body) == ("submitted", "old", b"sent")


def test_a_body_is_deleted_when_its_request_succeeds(store: Store) -> None:
    store.queue_requests("p", [_row(k, "s1") for k in ("a", "b", "c")])
    store.queue_requests("p", [_row(k, "s2") for k in ("d", "e")])
    store.submit_shard_requests("p", "s1")
    store.submit_shard_requests("p", "s2")
    assert _bodies(store) == 5
    assert store.set_request_state("p", ["a"], "succeeded") == 1
    assert _bodies(store) == 4
    # The shard's answered requests succeed together (no result cached: check skipped).
    assert store.mark_shard_succeeded("p", "s1", check_results=False) == 2
    assert _bodies(store) == 2
    assert {k: r.body for k, r in store.get_requests("p", list("abcde")).items()} == {
        "a": b"",
        "b": b"",
        "c": b"",
        "d": b"{}",
        "e": b"{}",
    }
    # With the check, a request whose answer is not cached keeps its body.
    assert store.mark_shard_succeeded("p", "s2") == 0
    assert _bodies(store) == 2
