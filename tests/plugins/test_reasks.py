"""The re-ask kept for a stopped run: written, read back, and refused when it cannot be used."""

from __future__ import annotations

import pytest

from plugins.reasks import reask_state, resumed
from providers.types import Message, Request

REQUEST = Request("gpt-4o-mini", (Message("user", "Synonyms of swift"),), max_tokens=50)


def test_a_kept_reask_is_resumed_as_it_was_sent() -> None:
    reask = REQUEST.with_messages(
        [*REQUEST.messages, Message("assistant", "{}"), Message("user", "Answer again")]
    )
    state = reask_state(REQUEST, reask, 1)
    again, attempt = resumed(REQUEST, state, last_attempt=2)
    assert attempt == 1 and again == reask and again.key == reask.key
    # Cut at max_tokens: the same messages, a higher limit.
    longer = reask_state(REQUEST, Request("gpt-4o-mini", REQUEST.messages, max_tokens=100), 2)
    again, attempt = resumed(REQUEST, longer, last_attempt=2)
    assert attempt == 2 and again.messages == REQUEST.messages and again.max_tokens == 100


@pytest.mark.parametrize(
    "state",
    [
        None,
        "not json",
        '{"attempt": 1}',
        '{"attempt": "x", "added": [], "max_tokens": null}',
        '{"attempt": 3, "added": [], "max_tokens": null}',  # past the last attempt
        '{"attempt": 0, "added": [], "max_tokens": null}',
        '{"attempt": 1, "added": [], "max_tokens": "many"}',
    ],
)
def test_a_state_that_cannot_be_resumed_asks_from_the_start(state: str | None) -> None:
    assert resumed(REQUEST, state, last_attempt=2) == (REQUEST, 0)
