"""The result lines of ``lexibatch run``: each answer's own usage and price, the exact total."""

from __future__ import annotations

from decimal import Decimal

import orjson

from plugins.jobs import _REMEMBERED, JobItem, JobSummary, _ResultLines
from providers.errors import RateLimitError
from providers.money import usd_sum
from providers.types import Message, Request, Response, Usage


def _item(i: int) -> JobItem:
    return JobItem(f"q{i}", Request(model="gpt-4o-mini", messages=(Message("user", f"q {i}"),)))


def _answer(i: int, usage: Usage, cost: float | None) -> Response:
    return Response(
        output={"answer": f"a{i}"},
        text="",
        usage=usage,
        cost_usd=cost,
        provider="openai",
        model="gpt-4o-mini",
        mode="batch",
        key=f"lb-{i}",
        batch_id="batch_1",
        cached=i % 5 == 0,
    )


def _expected(item: JobItem, answer: Response) -> bytes:
    return orjson.dumps(
        {
            "id": item.id,
            "key": item.request.key,
            "status": "succeeded",
            "output": answer.output,
            "usage": answer.usage.to_dict(),
            "cost_usd": answer.cost_usd,
            "mode": answer.mode,
            "model": answer.model,
            "batch_id": answer.batch_id,
            "cached": answer.cached,
        }
    )


def test_shared_and_distinct_usages_and_prices_each_write_their_own_values() -> None:
    shared = Usage(20, 10)
    n = 2 * _REMEMBERED + 7  # past the memory of usages and prices, twice
    items = [_item(i) for i in range(n)]
    answers = [
        _answer(
            i,
            shared if i % 2 else Usage(20 + i, 10, cache_creation_1h_tokens=i % 3),
            None if i % 11 == 0 else (0.00001 * (i % 700) + 1e-7),
        )
        for i in range(n)
    ]
    lines = _ResultLines(JobSummary(total=n))
    written = [orjson.dumps(lines.line(item, a)) for item, a in zip(items, answers, strict=True)]
    assert written == [_expected(item, a) for item, a in zip(items, answers, strict=True)]
    summary = lines.summary
    assert summary.cost_usd == usd_sum(a.cost_usd for a in answers)
    assert isinstance(summary.cost_usd, Decimal)
    assert summary.unpriced == sum(a.cost_usd is None for a in answers)
    assert (summary.succeeded, summary.failed) == (n, 0)
    assert summary.cached == sum(a.cached for a in answers)


def test_a_failed_request_is_a_line_of_its_error_and_counted_apart() -> None:
    lines = _ResultLines(JobSummary(total=2))
    ok = orjson.loads(orjson.dumps(lines.line(_item(1), _answer(1, Usage(3, 4), 0.5))))
    error = RateLimitError("slow down", provider="openai", status_code=429)
    failed = lines.line(_item(2), error)
    assert ok["usage"] == Usage(3, 4).to_dict() and ok["cost_usd"] == 0.5
    assert failed["status"] == "failed" and failed["error"] == error.to_dict()
    assert (lines.summary.succeeded, lines.summary.failed) == (1, 1)
    assert lines.summary.cost_usd == Decimal("0.5")
