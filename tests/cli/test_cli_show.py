"""``lexibatch show WORD``, the word list's order in entries.jsonl, and the sandbox's notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

WORDS = ["river", "bank", "lantern", "abandon"]


def _lexibatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEXIBATCH_", "OPENAI_", "ANTHROPIC_"))
    }
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "COLUMNS": "100"})
    return subprocess.run(
        [sys.executable, "-m", "synthesis.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_synthesize_then_show_an_entry_as_a_dictionary_page(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("\n".join(WORDS) + "\n")
    made = _lexibatch(
        "synthesize", "words.txt", "--components", "synonyms,examples,pronunciation", cwd=tmp_path
    )
    assert made.returncode == 0, made.stderr
    # The sandbox says what its answers are, once.
    assert made.stderr.count("synthetic placeholders") == 1, made.stderr
    entries = [json.loads(x) for x in (tmp_path / "entries.jsonl").read_text().splitlines()]
    assert [e["word"] for e in entries] == WORDS

    shown = _lexibatch("show", "bank", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    page = shown.stdout
    bank = next(e for e in entries if e["word"] == "bank")
    assert "bank" in page.splitlines()[0]
    assert "US /" in page and "UK /" in page
    for pos in {d["part_of_speech"] for d in bank["definitions"] if d["part_of_speech"]}:
        assert pos in page
    assert "1. " in page and f"{len(bank['definitions'])}. " in page
    assert "synonyms:" in page
    assert "sources: gcide" in page
    # A page, not JSON.
    assert "{" not in page

    as_json = _lexibatch("show", "BANK", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == bank

    from_file = _lexibatch("show", "Lantern", "--entries", "entries.jsonl", cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    assert "lantern" in from_file.stdout


def test_show_of_a_word_without_an_entry_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = _lexibatch("show", "zyzzyvaqq", cwd=tmp_path)
    assert missing.returncode == 2
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1 and "no entry for 'zyzzyvaqq'" in lines[0]


def test_show_from_a_file_that_holds_no_entries_says_so(tmp_path: Path) -> None:
    (tmp_path / "requests.jsonl").write_text('{"id": "a", "prompt": "bank"}\n')
    other = _lexibatch("show", "bank", "--entries", "requests.jsonl", cwd=tmp_path)
    assert (other.returncode, other.stderr) == (
        2,
        "lexibatch: error: requests.jsonl holds no dictionary entries: give --entries the "
        "output of `lexibatch synthesize`\n",
    )
    (tmp_path / "bad.jsonl").write_text('{"word": "bank", "definitions": "none"}\n')
    bad = _lexibatch("show", "bank", "--entries", "bad.jsonl", cwd=tmp_path)
    assert (bad.returncode, bad.stderr) == (
        2,
        "lexibatch: error: bad.jsonl:1: not a dictionary entry (definitions: Input should be "
        "a valid list)\n",
    )
