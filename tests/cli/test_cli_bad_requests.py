"""``lexibatch run`` with bad lines: each named as FILE:LINE, exit 2; malformed ones stop the file
before anything is sent, one too large for a batch fails alone and is never sent."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from tests.cli.test_cli import _lexibatch

GOOD = {"type": "object", "properties": {"answer": {"type": "string"}}}


def _write(path: Path, lines: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _store_rows(tmp_path: Path) -> tuple[int, int]:
    """(journaled requests, ledger rows) of the run's store; (0, 0) when it was never made."""
    db = tmp_path / ".lexibatch" / "lexibatch.db"
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db) as conn:
        requests = conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
        calls = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    return requests, calls


def test_every_bad_line_is_named_and_nothing_is_sent(tmp_path: Path) -> None:
    lines: list[dict[str, object]] = [
        {"prompt": "fine", "schema": GOOD},
        {"prompt": "typo", "schema": {"type": "object", "properties": {"a": {"type": "strin"}}}},
        {"prompt": "regex", "schema": {"type": "string", "pattern": "[a-"}},
        {"prompt": "fine too"},
        {"prompt": "x", "max_tokens": "ten"},
        {"prompt": "x", "max_tokens": -5},
        {"prompt": "x", "temperature": "hot"},
        {"prompt": "x", "model": 5},
        {"prompt": "x", "extras": [1]},
        {"prompt": "x", "messages": [{"role": "user", "content": "y"}]},
        {"messages": [{"role": "user", "content": "y", "name": "ann"}]},
        {"messages": [{"role": "user", "text": "y"}]},
    ]
    _write(tmp_path / "requests.jsonl", lines)
    for mode in ("immediate", "batch"):
        done = _lexibatch("run", "requests.jsonl", "--mode", mode, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        err = done.stderr.splitlines()
        assert all(line.startswith("lexibatch: error: ") for line in err), err
        expected = {
            2: "schema: properties/a/type: 'strin' is not a JSON Schema type",
            3: "schema: pattern: '[a-' is not a 'regex'",
            5: "max_tokens must be a positive integer, got 'ten'",
            6: "max_tokens must be a positive integer, got -5 (int)",
            7: "temperature must be a number from 0 to 2, got 'hot'",
            8: "model must be a non-empty string, got 5 (int)",
            9: "extras must be an object of provider body fields, got [1] (list)",
            10: "has both messages and prompt: give one (prompt is a single user message)",
            11: "messages[0]: unknown field(s) name; known: content, role",
            12: "messages[0]: unknown field(s) text; known: content, role",
        }
        for number, what in expected.items():
            assert any(f"requests.jsonl:{number}: {what}" in line for line in err), (number, err)
        assert not any("requests.jsonl:1:" in line or "requests.jsonl:4:" in line for line in err)
        assert err[-1].endswith(
            "requests.jsonl: 10 of 12 request lines are invalid; nothing was sent "
            "— fix them and run again"
        )
        assert not (tmp_path / "results.jsonl").exists()
        assert _store_rows(tmp_path) == (0, 0)


def test_many_bad_lines_are_reported_up_to_a_limit(tmp_path: Path) -> None:
    _write(tmp_path / "requests.jsonl", [{"prompt": "x", "max_tokens": 0}] * 25)
    done = _lexibatch("run", "requests.jsonl", cwd=tmp_path)
    assert done.returncode == 2
    err = done.stderr.splitlines()
    assert sum("max_tokens must be a positive integer" in line for line in err) == 20
    assert "requests.jsonl: ... and 5 more bad lines" in err[-2]
    assert "25 of 25 request lines are invalid" in err[-1]


def test_a_line_no_batch_can_hold_fails_alone_named_by_its_number(tmp_path: Path) -> None:
    (tmp_path / "lexibatch.toml").write_text("[batch]\nmax_bytes = 3000\n")
    _write(
        tmp_path / "requests.jsonl",
        [{"prompt": "short"}, {"prompt": "long " * 1000}, {"prompt": "short too"}],
    )
    done = _lexibatch("run", "requests.jsonl", "--mode", "batch", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    err = done.stderr.splitlines()
    assert re.fullmatch(
        r"lexibatch: error: requests\.jsonl:2: request lb-\S+: the request is [0-9,]+ bytes "
        r"as a batch line, more than the 3,000 bytes one batch may hold .* — it was not "
        r"sent; the other requests were \(results in results\.jsonl\)",
        err[-1],
    ), err
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["succeeded", "failed", "succeeded"]
    assert results[1]["error"]["type"] == "InputError"
    assert "--mode immediate" in results[1]["error"]["message"]
    # Never journaled, never sent: only the two short ones were.
    assert _store_rows(tmp_path) == (2, 2)
    # The same file runs immediately (no batch limit applies); the two answered are kept.
    now = _lexibatch("run", "requests.jsonl", "--mode", "immediate", cwd=tmp_path)
    assert now.returncode == 0, now.stderr
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["succeeded"] * 3
    assert [r["cached"] for r in results] == [True, False, True]


def test_many_lines_no_batch_can_hold_are_each_named(tmp_path: Path) -> None:
    (tmp_path / "lexibatch.toml").write_text("[batch]\nmax_bytes = 3000\n")
    lines: list[dict[str, object]] = [{"prompt": f"long {i} " + "word " * 1000} for i in range(3)]
    _write(tmp_path / "requests.jsonl", [{"prompt": "short"}, *lines])
    done = _lexibatch("run", "requests.jsonl", "--mode", "batch", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    err = done.stderr.splitlines()
    assert [n for n in (2, 3, 4) if any(f"requests.jsonl:{n}: request lb-" in e for e in err)] == [
        2,
        3,
        4,
    ]
    assert err[-1] == (
        "lexibatch: error: requests.jsonl: 3 requests were refused and not sent; the other "
        "requests were (results in results.jsonl)"
    )
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["succeeded", "failed", "failed", "failed"]
    assert _store_rows(tmp_path) == (1, 1)


def test_resume_fails_a_journaled_request_it_cannot_rebuild_and_sends_the_rest(
    tmp_path: Path,
) -> None:
    from plugins.batch.journal import SchemaBook
    from plugins.store import JournalRequest, Store
    from providers.types import Message, Request

    with Store(tmp_path / ".lexibatch" / "lexibatch.db") as store:
        book = SchemaBook(store)
        good = Request(
            "gpt-4o-mini", (Message("user", "queued"),), json_schema=GOOD, schema_name="r"
        )
        rows = [
            JournalRequest(good.key, good.model, None, book.encode(good), "queued", None, 0),
            # Written by another version: not a body this one can rebuild.
            JournalRequest("lb-other", "gpt-4o-mini", None, b'{"c": []}', "queued", None, 0),
        ]
        store.add_schemas(book.take())
        store.queue_requests("sandbox", rows)
    done = _lexibatch("resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "journaled request lb-other cannot be rebuilt" in done.stderr
    assert re.search(
        r"resumed \(1 queued requests sent\); cost \$[0-9.]+ for 1 paid call; "
        r"journal now: 1 failed, 1 succeeded",
        done.stderr,
    ), done.stderr
    # The queued request it sent and paid for is in its progress.
    progress = [line for line in done.stderr.splitlines() if " · spent $" in line][-1]
    cost = re.search(r"cost (\$[0-9.]+) for 1 paid call", done.stderr)
    assert cost is not None and cost.group(1) != "$0.00"
    assert "requests 1 done" in progress and progress.endswith(f"spent {cost.group(1)}"), progress
