"""One id a request key: its journal row and its cached result are both kept under it."""

from __future__ import annotations

from plugins.store import JournalRequest, Store, StoredResult
from plugins.store.keys import key_cell
from providers.types import Usage


def _result(key: str, text: str = '{"a": 1}') -> StoredResult:
    return StoredResult(key, "gpt-4o-mini", "define", "batch", text, Usage(10, 5), 0.001)


def _request(key: str) -> JournalRequest:
    return JournalRequest(key=key, model="gpt-4o-mini", task="define", body=b"{}")


def _ids(store: Store, table: str) -> dict[str, int]:
    return {str(key): int(i) for key, i in store.query(f"SELECT key, id FROM {table}")}


def test_a_journaled_key_answer_is_stored_under_the_journal_row_id(store: Store) -> None:
    store.add_requests("openai", [_request(f"k{i}") for i in range(5)])
    store.put_results("openai", [_result(f"k{i}") for i in (4, 1, 3)])
    journal, cache = _ids(store, "requests"), _ids(store, "results")
    assert {k: journal[k] for k in cache} == cache
    # The journal's rows were appended in key order, one id after the other.
    assert sorted(journal.values()) == [journal[f"k{i}"] for i in range(5)]
    assert store.answered_in_shard("openai", "none") == set()


def test_an_answer_stored_first_gives_its_id_to_the_journal_row_that_follows(
    store: Store,
) -> None:
    store.put_results("openai", [_result("a"), _result("b")])
    store.add_requests("openai", [_request("b"), _request("c")])
    journal, cache = _ids(store, "requests"), _ids(store, "results")
    assert journal["b"] == cache["b"]
    assert journal["c"] not in cache.values()


def test_the_same_key_at_two_providers_has_two_ids(store: Store) -> None:
    store.put_results("openai", [_result("k", text="o")])
    store.put_results("anthropic", [_result("k", text="a")])
    assert len({i for (i,) in store.query("SELECT id FROM results")}) == 2
    assert store.get_result("openai", "k").text == "o"  # type: ignore[union-attr]
    assert store.get_result("anthropic", "k").text == "a"  # type: ignore[union-attr]


def test_an_id_is_never_given_twice_even_after_its_answer_was_retired(store: Store) -> None:
    store.put_results("openai", [_result("old", text="stale")])
    (old_id,) = _ids(store, "results").values()
    assert store.retire_result("openai", "old", text="stale", reason="no longer fits")
    assert store.query("SELECT COUNT(*) FROM results") == [(0,)]
    # The newest id has no row left under it; a new key still takes a new one.
    store.put_results("openai", [_result("new", text="n")])
    assert _ids(store, "results")["new"] != old_id
    store.put_results("openai", [_result("old", text="fresh")])
    assert _ids(store, "results")["old"] == old_id
    assert store.get_result("openai", "old").text == "fresh"  # type: ignore[union-attr]
    assert store.get_result("openai", "new").text == "n"  # type: ignore[union-attr]
    assert store.has_results("openai")


def test_a_key_journaled_twice_in_one_write_takes_one_row(store: Store) -> None:
    assert store.add_requests("openai", [_request("d"), _request("e"), _request("d")]) == 2
    assert store.add_requests("openai", [_request("e"), _request("f"), _request("f")]) == 1
    assert sorted(_ids(store, "requests")) == ["d", "e", "f"]
    keys = store.query("SELECT key, id FROM keys ORDER BY id")
    assert [k for k, _ in keys] == [key_cell(k) for k in ("d", "e", "f")]


def test_answers_said_to_be_journaled_are_stored_even_when_a_key_is_new(store: Store) -> None:
    store.add_requests("openai", [_request("j")])
    assert store.put_results("openai", [_result("j"), _result("n")], journaled=True) == 2
    # The first stored answer wins, hint or not.
    assert store.put_results("openai", [_result("j", text="late")], journaled=True) == 0
    assert store.put_results("openai", [_result("n", text="late")]) == 0
    assert store.get_result("openai", "j").text == '{"a": 1}'  # type: ignore[union-attr]
    journal, cache = _ids(store, "requests"), _ids(store, "results")
    assert cache["j"] == journal["j"] and cache["n"] != journal["j"]
