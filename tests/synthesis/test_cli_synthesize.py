"""`lexibatch synthesize` in subprocesses on the sandbox: interrupts, estimates, budgets."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

# GCIDE words from few letters, so the run spends its time on calls, not on loading letters.
FORTY = [
    "bread",
    "bird",
    "book",
    "bright",
    "black",
    "boat",
    "bell",
    "bone",
    "bank",
    "branch",
    "bridge",
    "brother",
    "butter",
    "button",
    "basket",
    "beach",
    "bean",
    "bear",
    "bed",
    "bee",
    "salt",
    "stone",
    "ship",
    "sea",
    "sun",
    "star",
    "sand",
    "seed",
    "silver",
    "song",
    "storm",
    "street",
    "summer",
    "sword",
    "sheep",
    "shoe",
    "shirt",
    "silk",
    "smoke",
    "snow",
]
COMPONENTS = "synonyms,examples,cefr_level,pronunciation"
INTERRUPTED = (
    "lexibatch: interrupted — everything paid for is stored; run the same command again to continue"
)


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_", "ANTHROPIC_"))
    }
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "synthesis.cli", "synthesize", *args]


def _lexibatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(*args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120
    )


def _entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _ledger_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0])


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_leaves_whole_lines_and_a_rerun_completes_the_rest(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("\n".join(FORTY) + "\n")
    out = tmp_path / "entries.jsonl"
    args = ("words.txt", "--mode", "immediate", "--components", COMPONENTS, "--out", out.name)
    run = subprocess.Popen(
        _command(*args),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a terminal's Ctrl-C finds it, even when these tests run in a
        # background job (whose shell starts its commands with SIGINT ignored).
        preexec_fn=_sigint_default,
    )
    try:
        deadline = time.monotonic() + 90
        while run.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.stat().st_size > 0:
                run.send_signal(signal.SIGINT)
                break
            time.sleep(0.01)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr
    assert stderr.splitlines()[-1] == INTERRUPTED
    assert "Traceback" not in stderr
    first = _entries(out)  # every line parses
    assert 0 < len(first) < len(FORTY)

    again = _lexibatch(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"{len(first)} already done" in again.stderr
    final = _entries(out)
    assert Counter(e["word"] for e in final) == Counter(FORTY)
    # The finished file reads in input order, and the entries written before
    # the interrupt are kept as they were (not asked, nor paid for, again).
    assert [e["word"] for e in final] == FORTY
    by_word = {e["word"]: e for e in final}
    assert [by_word[e["word"]] for e in first] == first


def test_estimate_prints_both_modes_and_sends_nothing_a_budget_refuses_or_runs(
    tmp_path: Path,
) -> None:
    (tmp_path / "words.txt").write_text("apple\nhouse\nwater\n")
    # The sandbox's batches take a second; do not add a linger of a second to each round.
    (tmp_path / "lexibatch.toml").write_text("[batch]\nlinger = 0.05\npoll_interval = 0.05\n")
    db = tmp_path / ".lexibatch" / "lexibatch.db"
    base = ("words.txt", "--components", "synonyms,pronunciation", "--out", "entries.jsonl")

    estimate = _lexibatch(*base, "--estimate", cwd=tmp_path)
    assert estimate.returncode == 0, estimate.stderr
    lines = estimate.stdout.splitlines()
    requests = int(lines[0].split()[2])
    immediate = float(lines[1].split("$")[1])
    batch = float(lines[2].split("$")[1])
    assert lines[1].startswith("  immediate:") and lines[2].startswith("  batch:")
    assert requests > 3 and 0 < batch < immediate
    assert batch / immediate == pytest.approx(0.5, abs=0.05)
    assert not db.exists() and not (tmp_path / "entries.jsonl").exists()

    refused = _lexibatch(*base, "--mode", "batch", "--budget", f"{batch / 2:.8f}", cwd=tmp_path)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 2  # the sandbox notice, then the refusal
    assert "budget" in refused.stderr.splitlines()[-1]
    assert not db.exists() and not (tmp_path / "entries.jsonl").exists()
    # With --estimate too: the estimate is printed, and over the budget it exits 2 (as `run`).
    over = _lexibatch(
        *base, "--mode", "batch", "--estimate", "--budget", f"{batch / 2:.8f}", cwd=tmp_path
    )
    assert over.returncode == 2 and over.stdout.startswith("estimate for "), over.stderr
    assert "exceeds the budget" in over.stderr.splitlines()[-1]

    ran = _lexibatch(*base, "--mode", "batch", "--budget", f"{batch * 2:.8f}", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert [e["word"] for e in _entries(tmp_path / "entries.jsonl")] == ["apple", "house", "water"]
    assert _ledger_rows(db) == requests
    assert "(batch)" in ran.stderr.splitlines()[-1]

    # A word list already done estimates nothing and sends nothing.
    done = _lexibatch(*base, "--estimate", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("estimate for 0 requests")
    assert "3 of 3 words already in entries.jsonl" in done.stderr
    assert _ledger_rows(db) == requests


def test_a_call_cut_off_by_an_interrupt_is_not_logged_as_an_error(
    emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = emulator.base_url.rsplit("/", 1)[-1].split(":")
    with caplog.at_level(logging.ERROR, logger="aiohttp.server"):
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            time.sleep(0.2)
        time.sleep(0.3)
    assert [r.getMessage() for r in caplog.records if r.name == "aiohttp.server"] == []


def test_a_budget_refuses_a_synthesis_on_a_model_with_no_price(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("apple\n")
    (tmp_path / "lexibatch.toml").write_text('[connector]\nmodel = "no-such-model-zz"\n')
    done = _lexibatch("words.txt", "--budget", "5", "--out", "entries.jsonl", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "lexibatch: error: the price map has no price for no-such-model-zz: a budget "
            "(--budget, batch.budget_usd) cannot"
        )
    )
    assert not (tmp_path / "entries.jsonl").exists() and not (tmp_path / ".lexibatch").exists()


def test_a_word_the_store_keeps_in_other_capitals_is_synthesized_under_that_spelling_unpaid(
    tmp_path: Path,
) -> None:
    (tmp_path / "first.txt").write_text("lantern\nmeadow\n")
    (tmp_path / "second.txt").write_text("Lantern\nMEADOW\nanchor\n")
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "anchor.txt").write_text("anchor\n")
    db = tmp_path / ".lexibatch" / "lexibatch.db"
    base = ("--components", "synonyms,pronunciation", "--mode", "immediate")

    alone = _lexibatch("anchor.txt", *base, "--out", "anchor.jsonl", cwd=tmp_path / "alone")
    assert alone.returncode == 0, alone.stderr
    anchor_calls = _ledger_rows(tmp_path / "alone" / ".lexibatch" / "lexibatch.db")

    first = _lexibatch("first.txt", *base, "--out", "first.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    paid = _ledger_rows(db)
    entries = {e["word"]: e for e in _entries(tmp_path / "first.jsonl")}
    assert sorted(entries) == ["lantern", "meadow"] and paid > 0

    second = _lexibatch("second.txt", *base, "--out", "second.jsonl", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    again = {e["word"]: e for e in _entries(tmp_path / "second.jsonl")}
    # The two words already made keep their spelling and come from the cache:
    # only "anchor" is paid for.
    assert sorted(again) == ["anchor", "lantern", "meadow"]
    assert again["lantern"] == entries["lantern"] and again["meadow"] == entries["meadow"]
    assert _ledger_rows(db) == paid + anchor_calls
    with sqlite3.connect(db) as conn:
        spellings = {
            key: json.loads(value)["word"]
            for key, value in conn.execute(
                "SELECT key, value FROM documents WHERE namespace = 'spellings'"
            )
        }
    assert spellings == {"lantern": "lantern", "meadow": "meadow", "anchor": "anchor"}


def test_a_refused_key_stops_the_synthesis_and_names_its_variable(tmp_path: Path) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    (tmp_path / "words.txt").write_text("apple\nriver\nlantern\n")
    with Emulator(EmulatorConfig(api_keys=["sk-the-right-one"])) as emu:
        (tmp_path / "lexibatch.toml").write_text(
            '[connector]\nprovider = "openai"\nmode = "immediate"\n'
            f'[providers.openai]\nbase_url = "{emu.base_url}/v1"\nmax_concurrency = 2\n'
        )
        command = _command("words.txt", "--components", COMPONENTS, "--out", "entries.jsonl")
        env = {**_env(), "OPENAI_API_KEY": "sk-a-wrong-one"}
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        refusals = emu.billing()["key_refusals"]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(
        "lexibatch: error: 3 words not done: the provider refused the key in OPENAI_API_KEY: "
    ), last
    # The calls out when the first refusal came, not every call of every word.
    assert 1 <= refusals <= 4
