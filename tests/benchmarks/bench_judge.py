"""Judging a batch's answers: client CPU per answer of ``judge_items``, by the shape asked for.

One chunk of N answers that fit, as a batch's result lines bring them
(``lb-`` keys, one shared usage, the price looked up per answer), judged by
:func:`plugins.batch.answers.judge_items` for requests with a raw JSON
schema (what ``lexibatch run`` sends: a request file's schema in the strict
form), with a response model (what the library sends) and without a
schema. Beside them, the general way the same raw-schema answers take one
by one: :func:`plugins.results.build_response` and the storable check.
Each figure is the median CPU time of ``--repeat`` passes (7 by default),
the collector off while timed, as it is while a chunk is judged.
"""

from __future__ import annotations

import gc
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from plugins.batch.executor import RESULT_CHUNK
from tests.benchmarks.common import Entry, Row, finish, parser, size


def _answers(n: int, shape: Any) -> tuple[list[Any], dict[str, Any]]:
    from plugins.batch.promise import BatchPromise, BatchRequest
    from providers.types import Completion, ItemResult, Usage

    usage = Usage(120, 14)
    model = shape if isinstance(shape, type) else None
    schema = None if isinstance(shape, type) else shape
    items, waiting = [], {}
    for i in range(n):
        key = "lb-" + hashlib.sha256(b"%d" % i).hexdigest()[:48]
        text = f'{{"word": "word {i}", "level": "B1"}}' if shape is not None else f"word {i}"
        completion = Completion(text, usage, "gpt-4o-mini-2024-07-18", f"req-{i}", "stop")
        items.append(ItemResult(key, completion=completion))
        waiting[key] = BatchRequest(key, "gpt-4o-mini", "bench", model, schema, BatchPromise(key))
    return items, waiting


def _costs() -> Callable[..., tuple[float | None, float | None]]:
    remembered: dict[Any, tuple[float | None, float | None]] = {}

    def costs(model: str, usage: Any, mode: str) -> tuple[float | None, float | None]:
        # As the pricer does: the costs of a shared usage, remembered.
        hit = remembered.get(usage)
        if hit is None:
            hit = remembered[usage] = (0.000011, 0.000022)
        return hit

    return costs


def _judged(items: list[Any], waiting: dict[str, Any]) -> int:
    from plugins.batch.answers import judge_items

    judged = judge_items(
        items,
        waiting=waiting,
        stubs={},
        done=set(),
        billed=set(),
        costs=_costs(),
        provider="openai",
        batch_id="batch_bench",
        now=time.time(),
        cancelled=lambda error: error,
    )
    assert not judged.failed, judged.failed[:1]
    return len(judged.succeeded)


def _one_by_one(items: list[Any], waiting: dict[str, Any]) -> int:
    from plugins.results import build_response, storable

    answered = 0
    for item in items:
        response = build_response(
            waiting[item.custom_id],
            item.completion,
            provider="openai",
            mode="batch",
            cost_usd=0.000011,
            batch_id="batch_bench",
        )
        storable(response.text)
        answered += 1
    return answered


def _cpu_per_answer(
    run: Callable[[list[Any], dict[str, Any]], int], shape: Any, n: int, repeat: int
) -> float:
    timings = []
    for _ in range(repeat):
        items, waiting = _answers(n, shape)
        gc.collect()
        gc.disable()
        try:
            start = time.process_time()
            assert run(items, waiting) == n
            timings.append((time.process_time() - start) / n * 1e6)
        finally:
            gc.enable()
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> None:
    """Time each shape's judging and print the table."""
    from providers.schema import make_strict

    p = parser(__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=7, help="passes per figure (median reported)")
    args = p.parse_args(argv)
    n = size(args, RESULT_CHUNK, 10_000, 500)
    repeat = max(1, args.repeat)
    schema = make_strict(Entry.model_json_schema())
    print(f"judging answers: one chunk of {n:,} answers, median of {repeat} passes")
    # The first pass of each warms what is compiled once (validators, checkers).
    figures = {
        "raw schema (judge_items)": _cpu_per_answer(_judged, schema, n, repeat),
        "response model (judge_items)": _cpu_per_answer(_judged, Entry, n, repeat),
        "text (judge_items)": _cpu_per_answer(_judged, None, n, repeat),
        "raw schema, one by one (build_response)": _cpu_per_answer(_one_by_one, schema, n, repeat),
    }
    for name, us in figures.items():
        print(f"  {name}: {us:.2f} us per answer")
    rows = [Row(name, us, "us", "-", None) for name, us in figures.items()]
    finish("judging answers", rows, args.report)


if __name__ == "__main__":
    sys.exit(main())
