"""Every table of the store: cache, ledger, request journal, batch journal, documents."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plugins.store import CallRecord, JournalRequest, Shard, Store, StoredResult
from providers.types import Usage


def _result(key: str, text: str = '{"a": 1}', **kw: object) -> StoredResult:
    fields: dict[str, object] = {
        "key": key,
        "model": "gpt-4o-mini",
        "task": "define",
        "mode": "batch",
        "text": text,
        "usage": Usage(10, 5, 2, 1, 0),
        "cost_usd": 0.001,
        "request_id": "req_1",
        "batch_id": "batch_1",
    }
    fields.update(kw)
    return StoredResult(**fields)  # type: ignore[arg-type]


def _request(key: str, model: str = "gpt-4o-mini") -> JournalRequest:
    return JournalRequest(
        key=key, model=model, task="define", body=b'{"k": "' + key.encode() + b'"}'
    )


# --- results ---------------------------------------------------------------


def test_a_results_cache_writes_of_both_kinds_are_kept(store: Store) -> None:
    usage = Usage(13020, 50, 10000, 0, 3000, 2000)
    store.put_results("anthropic", [_result("k9", usage=usage)])
    got = store.get_result("anthropic", "k9")
    assert got is not None and got.usage == usage


def test_put_and_get_result_round_trip(store: Store) -> None:
    assert store.get_result("openai", "k1") is None
    assert store.put_results("openai", [_result("k1")]) == 1
    got = store.get_result("openai", "k1")
    assert got is not None
    assert got.key == "k1"
    assert got.text == '{"a": 1}'
    assert got.usage == Usage(10, 5, 2, 1, 0)
    assert got.cost_usd == 0.001
    assert (got.model, got.task, got.mode, got.request_id, got.batch_id) == (
        "gpt-4o-mini",
        "define",
        "batch",
        "req_1",
        "batch_1",
    )
    assert got.created_at > 0


def test_results_are_per_provider(store: Store) -> None:
    store.put_results("openai", [_result("k1")])
    assert store.get_result("anthropic", "k1") is None
    assert store.count_results("openai") == 1
    assert store.count_results("anthropic") == 0


def test_first_result_wins(store: Store) -> None:
    store.put_results("openai", [_result("k1", text="first")])
    assert store.put_results("openai", [_result("k1", text="second")]) == 0
    got = store.get_result("openai", "k1")
    assert got is not None and got.text == "first"


def test_get_results_many_keys_across_chunks(store: Store) -> None:
    keys = [f"k{i}" for i in range(2500)]
    store.put_results("openai", [_result(k, text=k) for k in keys[::2]])
    found = store.get_results("openai", [*keys, "missing", "k0"])
    assert set(found) == set(keys[::2])
    assert all(found[k].text == k for k in found)


def test_a_cache_without_results_of_a_provider_finds_none_from_one_index_probe(
    store: Store,
) -> None:
    keys = [f"k{i}" for i in range(1500)]
    assert not store.has_results("openai") and store.get_results("openai", keys) == {}
    store.put_results("anthropic", [_result("k1")])
    # Another provider's answers are not this one's.
    assert not store.has_results("openai") and store.get_results("openai", keys) == {}
    assert store.has_results("anthropic")
    assert set(store.get_results("anthropic", keys)) == {"k1"}
    store.put_results("openai", [_result("k1499", text="late")])
    assert store.has_results("openai")
    assert {k: r.text for k, r in store.get_results("openai", keys).items()} == {"k1499": "late"}
    [plan] = [
        row[3]
        for row in store.query(
            "EXPLAIN QUERY PLAN SELECT EXISTS (SELECT 1 FROM result_providers WHERE provider = ?)",
            ("openai",),
        )
        if "result_providers" in row[3]
    ]
    assert plan.startswith("SEARCH result_providers USING PRIMARY KEY")


def test_results_of_requests_are_found_by_the_key_bytes_they_keep(store: Store) -> None:
    from providers.types import Message, Request

    requests = [Request("gpt-4o-mini", (Message("user", f"word {i}"),)) for i in range(1200)]
    assert store.get_results_of("openai", requests) == {}
    answered = requests[::3]
    store.put_results("openai", [_result(r.key, text=r.messages[0].content) for r in answered])
    found = store.get_results_of("openai", requests)
    # The same answers, keyed the same, as looking the keys up as text gives.
    assert found == store.get_results("openai", [r.key for r in requests])
    assert {k: v.text for k, v in found.items()} == {r.key: r.messages[0].content for r in answered}
    assert store.get_results_of("anthropic", requests) == {}


def test_unpriced_result_keeps_none_cost(store: Store) -> None:
    store.put_results("openai", [_result("k1", cost_usd=None, task=None)])
    got = store.get_result("openai", "k1")
    assert got is not None and got.cost_usd is None and got.task is None


# --- calls -----------------------------------------------------------------


def test_cost_report_groups_and_sums(store: Store) -> None:
    t0 = time.time()
    store.record_calls(
        [
            CallRecord("openai", "m1", "define", "batch", "a", Usage(100, 10), 0.5, 1.0, "b1", t0),
            CallRecord("openai", "m1", "define", "batch", "b", Usage(50, 5, 3, 2), 0.25, 0.5),
            CallRecord("openai", "m1", "define", "batch", "c", Usage(1, 1), None, None),
            CallRecord("openai", "m2", "enhance", "immediate", "d", Usage(7, 3), 0.2, None),
        ]
    )
    rows = {(r.mode, r.task, r.model): r for r in store.cost_report()}
    assert set(rows) == {("batch", "define", "m1"), ("immediate", "enhance", "m2")}
    batch = rows[("batch", "define", "m1")]
    assert batch.requests == 3
    assert (batch.input_tokens, batch.output_tokens) == (151, 16)
    assert (batch.cached_tokens, batch.reasoning_tokens) == (3, 2)
    assert batch.cost_usd == pytest.approx(0.75)
    assert batch.immediate_cost_usd == pytest.approx(1.5)
    assert batch.unpriced == 1
    assert batch.saving_usd == pytest.approx(0.75)
    immediate = rows[("immediate", "enhance", "m2")]
    # An immediate call is its own immediate equivalent.
    assert immediate.immediate_cost_usd == pytest.approx(0.2)
    assert immediate.saving_usd == pytest.approx(0.0)


def test_cost_report_since(store: Store) -> None:
    store.record_calls(
        [CallRecord("openai", "m", None, "batch", "old", Usage(1, 1), 1.0, ts=100.0)]
    )
    store.record_calls(
        [CallRecord("openai", "m", None, "batch", "new", Usage(1, 1), 2.0, ts=200.0)]
    )
    assert [r.cost_usd for r in store.cost_report(since=150.0)] == [2.0]
    assert store.cost_report(since=300.0) == []
    assert store.cost_report()[0].requests == 2


# --- requests --------------------------------------------------------------


def test_add_requests_counts_only_new(store: Store) -> None:
    assert store.add_requests("openai", [_request("a"), _request("b")]) == 2
    assert store.add_requests("openai", [_request("b"), _request("c")]) == 1
    assert store.count_requests("openai") == {"queued": 3}
    assert store.count_requests("anthropic") == {}


def test_request_round_trip_keeps_body(store: Store) -> None:
    store.add_requests("openai", [_request("a")])
    row = store.get_requests("openai", ["a", "zzz"])
    assert set(row) == {"a"}
    assert row["a"].body == b'{"k": "a"}'
    assert (row["a"].state, row["a"].attempts, row["a"].shard_id) == ("queued", 0, None)
    assert row["a"].created_at > 0


def test_set_request_state_shard_attempts_and_errors(store: Store) -> None:
    store.add_requests("openai", [_request(k) for k in "abc"])
    assert store.set_request_state("openai", ["a", "b"], "submitted", shard_id="s1") == 2
    # Again in the same shard (a resume re-applying it): not a new attempt.
    store.set_request_state("openai", ["a"], "submitted", shard_id="s1")
    rows = store.get_requests("openai", "abc")
    assert rows["a"].attempts == 1 and rows["a"].shard_id == "s1"
    assert rows["c"].attempts == 0 and rows["c"].state == "queued"

    error = {"type": "BatchExpiredError", "message": "expired", "retryable": True}
    store.set_request_state("openai", ["a"], "queued", error=error)
    row = store.get_requests("openai", ["a"])["a"]
    assert (row.state, row.shard_id, row.error) == ("queued", "s1", error)

    store.set_request_state("openai", ["a"], "submitted", shard_id="s2")
    row = store.get_requests("openai", ["a"])["a"]
    assert (row.attempts, row.shard_id, row.error) == (2, "s2", None)

    per_key = {"b": {"type": "InvalidRequestError", "message": "bad"}}
    store.set_request_state("openai", ["a", "b"], "failed", error={"type": "X"}, errors=per_key)
    assert store.get_requests("openai", ["a"])["a"].error == {"type": "X"}
    assert store.get_requests("openai", ["b"])["b"].error == per_key["b"]
    assert store.request_states("openai", ["a", "b", "c", "nope"]) == {
        "a": "failed",
        "b": "failed",
        "c": "queued",
    }


def test_unknown_state_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown request state"):
        store.set_request_state("openai", ["a"], "done")
    with pytest.raises(ValueError, match="unknown request state"):
        list(store.requests_in_state("openai", "done"))


def test_requests_in_state_filters_pages_and_limits(store: Store) -> None:
    keys = [f"k{i:05d}" for i in range(12_000)]
    store.add_requests(
        "openai", [_request(k, model="m1" if i % 3 else "m2") for i, k in enumerate(keys)]
    )
    store.add_requests("anthropic", [_request("other")])
    queued = list(store.requests_in_state("openai", "queued"))
    assert [r.key for r in queued] == keys
    m2 = list(store.requests_in_state("openai", "queued", model="m2"))
    assert len(m2) == 4000 and all(r.model == "m2" for r in m2)
    assert len(list(store.requests_in_state("openai", "queued", limit=7001))) == 7001
    assert list(store.requests_in_state("openai", "queued", limit=0)) == []


def test_requests_in_state_survives_updates_while_iterating(store: Store) -> None:
    keys = [f"k{i:05d}" for i in range(11_000)]
    store.add_requests("openai", [_request(k) for k in keys])
    seen = []
    for row in store.requests_in_state("openai", "queued"):
        seen.append(row.key)
        if len(seen) % 1000 == 0:
            store.set_request_state("openai", seen[-1000:], "submitted", shard_id="s")
    assert seen == keys
    assert store.count_requests("openai") == {"submitted": 11_000}


def test_requests_of_shard(store: Store) -> None:
    store.add_requests("openai", [_request(k) for k in "abcd"])
    store.set_request_state("openai", ["a", "c"], "submitted", shard_id="s1")
    store.set_request_state("openai", ["d"], "submitted", shard_id="s2")
    assert [r.key for r in store.requests_of_shard("s1")] == ["a", "c"]
    assert [r.key for r in store.requests_of_shard("s2")] == ["d"]
    assert store.requests_of_shard("s3") == []


# --- shards ----------------------------------------------------------------


def test_shard_lifecycle(store: Store) -> None:
    added = store.add_shard(
        Shard("s1", "openai", "gpt-4o-mini", path="/spool/s1.jsonl", requests=3, bytes=120)
    )
    assert added.created_at > 0 and added.state == "written"
    assert store.get_shard("s1") == added
    store.update_shard("s1", state="uploaded", input_file_id="file-1")
    updated = store.update_shard(
        "s1",
        state="created",
        batch_id="batch_1",
        batch_status="validating",
        counts={"total": 3, "completed": 0},
        raw={"id": "batch_1", "status": "validating"},
    )
    assert updated.input_file_id == "file-1"
    assert updated.counts == {"total": 3, "completed": 0}
    assert updated.raw == {"id": "batch_1", "status": "validating"}
    assert updated.updated_at >= added.updated_at
    assert store.get_shard("s1") == updated
    assert store.shard_by_batch_id("batch_1") == updated
    assert store.shard_by_batch_id("batch_2") is None
    assert store.get_shard("nope") is None


def test_update_shard_rejects_unknown_fields_states_and_ids(store: Store) -> None:
    store.add_shard(Shard("s1", "openai", "m"))
    with pytest.raises(ValueError, match="unknown shard field"):
        store.update_shard("s1", sate="created")
    with pytest.raises(ValueError, match="unknown shard field"):
        store.update_shard("s1", shard_id="s2")
    with pytest.raises(ValueError, match="unknown shard state"):
        store.update_shard("s1", state="done")
    with pytest.raises(KeyError):
        store.update_shard("missing", state="created")
    assert store.get_shard("s1") == store.shards()[0]


def test_batch_id_is_unique_and_shard_ids_too(store: Store) -> None:
    store.add_shard(Shard("s1", "openai", "m", batch_id="batch_1"))
    store.add_shard(Shard("s2", "openai", "m"))
    store.add_shard(Shard("s3", "openai", "m"))  # two shards without a batch id are fine
    with pytest.raises(ValueError, match="cannot be added"):
        store.add_shard(Shard("s1", "openai", "m"))
    with pytest.raises(ValueError, match="cannot be updated"):
        store.update_shard("s2", batch_id="batch_1")
    assert store.get_shard("s2") is not None and store.get_shard("s2").batch_id is None  # type: ignore[union-attr]


def test_shards_filters(store: Store) -> None:
    store.add_shard(Shard("a", "openai", "m", state="created", created_at=1.0))
    store.add_shard(Shard("b", "anthropic", "m", state="created", created_at=2.0))
    store.add_shard(Shard("c", "openai", "m", state="collected", created_at=3.0))
    assert [s.shard_id for s in store.shards()] == ["a", "b", "c"]
    assert [s.shard_id for s in store.shards(provider="openai")] == ["a", "c"]
    assert [s.shard_id for s in store.shards(states=["created"])] == ["a", "b"]
    assert [s.shard_id for s in store.shards("openai", ["created", "ended"])] == ["a"]
    assert store.shards(states=[]) == []


# --- documents -------------------------------------------------------------


def test_documents(store: Store) -> None:
    assert store.get_document("entries", "apple") is None
    store.put_document("entries", "apple", {"pos": "noun", "senses": ["fruit"]})
    store.put_document("entries", "apple", {"pos": "noun", "senses": ["fruit", "tree"]})
    store.put_documents("entries", [(f"w{i:05d}", {"i": i}) for i in range(6000)])
    store.put_document("runs", "last", {"ok": True})
    assert store.get_document("entries", "apple") == {"pos": "noun", "senses": ["fruit", "tree"]}
    items = list(store.iter_documents("entries"))
    assert len(items) == 6001
    assert [k for k, _ in items] == sorted(k for k, _ in items)
    assert dict(items)["w00042"] == {"i": 42}
    assert list(store.iter_documents("runs")) == [("last", {"ok": True})]
    assert store.has_documents("entries", ["apple", "pear", "w00001"]) == {"apple", "w00001"}
    assert store.has_documents("runs", []) == set()


def test_added_documents_keep_the_first_written_and_count_only_the_new(store: Store) -> None:
    store.put_document("spellings", "lantern", {"word": "Lantern"})
    added = store.add_documents(
        "spellings", [("lantern", {"word": "lantern"}), ("anchor", {"word": "anchor"})]
    )
    assert added == 1
    assert store.get_document("spellings", "lantern") == {"word": "Lantern"}
    assert store.get_document("spellings", "anchor") == {"word": "anchor"}
    assert store.add_documents("spellings", []) == 0


def test_no_secret_columns(store: Store) -> None:
    columns = {
        row[1].lower()
        for table in ("results", "calls", "requests", "shards", "documents")
        for row in store._conn.execute(f"PRAGMA table_info({table})")
    }
    assert not any(word in c for c in columns for word in ("header", "api_key", "authorization"))


def test_a_reasked_answer_is_kept_with_its_reask_and_the_newest_is_read_back(
    tmp_path: Path,
) -> None:
    with Store(tmp_path / "s.db") as store:
        assert store.pending_reask("openai", "lb-k1") is None
        first = StoredResult("lb-k1", "gpt-4o-mini", "t", "immediate", "{}", Usage(10, 2), 0.001)
        store.keep_reasked("openai", first, state='{"attempt": 1}')
        store.keep_reasked("openai", first._replace(text="{ }"), state='{"attempt": 2}')
        assert store.pending_reask("openai", "lb-k1") == '{"attempt": 2}'
        assert store.pending_reask("anthropic", "lb-k1") is None
        # Kept as paid answers: never deleted, nothing in the cache.
        assert [r.text for r in store.retired_results("openai", "lb-k1")] == ["{}", "{ }"]
        assert store.get_result("openai", "lb-k1") is None
