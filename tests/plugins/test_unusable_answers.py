"""An answer that cannot be validated or stored fails its own request, never its batch.

Requests with a broken schema are refused up front now; these tests let one
reach the provider anyway (as a journal written by an earlier version, or a
caller's schema changed after it was checked), by turning the up-front check
off for the first run.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, field_validator

import plugins.connector
from plugins.factory import open_connector
from plugins.jobs import JobItem, run_requests
from providers.errors import InputError, UnusableAnswerError
from providers.types import Message, Request

GOOD = {"type": "object", "properties": {"answer": {"type": "string"}}}
# The typo: jsonschema raises UnknownType where answers are checked.
TYPO = {"type": "object", "properties": {"answer": {"type": "strin"}}}
# A pattern that is not a regex: re.error where answers are checked.
BAD_REGEX = {"type": "object", "properties": {"answer": {"type": "string", "pattern": "[a-"}}}


def _request(i: int, schema: dict[str, Any]) -> Request:
    return Request(
        model="gpt-4o-mini",
        messages=(Message("user", f"question {i}"),),
        json_schema=schema,
        schema_name="answer",
    )


def _unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let invalid requests through, as a version without the up-front check did."""
    monkeypatch.setattr(plugins.connector, "check_request", lambda request: None)


@pytest.mark.parametrize(
    ("provider", "broken", "error", "sent"),
    [
        ("openai", TYPO, UnusableAnswerError, 21),
        ("openai", BAD_REGEX, UnusableAnswerError, 21),
        ("anthropic", BAD_REGEX, UnusableAnswerError, 21),
        # Anthropic's SDK cannot even convert the typo: it is not sent at all.
        ("anthropic", TYPO, InputError, 20),
    ],
    ids=[
        "openai-unknown-type",
        "openai-bad-regex",
        "anthropic-bad-regex",
        "anthropic-unknown-type",
    ],
)
async def test_one_broken_schema_fails_alone_and_the_batch_is_stored(
    fresh_emulator: Any,
    make_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    broken: dict[str, Any],
    error: type[Exception],
    sent: int,
) -> None:
    model = {"connector": {"model": "claude-haiku-4-5"}} if provider == "anthropic" else {}
    settings = make_settings(fresh_emulator, provider=provider, **model)
    good = [_request(i, GOOD) for i in range(20)]
    if provider == "anthropic":
        good = [r.with_model("claude-haiku-4-5") for r in good]
    bad = _request(99, broken).with_model(good[0].model)
    with monkeypatch.context() as patch:
        _unchecked(patch)
        connector = open_connector(settings)
        try:
            connector.enable_batch_mode()
            tasks = [asyncio.ensure_future(connector.generate(r)) for r in [*good, bad]]
            await connector.execute_batch()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            store = connector.store
            assert all(not isinstance(o, BaseException) for o in outcomes[:20]), outcomes
            assert isinstance(outcomes[20], error), outcomes[20]
            assert store.count_results(provider) == 20
            assert [s.state for s in store.shards()] == ["collected"]
            answered = store.count_requests(provider)
            assert answered == ({"succeeded": 20, "failed": 1} if sent == 21 else {"succeeded": 20})
        finally:
            await connector.aclose()
    billed = fresh_emulator.billing()
    assert billed["batch"]["requests"] == sent and billed["duplicates"] == 0

    # The same requests again, with the check on: the 20 answers come from the
    # store, the broken one is refused before it is sent; nothing more is paid.
    again = open_connector(settings)
    try:
        again.enable_batch_mode()
        answers = await asyncio.gather(*(again.generate(r) for r in good))
        assert all(a.cached for a in answers)
        with pytest.raises(InputError, match="schema"):
            await again.generate(bad)
        await again.execute_batch()
    finally:
        await again.aclose()
    assert fresh_emulator.billing() == billed


async def test_a_collected_shard_of_an_earlier_run_with_a_broken_schema_resumes(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch made by an earlier run is collected by a later one, rebuilt from the journal."""
    settings = make_settings(fresh_emulator)
    good = [_request(i, GOOD) for i in range(5)]
    bad = _request(99, TYPO)
    with monkeypatch.context() as patch:
        _unchecked(patch)
        first = open_connector(settings)
        first.enable_batch_mode()
        tasks = [asyncio.ensure_future(first.generate(r)) for r in [*good, bad]]
        for _ in range(200):
            await asyncio.sleep(0.02)
            if [s.state for s in first.store.shards()] == ["created"]:
                break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await first.aclose()  # the run stops with its batch made, not collected

    later = open_connector(settings)
    try:
        await later.batch_strategy().resume()  # type: ignore[attr-defined]
        assert later.store.count_results("openai") == 5
        assert later.store.count_requests("openai") == {"succeeded": 5, "failed": 1}
        failed = later.store.get_requests("openai", [bad.key])[bad.key]
        assert failed.error is not None and failed.error["type"] == "UnusableAnswerError"
        assert [s.state for s in later.store.shards()] == ["collected"]
    finally:
        await later.aclose()
    assert fresh_emulator.billing()["batch"]["requests"] == 6


class Crashy(BaseModel):
    """A response model whose validator raises what pydantic does not wrap."""

    word: str
    level: str

    @field_validator("word")
    @classmethod
    def _lookup(cls, value: str) -> str:
        raise KeyError(value)  # a bug in the caller's validator


async def test_a_crashing_validator_fails_its_request_in_both_modes(
    fresh_emulator: Any, make_settings: Any
) -> None:
    connector = open_connector(make_settings(fresh_emulator))
    try:
        with pytest.raises(UnusableAnswerError, match="KeyError"):
            await connector.structured("one word", Crashy, task="t")
        connector.enable_batch_mode()
        outcomes = await asyncio.gather(
            *(connector.structured(f"w{i}", Crashy, task="t") for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(o, UnusableAnswerError) for o in outcomes), outcomes
        assert [s.state for s in connector.store.shards()] == ["collected"]
    finally:
        await connector.aclose()


async def test_immediate_run_with_a_broken_schema_writes_every_result_line(
    fresh_emulator: Any, make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _unchecked(monkeypatch)
    items = [JobItem(f"q{i}", _request(i, GOOD), i + 1) for i in range(20)]
    items.insert(7, JobItem("broken", _request(99, TYPO), 8))
    connector = open_connector(make_settings(fresh_emulator))
    out = tmp_path / "out.jsonl"
    try:
        summary = await run_requests(connector, items, out)
        # The broken one was paid for: the ledger has it, as it has the others.
        assert sum(row.requests for row in connector.store.cost_report()) == 21
    finally:
        await connector.aclose()
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert [line["id"] for line in lines] == [i.id for i in items]
    assert (summary.succeeded, summary.failed) == (20, 1)
    broken = lines[7]
    assert broken["status"] == "failed" and broken["error"]["type"] == "UnusableAnswerError"
    assert broken["error"]["retryable"] is False
    # Asked once: a broken schema is not re-asked (it would fail, and be paid, again).
    assert fresh_emulator.billing()["immediate"]["requests"] == 21
