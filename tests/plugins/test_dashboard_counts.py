"""The dashboard's counts, taken by task from events that come by the thousand, are those of
counting each request one by one."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from plugins.dashboard import RunState, StageCount
from plugins.requestevents import RequestOutcome
from providers.errors import ProviderError
from providers.money import to_decimal
from providers.types import Message, Request, Response, Usage

TASKS = [None, "define", "enhance", "cluster", "synthesize"]


def _stage_of(task: str | None) -> str:
    # Two tasks share a stage; untagged requests have their own.
    return {"define": "words", "enhance": "words", "cluster": "cluster"}.get(task or "", "other")


class OneByOne:
    """What the counts were when each request was counted on its own, in order."""

    def __init__(self) -> None:
        self.stages: dict[str, StageCount] = {}
        self.spent = Decimal(0)
        self.unpriced = 0

    def _stage(self, task: str | None) -> StageCount:
        return self.stages.setdefault(_stage_of(task), StageCount())

    def started(self, request: Request) -> None:
        self._stage(request.task).started += 1

    def finished(self, outcome: RequestOutcome) -> None:
        request, response, _error = outcome
        count = self._stage(request.task)
        if count.started <= count.finished:
            count.started += 1
        if response is None:
            count.failed += 1
            return
        count.succeeded += 1
        if response.cached:
            count.cached += 1
        elif response.cost_usd is None:
            self.unpriced += 1
        else:
            self.spent += to_decimal(response.cost_usd)


def _outcome(rnd: random.Random, request: Request) -> RequestOutcome:
    kind = rnd.random()
    if kind < 0.15:
        return RequestOutcome(request, None, ProviderError("refused"))
    cost = None if kind < 0.25 else rnd.choice([0.0001, 0.00025, 0.0035])
    response = Response(
        None, "{}", Usage(10, 2), cost, "openai", request.model, "batch", request.key,
        cached=0.25 <= kind < 0.4,
    )  # fmt: skip
    return RequestOutcome(request, response, None)


@pytest.mark.parametrize("seed", range(8))
def test_counts_by_task_are_counts_one_by_one(seed: int) -> None:
    rnd = random.Random(seed)
    state = RunState("run", stage_of=_stage_of, batch_mode=True)
    expected = OneByOne()
    requests = [
        Request("gpt-4o-mini", (Message("user", f"q{i}"),), task=rnd.choice(TASKS))
        for i in range(3000)
    ]
    # Some requests end without having started while the observer listened
    # (they started before it was registered), and events come in groups.
    unseen = set(rnd.sample(range(len(requests)), 400))
    pending: list[Request] = []
    i = 0
    while i < len(requests) or pending:
        if i < len(requests) and (not pending or rnd.random() < 0.5):
            group = requests[i : i + rnd.randint(1, 300)]
            i += len(group)
            heard = [r for n, r in enumerate(group, i - len(group)) if n not in unseen]
            state.requests_started(heard)
            for request in heard:
                expected.started(request)
            pending.extend(group)
            rnd.shuffle(pending)
        else:
            k = rnd.randint(1, 500)
            ended, pending = pending[:k], pending[k:]
            outcomes = [_outcome(rnd, r) for r in ended]
            state.requests_finished(outcomes)
            for outcome in outcomes:
                expected.finished(outcome)
    assert state.stages == expected.stages
    assert list(state.stages) == list(expected.stages)
    assert (state.spent, state.unpriced) == (expected.spent, expected.unpriced)
    assert sum(c.finished for c in state.stages.values()) == len(requests)
