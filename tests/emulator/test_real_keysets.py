"""The key sets written out in test_emu_wire.py still match real recorded traffic.

Real recordings of the OpenAI and Anthropic APIs are kept beside the
repository (``../shared/real-cassettes``, or ``LEXIBATCH_REAL_CASSETTES``);
they are reference data, never part of the project. When they are there,
every object in them is checked against the key sets the emulator is held
to, so a field the real APIs add or drop shows up here first. Without them
the module is skipped.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from test_emu_wire import (
    REAL_CACHE_CREATION,
    REAL_CHAT,
    REAL_CHAT_USAGE,
    REAL_MESSAGE_BATCH,
    REAL_MESSAGE_BATCH_COUNTS,
    REAL_MESSAGE_NEWEST,
    REAL_MESSAGE_USAGE_NEWEST,
    REAL_OPENAI_BATCH,
    REAL_OPENAI_BATCH_NEWEST,
    REAL_OPENAI_COUNTS,
    REAL_OPENAI_FILE,
    REAL_OUTPUT_LINE,
    REAL_OUTPUT_RESPONSE,
    REAL_RESULT_LINE,
)

from providers.anthropic import item_result_from_line
from providers.openai import parse_result_line


def _root() -> Path | None:
    named = os.environ.get("LEXIBATCH_REAL_CASSETTES")
    here = Path(__file__).resolve().parents[2]
    candidates = [Path(named)] if named else []
    candidates += [p / "shared" / "real-cassettes" for p in (here.parent, here.parent.parent)]
    return next((c for c in candidates if (c / "openai-batch").is_dir()), None)


ROOT = _root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="no real recordings beside the repository")

Interaction = tuple[str, str, dict[str, Any], Any]


def _interactions(folder: str) -> Iterator[Interaction]:
    """``(method, uri, lower-cased headers, body)`` of each recorded answer in ``folder``."""
    assert ROOT is not None
    for path in sorted((ROOT / folder).glob("*.yaml")):
        for item in yaml.safe_load(path.read_text())["interactions"]:
            response = item["response"]
            headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
            body: Any = response.get("parsed_body")
            if body is None:
                raw = (response.get("body") or {}).get("string", "")
                if isinstance(raw, bytes):
                    with contextlib.suppress(OSError):
                        raw = gzip.decompress(raw)
                    raw = raw.decode()
                body = raw
            yield item["request"]["method"], item["request"]["uri"], headers, body


def _json(body: Any) -> Any:
    if not isinstance(body, str):
        return body
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def test_openai_batch_objects_files_and_lines() -> None:
    statuses: list[tuple[str, str]] = []
    lines = 0
    for _method, uri, headers, body in _interactions("openai-batch"):
        obj = _json(body)
        if isinstance(obj, dict) and obj.get("object") == "batch":
            assert REAL_OPENAI_BATCH <= set(obj) <= REAL_OPENAI_BATCH_NEWEST
            assert set(obj["request_counts"]) == REAL_OPENAI_COUNTS
            statuses.append((obj["id"], obj["status"]))
        elif isinstance(obj, dict) and obj.get("object") == "file":
            assert set(obj) <= REAL_OPENAI_FILE
        elif uri.endswith("/content"):
            assert headers["content-disposition"][0].startswith('attachment; filename="')
            for raw in str(body).splitlines():
                line = orjson.loads(raw)
                assert set(line) == REAL_OUTPUT_LINE
                assert set(line["response"]) == REAL_OUTPUT_RESPONSE
                assert re.fullmatch(r"[0-9a-f]{32}", line["response"]["request_id"])
                assert set(line["response"]["body"]) == REAL_CHAT
                assert set(line["response"]["body"]["usage"]) == REAL_CHAT_USAGE
                item = parse_result_line(raw)
                assert item.completion is not None and item.completion.content
                lines += 1
    assert lines > 0
    # Not every batch is seen finalizing: some go from in_progress straight to completed.
    by_batch: dict[str, list[str]] = {}
    for batch_id, status in statuses:
        seen = by_batch.setdefault(batch_id, [])
        if not seen or seen[-1] != status:
            seen.append(status)
    assert any("finalizing" not in seen and seen[-1] == "completed" for seen in by_batch.values())


def test_anthropic_batches_messages_and_headers() -> None:
    results = 0
    waits: list[str] = []
    for method, uri, headers, body in _interactions("anthropic-batch"):
        obj = _json(body)
        if isinstance(obj, dict) and obj.get("type") == "message_batch":
            assert set(obj) == REAL_MESSAGE_BATCH
            assert set(obj["request_counts"]) == REAL_MESSAGE_BATCH_COUNTS
            if obj["processing_status"] == "in_progress" and method == "GET":
                waits.extend(headers.get("retry-after", []))
            if obj["results_url"]:
                # Absolute: lexibatch keeps only its path (see results_path).
                assert obj["results_url"].startswith("https://api.anthropic.com/v1/")
        elif uri.endswith("/results"):
            assert headers["content-disposition"][0].startswith("attachment; filename")
            for raw in str(body).splitlines():
                line = orjson.loads(raw)
                assert set(line) == REAL_RESULT_LINE
                message = line["result"]["message"]
                assert set(message) <= REAL_MESSAGE_NEWEST
                assert set(message["usage"]) <= REAL_MESSAGE_USAGE_NEWEST
                item = item_result_from_line(raw)
                assert item.completion is not None and item.completion.content
                results += 1
    assert results > 0
    # Every poll of a batch in progress said when to ask again.
    assert waits and all(float(w) > 0 for w in waits)


def test_structured_output_answers() -> None:
    for _method, uri, _headers, body in _interactions("structured"):
        obj = _json(body)
        if not isinstance(obj, dict):
            continue
        if "anthropic" in uri:
            assert set(obj) <= REAL_MESSAGE_NEWEST
            assert set(obj["usage"]) <= REAL_MESSAGE_USAGE_NEWEST
            assert set(obj["usage"]["cache_creation"]) == REAL_CACHE_CREATION
        else:
            assert set(obj) == REAL_CHAT
