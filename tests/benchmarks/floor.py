"""bench_batch's floor: orjson and pydantic alone, the journal alone, the bare pipeline.

Each is measured on the same requests and result lines as the path it is
compared with (see :mod:`tests.benchmarks.bench_batch`), in the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.benchmarks.common import EmulatorProcess, Entry, clock, prompt, settings


def _result_lines(emu: EmulatorProcess, batch_ids: list[str]) -> list[bytes]:
    lines: list[bytes] = []
    headers = {"Authorization": "Bearer sk-bench-dummy"}
    with httpx.Client(base_url=emu.url + "/v1", headers=headers, timeout=600) as client:
        for batch_id in batch_ids:
            batch = client.get(f"/batches/{batch_id}").json()
            content = client.get(f"/files/{batch['output_file_id']}/content").content
            lines.extend(line for line in content.split(b"\n") if line.strip())
    return lines


def measure_floor(emu: EmulatorProcess, n: int, work: Path, batch_ids: list[str]) -> dict[str, Any]:
    """orjson and pydantic alone on the same request bodies, result lines and answers."""
    from plugins.factory import open_connector

    connector = open_connector(settings(emu.url, work / "floor.db"))
    try:
        provider = connector.provider
        url = "/v1/chat/completions"
        lines_in = []
        requests = []
        for i in range(n):
            request = connector.build_request(prompt(i), Entry, task="bench")
            body = provider.body(request)
            lines_in.append({"custom_id": request.key, "method": "POST", "url": url, "body": body})
            requests.append(request)
    finally:
        asyncio.run(connector.aclose())
    lines_out = _result_lines(emu, batch_ids)
    assert len(lines_out) == n, (len(lines_out), n)
    dumps, loads, validate = orjson.dumps, orjson.loads, Entry.model_validate_json
    with clock() as t_dump:
        for line in lines_in:
            dumps(line)
    with clock() as t_load:
        for line in lines_out:
            loads(line)
    contents = [
        loads(line)["response"]["body"]["choices"][0]["message"]["content"] for line in lines_out
    ]
    with clock() as t_validate:
        for content in contents:
            validate(content)
    journal = measure_journal(requests, contents, work / "journal.db")
    bare = measure_bare(requests, lines_out, work)
    return {
        "dumps": t_dump.cpu,
        "loads": t_load.cpu,
        "validate": t_validate.cpu,
        "journal": journal,
        "bare": bare,
    }


@contextlib.contextmanager
def _gc_held() -> Iterator[None]:
    from plugins.batch.gcpause import GcHold

    GcHold.hold()
    try:
        yield
    finally:
        GcHold.release()


def measure_bare(requests: list[Any], lines_out: list[bytes], work: Path) -> float:
    """CPU of the least an asyncio batch client does per request, in Python.

    From each request's model and messages: the chat body (its strict
    response format built once), its canonical serialization and hash (the
    ``custom_id``), the batch line serialized and written to a file, a
    future kept by key. From each result line: parse, look the future up,
    validate the answer, resolve the future. No request or response
    objects, no journal, cache or ledger, no costs, no HTTP and no
    event-loop turns: a bound from below on any Python client that resolves
    an ``await`` per request. The collector is held off, as our path holds
    it while it queues requests and stores results.
    """
    from providers.schema import schema_for

    loop = asyncio.new_event_loop()
    dumps, loads, validate = orjson.dumps, orjson.loads, Entry.model_validate_json
    sort_keys = orjson.OPT_SORT_KEYS
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "Entry", "schema": schema_for(Entry), "strict": True},
    }
    inputs = [(r.model, [m.to_dict() for m in r.messages]) for r in requests]
    futures: dict[str, asyncio.Future[Any]] = {}
    with _gc_held(), clock() as built, (work / "bare.jsonl").open("wb") as spool:
        for model, messages in inputs:
            body = {"model": model, "messages": messages, "response_format": response_format}
            key = "lb-" + hashlib.sha256(dumps(body, option=sort_keys)).hexdigest()[:48]
            line = {"custom_id": key, "method": "POST", "url": "/v1/chat/completions"}
            line["body"] = body
            spool.write(dumps(line) + b"\n")
            futures[key] = loop.create_future()
    # The emulator's result lines carry our path's keys: map them onto the same futures.
    pending = dict(zip((r.key for r in requests), futures.values(), strict=True))
    with _gc_held(), clock() as finished:
        for line in lines_out:
            item = loads(line)
            content = item["response"]["body"]["choices"][0]["message"]["content"]
            pending[item["custom_id"]].set_result(validate(content))
    loop.close()
    return built.cpu + finished.cpu


def measure_journal(requests: list[Any], contents: list[str], db: Path) -> float:
    """CPU of the store's writes alone for the same requests: the price of durability.

    The rows our batch path writes, prebuilt, through the same ``Store``
    calls in the same groups: the response schema stored once, requests
    journaled as queued in the strategy's groups (``JOURNAL_CHUNK`` rows or
    ``JOURNAL_CHUNK_BYTES`` of bodies a commit), each shard of 50,000
    journaled and its requests marked submitted, then results and ledger rows
    in the collector's chunks (``RESULT_CHUNK`` a transaction) and the
    shard's requests marked succeeded. Nothing else: no encoding, parsing,
    validation, futures or HTTP.
    """
    from plugins.batch.executor import RESULT_CHUNK
    from plugins.batch.journal import encode_request, schema_ref
    from plugins.batch.strategy import JOURNAL_CHUNK, JOURNAL_CHUNK_BYTES
    from plugins.store import CallRecord, JournalRequest, Shard, Store, StoredResult
    from providers.types import Usage

    usage = Usage(56, 12)
    ref, schema = schema_ref(requests[0].schema_name, requests[0].json_schema)
    journal_rows = [
        JournalRequest(
            r.key, r.model, r.task, encode_request(r, ref), "queued", f"s{i // 50_000}", 0
        )
        for i, r in enumerate(requests)
    ]
    results = [
        StoredResult(r.key, r.model, r.task, "batch", text, usage, 1e-5, None, "batch_b")
        for r, text in zip(requests, contents, strict=True)
    ]
    calls = [
        CallRecord("openai", r.model, r.task, "batch", r.key, usage, 1e-5, 2e-5, "batch_b", 0.0)
        for r in requests
    ]
    # The strategy's journal groups: a commit per JOURNAL_CHUNK rows or
    # JOURNAL_CHUNK_BYTES of bodies, within each shard of 50,000.
    groups: list[list[JournalRequest]] = []
    for start in range(0, len(requests), 50_000):
        shard_groups: list[list[JournalRequest]] = [[]]
        held = 0
        for row in journal_rows[start : start + 50_000]:
            shard_groups[-1].append(row)
            held += len(row.body)
            if len(shard_groups[-1]) >= JOURNAL_CHUNK or held >= JOURNAL_CHUNK_BYTES:
                shard_groups.append([])
                held = 0
        groups.append([group for group in shard_groups if group])
    store = Store(db)
    try:
        with clock() as took:
            store.add_schemas({ref: schema})
            for start in range(0, len(requests), 50_000):
                shard_id = f"s{start // 50_000}"
                end = min(start + 50_000, len(requests))
                for group in groups[start // 50_000]:
                    store.queue_requests("openai", group)
                with store.in_transaction():
                    shard = Shard(shard_id, "openai", "gpt-4o-mini", requests=end - start)
                    store.add_shard(shard)
                    store.submit_shard_requests("openai", shard_id)
            for start in range(0, len(requests), 50_000):
                end = min(start + 50_000, len(requests))
                for part in range(start, end, RESULT_CHUNK):
                    stop = min(part + RESULT_CHUNK, end)
                    with store.in_transaction():
                        store.record_calls(calls[part:stop])
                        store.put_results("openai", results[part:stop], journaled=True)
                store.mark_shard_succeeded("openai", f"s{start // 50_000}", check_results=False)
    finally:
        store.close()
    return took.cpu
