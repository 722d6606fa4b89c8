"""A kept re-ask is resumed only while it is out: once answered, or used up, a later run asks anew.

(The kill -9 while a re-ask is out is in ``tests/crash/test_kill9_reask.py``.)
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from plugins.factory import open_connector
from providers.errors import SchemaValidationError


class Entry(BaseModel):
    """An answer the emulator's ``@schema-invalid`` marker never fits."""

    word: str
    level: str


def _refusing_first() -> type[BaseModel]:
    """``Entry`` (the same JSON schema, so the same key) refusing the first answer it checks."""
    checked = [0]

    class Entry(BaseModel):
        word: str
        level: str

        @field_validator("level")
        @classmethod
        def _not_the_first(cls, value: str) -> str:
            checked[0] += 1
            if checked[0] == 1:
                raise ValueError("the first answer is not good enough")
            return value

    return Entry


def _refusing_all() -> type[BaseModel]:
    """``Entry`` with a validator no answer passes: the stored answer is retired."""

    class Entry(BaseModel):
        word: str
        level: str

        @field_validator("level")
        @classmethod
        def _never(cls, value: str) -> str:
            raise ValueError("no level is good enough now")

    return Entry


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Each request the OpenAI adapter sends."""
    from providers.openai import OpenAIProvider

    requests: list[Any] = []
    original = OpenAIProvider.complete

    async def complete(self: Any, request: Any) -> Any:
        requests.append(request)
        return await original(self, request)

    monkeypatch.setattr(OpenAIProvider, "complete", complete)
    return requests


async def test_a_reask_answered_is_not_resumed_when_the_request_is_asked_again(
    fresh_emulator: Any, make_settings: Any, sent: list[Any]
) -> None:
    settings = make_settings(fresh_emulator)
    first = open_connector(settings)
    try:
        model = _refusing_first()
        assert isinstance(await first.structured("a prompt", model, task="t"), model)
    finally:
        await first.aclose()
    assert [len(r.messages) for r in sent] == [1, 3]  # the misfit answer, its re-ask
    sent.clear()
    # The response model gained a validator: the stored answer is retired and asked anew,
    # from the first question (not run 1's re-ask, which its answer ended).
    second = open_connector(settings)
    try:
        with pytest.raises(SchemaValidationError):
            await second.structured("a prompt", _refusing_all(), task="t")
    finally:
        await second.aclose()
    assert [len(r.messages) for r in sent] == [1, 3]


async def test_a_reask_used_up_is_not_resumed_by_the_next_run(
    fresh_emulator: Any, make_settings: Any, sent: list[Any]
) -> None:
    settings = make_settings(fresh_emulator)
    for _ in range(2):
        connector = open_connector(settings)
        try:
            with pytest.raises(SchemaValidationError):
                await connector.structured("b prompt", Entry, model="gpt-4o-mini@schema-invalid")
        finally:
            await connector.aclose()
        # Each run: the first question and its one re-ask, both misfits, both paid.
        assert [len(r.messages) for r in sent] == [1, 3]
        sent.clear()
    assert fresh_emulator.billing()["immediate"]["requests"] == 4


async def test_a_kept_reask_is_looked_for_once_the_request_is_claimed_and_resumed(
    fresh_emulator: Any, make_settings: Any, sent: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins.reasks import reask_rows
    from plugins.store import Store
    from providers.types import Completion, Message, Usage

    connector = open_connector(make_settings(fresh_emulator))
    try:
        request = connector.build_request("c prompt", Entry, task="t")
        misfit = Completion(content='{"word": "c"}', usage=Usage(5, 3), model="gpt-4o-mini")
        reask = request.with_messages(
            [*request.messages, Message("assistant", misfit.content), Message("user", "again")]
        )
        # Another process kept a re-ask of it, then stopped: its claim is gone.
        records, kept, state = reask_rows(connector._context, request, [misfit], reask, 1)
        connector.store.record_calls(records)
        connector.store.keep_reasked("openai", kept, state=state)
        claimed: list[bool] = []
        real = Store.pending_reask

        def pending_reask(self: Store, provider: str, key: str) -> str | None:
            # Looked for under the claim only: no process can keep one after the look.
            claimed.append(connector._immediate._claims.holds(key))  # type: ignore[attr-defined]
            return real(self, provider, key)

        monkeypatch.setattr(Store, "pending_reask", pending_reask)
        answer = await connector.structured("c prompt", Entry, task="t")
        assert isinstance(answer, Entry) and claimed == [True]
        # Answered: the kept re-ask is spent, and a plain request looks once.
        assert real(connector.store, "openai", request.key) is None
        await connector.structured("d prompt", Entry, task="t")
        assert claimed == [True, True]
    finally:
        await connector.aclose()
    # The re-ask is sent, not the first question.
    assert [len(r.messages) for r in sent] == [3, 1]
    assert sent[0].messages[-1].content == "again"


async def test_a_kept_reask_that_cannot_be_resumed_is_asked_anew_and_then_spent(
    fresh_emulator: Any, make_settings: Any, sent: list[Any]
) -> None:
    from plugins.store import StoredResult
    from providers.types import Usage

    connector = open_connector(make_settings(fresh_emulator))
    try:
        request = connector.build_request("e prompt", Entry, task="t")
        misfit = StoredResult(
            request.key, "gpt-4o-mini", "t", "immediate", '{"word": "e"}', Usage(5, 3), 0.1
        )
        # Attempt 9 of a request allowed one re-ask: kept by a run with other settings.
        connector.store.keep_reasked(
            "openai", misfit, state='{"attempt": 9, "added": [], "max_tokens": null}'
        )
        assert isinstance(await connector.structured("e prompt", Entry, task="t"), Entry)
        # Asked from the first question; answered, the kept state ends with it.
        assert [len(r.messages) for r in sent] == [1]
        assert connector.store.pending_reask("openai", request.key) is None
    finally:
        await connector.aclose()
