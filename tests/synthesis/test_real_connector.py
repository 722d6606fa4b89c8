"""The pipeline on the real connector (provider, strategies, store) against the emulator.

The emulator answers deterministically, so the same request gets the same
answer in both modes and a run can be compared with another one word for word.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest

from synthesis.components import ALL_COMPONENTS
from synthesis.pipeline import STAGES

# GCIDE words whose synthesize answer from the emulator covers no meaning at all,
# so none of them is asked a second time (see test_a_second_synthesis_ask_adds_one_round).
WORDS = ["apple", "house", "water", "happy", "river", "salt"]
# One definition-level component of each price class, and one word-level one.
SOME = ("synonyms", "cefr_level", "pronunciation")
ALL = ALL_COMPONENTS


def _dumps(entries: list[Any]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in entries]


def _totals(rows: list[Any]) -> tuple[int, float, float]:
    return (
        sum(r.requests for r in rows),
        sum(r.cost_usd for r in rows),
        sum(r.immediate_cost_usd for r in rows),
    )


async def test_immediate_and_batch_give_the_same_entries_batch_at_half_the_price(
    real_pipeline: Any,
) -> None:
    immediate = await real_pipeline.run(WORDS, batch=False, components=ALL, db="immediate.db")
    batch = await real_pipeline.run(WORDS, batch=True, components=ALL, db="batch.db")

    # Entries carry no mode, timestamp or batch id: the whole entry must match.
    assert [e.word for e in batch] == WORDS
    assert _dumps(batch) == _dumps(immediate)
    assert all(e.definitions and e.pronunciation and e.etymology for e in batch)

    imm_rows = real_pipeline.ledger("immediate.db")
    batch_rows = real_pipeline.ledger("batch.db")
    assert {r.mode for r in imm_rows} == {"immediate"}
    assert {r.mode for r in batch_rows} == {"batch"}
    imm_requests, imm_cost, _ = _totals(imm_rows)
    batch_requests, batch_cost, batch_as_immediate = _totals(batch_rows)
    assert imm_requests == batch_requests > len(WORDS) * len(ALL)
    # The ledger's "what it would have cost immediately" is what the immediate run paid.
    assert batch_as_immediate == pytest.approx(imm_cost, rel=1e-9)
    assert batch_cost / imm_cost == pytest.approx(0.5, abs=0.02)
    billing = real_pipeline.emulator.billing()
    assert billing["immediate"]["requests"] == billing["batch"]["requests"] == imm_requests
    assert billing["duplicates"] == 0


async def test_batch_rounds_follow_the_stages_not_the_words(real_pipeline: Any) -> None:
    entries = await real_pipeline.run(WORDS, batch=True, components=SOME)
    assert [e.word for e in entries] == WORDS
    by_task = {r.task: r.requests for r in real_pipeline.ledger()}
    # Every word has several source definitions and no second synthesis ask:
    # exactly one cluster and one synthesize call each.
    assert by_task["cluster"] == by_task["synthesize"] == len(WORDS)

    rounds = real_pipeline.rounds()
    assert len(rounds) == len(STAGES)
    for held in rounds:
        assert set(held) == set(WORDS), held
    cluster_round, synthesize_round, enhance_round = rounds
    assert Counter(cluster_round) == {w: 2 for w in WORDS}  # cluster + pronunciation
    assert Counter(synthesize_round) == {w: 1 for w in WORDS}
    meanings = {e.word: len(e.definitions) for e in entries}
    assert Counter(enhance_round) == {w: 2 * n for w, n in meanings.items()}


async def test_a_second_synthesis_ask_adds_one_round(real_pipeline: Any) -> None:
    # For "band" the emulator's synthesize answer covers some meanings but not
    # all: the pipeline asks again for the rest, one round later.
    words = [*WORDS, "band"]
    await real_pipeline.run(words, batch=True, components=("synonyms",))
    by_task = {r.task: r.requests for r in real_pipeline.ledger()}
    assert by_task["synthesize"] == len(words) + 1
    rounds = real_pipeline.rounds()
    assert len(rounds) == len(STAGES) + 1
    assert all(len(set(held)) > 1 for held in rounds[:-1])


@pytest.mark.parametrize("batch", [False, True], ids=["immediate", "batch"])
async def test_a_rerun_costs_nothing(real_pipeline: Any, batch: bool) -> None:
    first = await real_pipeline.run(WORDS, batch=batch, components=SOME)
    ledger = real_pipeline.ledger()
    billing = real_pipeline.emulator.billing()
    shards = real_pipeline.rounds()

    again = await real_pipeline.run(WORDS, batch=batch, components=SOME)

    assert _dumps(again) == _dumps(first)
    assert real_pipeline.ledger() == ledger
    assert real_pipeline.emulator.billing() == billing
    assert real_pipeline.rounds() == shards


async def test_words_in_flight_are_capped_and_still_share_batches(
    real_pipeline: Any, gcide: Any
) -> None:
    cap = 3
    started: list[str] = []
    finished: list[str] = []
    peak = 0

    class Watched:
        def lookup(self, word: str) -> Any:
            nonlocal peak
            started.append(word)
            peak = max(peak, len(started) - len(finished))
            return gcide.lookup(word)

        def etymology(self, word: str) -> Any:
            return gcide.etymology(word)

    real_pipeline.sources = Watched()
    entries = await real_pipeline.run(
        WORDS,
        batch=True,
        components=("synonyms",),
        max_in_flight=cap,
        on_entry=lambda e: finished.append(e.word),
    )
    assert sorted(e.word for e in entries) == sorted(WORDS)
    assert peak == cap
    rounds = real_pipeline.rounds()
    # The words go through in groups of ``cap``: each round is shared by a group.
    assert len(rounds) <= math.ceil(len(WORDS) / cap) * len(STAGES)
    assert all(len(set(held)) > 1 for held in rounds)


def _recorders() -> list[str]:
    from plugins.manager import get_plugin_manager

    return [
        name
        for name, _ in get_plugin_manager().pm.list_name_plugin()
        if name and name.startswith("estimate-recorder")
    ]


def test_the_estimate_counts_the_calls_a_run_makes_and_leaves_nothing_behind(
    real_pipeline: Any,
) -> None:
    import asyncio

    from plugins.sandbox import sandbox_emulator
    from synthesis.cli.estimate import estimate_synthesis

    settings = real_pipeline.settings()
    sandbox_before = sandbox_emulator()
    est = estimate_synthesis(settings, WORDS, SOME, real_pipeline.sources)
    assert _recorders() == []
    assert sandbox_emulator() is sandbox_before  # one it started is stopped again
    assert not (real_pipeline.folder / "store.db").exists()

    asyncio.run(real_pipeline.run(WORDS, batch=False, components=SOME))
    requests, cost, _ = _totals(real_pipeline.ledger())
    assert est.requests == requests
    # Output tokens are guessed from the schemas, so the estimate errs on the high side.
    assert cost <= est.immediate_usd <= 2 * cost
    assert est.batch_usd == pytest.approx(est.immediate_usd / 2, rel=0.05)


def test_the_estimate_unregisters_its_recorder_when_the_dry_run_fails(
    real_pipeline: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import synthesis.pipeline
    from providers.errors import InputError
    from synthesis.cli.estimate import estimate_synthesis

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise InputError("no sources")

    monkeypatch.setattr(synthesis.pipeline, "synthesize_many", broken)
    with pytest.raises(InputError, match="no sources"):
        estimate_synthesis(real_pipeline.settings(), WORDS, SOME, real_pipeline.sources)
    assert _recorders() == []
