"""The JSONL runner: writing, skipping done words, repairing a cut line."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from providers.errors import InputError, ServerError
from synthesis.models import DictionaryEntry
from synthesis.runner import (
    JsonlWriter,
    entry_line,
    load_done,
    order_entries,
    repair_jsonl,
    run_synthesis,
)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def test_run_writes_one_line_per_word_and_reports(connector: Any, tmp_path: Path) -> None:
    out = tmp_path / "out" / "entries.jsonl"
    progress: list[tuple[str, int, int]] = []
    stored: list[str] = []
    summary = await run_synthesis(
        ["alpha", "beta", "gamma"],
        connector,
        components=["synonyms", "facts"],
        sources=None,
        out_path=out,
        done=set(),
        batch_mode=False,
        progress=lambda w, n, t: progress.append((w, n, t)),
        on_entry=lambda e: stored.append(e.word),
    )
    lines = read_lines(out)
    assert sorted(line["word"] for line in lines) == ["alpha", "beta", "gamma"]
    entry = DictionaryEntry.model_validate(lines[0])
    assert entry.definitions and entry.facts
    assert summary.requested == 3 and summary.written == 3
    assert summary.skipped == 0 and summary.failed == 0
    assert sorted(stored) == ["alpha", "beta", "gamma"]
    assert [(n, t) for _, n, t in progress] == [(1, 3), (2, 3), (3, 3)]


async def test_rerun_skips_words_already_written(make_connector: Any, tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    first = make_connector()
    await run_synthesis(
        ["alpha", "beta"],
        first,
        components=[],
        sources=None,
        out_path=out,
        done=set(),
        batch_mode=False,
        progress=None,
    )
    second = make_connector()
    done = load_done(out)
    assert done == {"alpha", "beta"}
    summary = await run_synthesis(
        ["Alpha", "beta", "gamma"],
        second,
        components=[],
        sources=None,
        out_path=out,
        done=done,
        batch_mode=False,
        progress=None,
    )
    assert summary.skipped == 2 and summary.written == 1
    assert all("gamma" in c.prompt for c in second.calls)
    assert [line["word"] for line in read_lines(out)] == ["alpha", "beta", "gamma"]


async def test_truncated_last_line_is_repaired_on_start(connector: Any, tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    whole = entry_line(DictionaryEntry(word="alpha"))
    out.write_bytes(whole + entry_line(DictionaryEntry(word="beta"))[:17])
    assert load_done(out) == {"alpha"}
    assert out.read_bytes() == whole
    out.write_bytes(whole + b'{"word": "be')
    summary = await run_synthesis(
        ["alpha", "beta"],
        connector,
        components=[],
        sources=None,
        out_path=out,
        done={"alpha"},
        batch_mode=False,
        progress=None,
    )
    assert summary.repaired_bytes == len(b'{"word": "be')
    assert [line["word"] for line in read_lines(out)] == ["alpha", "beta"]


def test_repair_of_a_file_that_is_one_partial_line(tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    out.write_bytes(b'{"word": "al')
    assert repair_jsonl(out) == 12
    assert out.read_bytes() == b""
    assert repair_jsonl(out) == 0
    assert repair_jsonl(tmp_path / "missing.jsonl") == 0


def test_repair_walks_back_over_a_long_partial_line(tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    out.write_bytes(b'{"word":"a"}\n' + b"x" * 200_000)
    assert repair_jsonl(out) == 200_000
    assert out.read_bytes() == b'{"word":"a"}\n'


def test_load_done_refuses_a_file_that_is_not_entries(tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    out.write_bytes(b"hello\n")
    with pytest.raises(InputError, match=r"entries\.jsonl:1"):
        load_done(out)
    assert load_done(tmp_path / "none.jsonl") == set()


def test_writer_appends_whole_lines(tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    with JsonlWriter(out) as writer:
        writer.write(DictionaryEntry(word="a"))
        writer.write(DictionaryEntry(word="b"))
    with JsonlWriter(out) as writer:
        writer.write(DictionaryEntry(word="c"))
        assert writer.lines == 1
    assert out.read_bytes().count(b"\n") == 3
    with pytest.raises(ValueError, match="closed"):
        writer.write(DictionaryEntry(word="d"))


async def test_failed_words_are_counted_not_written(make_connector: Any, tmp_path: Path) -> None:
    def flaky(call: Any) -> Any:
        if "beta" in call.prompt:
            raise ServerError("boom", provider="fake")
        return None

    connector = make_connector(answers={"facts": flaky})
    out = tmp_path / "entries.jsonl"
    summary = await run_synthesis(
        ["alpha", "beta"],
        connector,
        components=["facts"],
        sources=None,
        out_path=out,
        done=set(),
        batch_mode=False,
        progress=None,
    )
    assert summary.written == 1 and summary.failed == 1
    assert summary.failures == [("beta", "fake: boom")]
    assert load_done(out) == {"alpha"}


async def test_batch_run_uses_one_round_per_stage(connector: Any, tmp_path: Path) -> None:
    summary = await run_synthesis(
        [f"w{i}" for i in range(20)],
        connector,
        components=["synonyms", "facts"],
        sources=None,
        out_path=tmp_path / "e.jsonl",
        done=set(),
        batch_mode=True,
        progress=None,
    )
    assert summary.written == 20
    assert len(connector.rounds) <= 3
    assert connector.batch_mode is False


def test_load_done_without_repair_only_reads(tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    content = b'{"word":"Alpha"}\n{"word":"be'
    out.write_bytes(content)
    assert load_done(out, repair=False) == {"alpha"}
    assert out.read_bytes() == content
    assert load_done(out) == {"alpha"}
    assert out.read_bytes() == b'{"word":"Alpha"}\n'


async def test_a_resumed_run_leaves_the_entries_in_input_order(
    make_connector: Any, tmp_path: Path
) -> None:
    def flaky(call: Any) -> Any:
        if "alpha" in call.prompt:
            raise ServerError("boom", provider="fake")
        return None

    out = tmp_path / "entries.jsonl"
    words = ["alpha", "beta", "gamma", "delta"]
    first = await run_synthesis(
        words,
        make_connector(answers={"facts": flaky}),
        components=["facts"],
        sources=None,
        out_path=out,
        done=set(),
        batch_mode=False,
        progress=None,
    )
    assert first.failed == 1
    assert [line["word"] for line in read_lines(out)] == ["beta", "gamma", "delta"]
    # The resumed run appends alpha last, then puts the file in the list's order.
    second = await run_synthesis(
        words,
        make_connector(),
        components=["facts"],
        sources=None,
        out_path=out,
        done=load_done(out),
        batch_mode=False,
        progress=None,
    )
    assert second.written == 1 and second.skipped == 3
    assert [line["word"] for line in read_lines(out)] == words


def test_order_entries_follows_the_list_and_keeps_other_words_after(tmp_path: Path) -> None:
    out = tmp_path / "entries.jsonl"
    finished = ["gamma", "other", "Alpha", "beta", "older"]
    out.write_bytes(b"".join(entry_line(DictionaryEntry(word=w)) for w in finished))
    assert order_entries(out, ["alpha", "beta", "gamma"]) is True
    assert [line["word"] for line in read_lines(out)] == [
        "Alpha",
        "beta",
        "gamma",
        "other",
        "older",
    ]
    before = out.stat().st_mtime_ns
    assert order_entries(out, ["alpha", "beta", "gamma"]) is False
    assert out.stat().st_mtime_ns == before
    assert not (tmp_path / "entries.jsonl.tmp").exists()
    assert order_entries(tmp_path / "missing.jsonl", ["alpha"]) is False


def test_order_entries_moves_lines_it_cannot_read_after_and_never_joins_two(
    tmp_path: Path,
) -> None:
    out = tmp_path / "entries.jsonl"
    out.write_bytes(
        b'{"word": "beta"}\n'
        b"not json\n"
        b'["a list"]\n'
        b'{"no": "word"}\n'
        b'{"word": "ALPHA"}\n'
        b'{"word": "gamma"}'  # the last line, cut before its newline
    )
    assert order_entries(out, ["gamma", "alpha", "beta"]) is True
    assert out.read_bytes().splitlines() == [
        b'{"word": "gamma"}',
        b'{"word": "ALPHA"}',
        b'{"word": "beta"}',
        b"not json",
        b'["a list"]',
        b'{"no": "word"}',
    ]
    assert out.read_bytes().endswith(b"\n")


def test_order_entries_holds_the_lines_places_not_the_lines(tmp_path: Path) -> None:
    # 4,000 entries of 5 KB (20 MB), finished in a shuffled order.
    words = [f"word{i:05d}" for i in range(4_000)]
    finished = words[:]
    random.Random(3).shuffle(finished)
    pad = "x" * 5_000
    out = tmp_path / "entries.jsonl"
    out.write_bytes(b"".join(orjson.dumps({"word": w, "pad": pad}) + b"\n" for w in finished))
    size = out.stat().st_size
    tracemalloc.start()
    try:
        assert order_entries(out, words) is True
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [line["word"] for line in read_lines(out)] == words
    assert out.stat().st_size == size
    # Holding the file's lines would take more than the file's size.
    assert peak < size / 20, f"{peak:,} bytes held to order a {size:,}-byte file"


def test_order_entries_rewrites_a_symlinks_target_and_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "kept.jsonl"
    target.write_text('{"word": "beta"}\n{"word": "alpha"}\n')
    link = tmp_path / "entries.jsonl"
    link.symlink_to(target)
    assert order_entries(link, ["alpha", "beta"]) is True
    assert link.is_symlink() and link.resolve() == target
    assert target.read_text() == '{"word": "alpha"}\n{"word": "beta"}\n'
