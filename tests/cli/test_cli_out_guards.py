"""``--out`` never destroys what it must not: the store, the input; links and pipes are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.cli.test_cli import _lexibatch

REQUESTS = "".join(json.dumps({"id": str(i), "prompt": f"guard {i}"}) + "\n" for i in range(3))


def _one_line_refusal(done: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lexibatch: error: "), lines
    assert "Traceback" not in lines[0] and "nothing was sent" in lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.mark.parametrize(
    "suffix", ["", "-wal", "-shm", ".reserve", ".unsaved.jsonl", ".batches.lock"]
)
def test_run_refuses_to_write_its_results_onto_its_store(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "r.jsonl").write_text(REQUESTS)
    first = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", "out.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    store = (tmp_path / "s.db").read_bytes()
    done = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", f"s.db{suffix}", cwd=tmp_path)
    _one_line_refusal(done, f"--out s.db{suffix} is the store's own file", "another file name")
    assert (tmp_path / "s.db").read_bytes() == store
    # The answers paid for are all still there: the same run is answered from the store.
    again = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", "out2.jsonl", cwd=tmp_path)
    assert again.returncode == 0 and "3 from cache" in again.stderr, again.stderr


def test_run_refuses_its_store_reached_by_another_name(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text(REQUESTS)
    assert _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", "o", cwd=tmp_path).returncode == 0
    (tmp_path / "link.db").symlink_to(tmp_path / "s.db")
    os.link(tmp_path / "s.db", tmp_path / "hard.db")
    for name in ("link.db", "hard.db", "./sub/../s.db"):
        done = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", name, cwd=tmp_path)
        _one_line_refusal(done, "is the store's own file")


def test_run_refuses_to_write_its_results_onto_its_request_file(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text(REQUESTS)
    done = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", "r.jsonl", cwd=tmp_path)
    _one_line_refusal(done, "--out r.jsonl is the input file r.jsonl")
    assert (tmp_path / "r.jsonl").read_text() == REQUESTS


def test_synthesize_refuses_its_store_and_its_word_list_as_output(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("apple\n")
    first = _lexibatch("synthesize", "words.txt", "--db", "s.db", "--out", "e.jsonl", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    store = (tmp_path / "s.db").read_bytes()
    onto_store = _lexibatch(
        "synthesize", "words.txt", "--db", "s.db", "--out", "s.db", cwd=tmp_path
    )
    _one_line_refusal(onto_store, "is the store's own file")
    assert (tmp_path / "s.db").read_bytes() == store
    onto_words = _lexibatch(
        "synthesize", "words.txt", "--db", "s.db", "--out", "words.txt", cwd=tmp_path
    )
    _one_line_refusal(onto_words, "is the input file words.txt")
    assert (tmp_path / "words.txt").read_text() == "apple\n"


def test_results_written_through_a_symlink_replace_its_target_and_keep_the_link(
    tmp_path: Path,
) -> None:
    (tmp_path / "r.jsonl").write_text(REQUESTS)
    (tmp_path / "results").mkdir()
    target = tmp_path / "results" / "latest.jsonl"
    target.write_text("old\n")
    (tmp_path / "out.jsonl").symlink_to(target)
    done = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", "out.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.jsonl").is_symlink()
    lines = target.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["0", "1", "2"]


def test_results_written_to_a_pipe_reach_its_reader_and_the_pipe_stays(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_text(REQUESTS)
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with fifo.open("rb") as reader:
            received.append(reader.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    done = _lexibatch("run", "r.jsonl", "--db", "s.db", "--out", str(fifo), cwd=tmp_path)
    reader.join(timeout=60)
    assert done.returncode == 0, done.stderr
    assert fifo.is_fifo() and not list(tmp_path.glob(".results.fifo.*"))
    assert [json.loads(line)["id"] for line in received[0].splitlines()] == ["0", "1", "2"]


def test_a_sandbox_that_cannot_keep_its_state_beside_the_store_is_one_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "r.jsonl").write_text(REQUESTS)
    (tmp_path / "data").mkdir()
    # A file where the sandbox keeps its folder (as a read-only folder refuses it too).
    (tmp_path / "data" / "provider-state").write_text("")
    done = _lexibatch("run", "r.jsonl", "--db", "data/s.db", "--out", "o.jsonl", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "the sandbox cannot keep its state in" in errors[0]
    assert "the store's folder must be writable" in errors[0]


def test_synthesize_keeps_a_symlinked_output_a_link_and_refuses_a_pipe(tmp_path: Path) -> None:
    # Out of order on purpose: the entries are put in the list's order at the end.
    (tmp_path / "words.txt").write_text("zebra\napple\n")
    target = tmp_path / "kept" / "entries.jsonl"
    target.parent.mkdir()
    (tmp_path / "entries.jsonl").symlink_to(target)
    done = _lexibatch(
        "synthesize", "words.txt", "--db", "s.db", "--out", "entries.jsonl", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "entries.jsonl").is_symlink()
    words = [json.loads(line)["word"] for line in target.read_text().splitlines()]
    assert words == ["zebra", "apple"]
    fifo = tmp_path / "entries.fifo"
    os.mkfifo(fifo)
    piped = _lexibatch("synthesize", "words.txt", "--db", "s.db", "--out", str(fifo), cwd=tmp_path)
    _one_line_refusal(piped, "is a device or a pipe", "reads its output back")
    assert fifo.is_fifo()


def _run_to_stdout(work: Path) -> tuple[list[str], dict[str, str]]:
    """``lexibatch run`` of three requests in ``work`` (the sandbox), and its environment."""
    (work / "r.jsonl").write_text(REQUESTS)
    command = [sys.executable, "-m", "synthesis.cli", "run", "r.jsonl", "--db", "s.db"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    return command, env


def test_results_to_dev_stdout_go_to_a_pipe_or_are_appended_to_the_shells_file(
    tmp_path: Path,
) -> None:
    command, env = _run_to_stdout(tmp_path)
    piped = subprocess.run(
        [*command, "--out", "/dev/stdout", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert [json.loads(line)["id"] for line in piped.stdout.splitlines()] == ["0", "1", "2"]
    # As `lexibatch run ... --out /dev/stdout >> log.txt`: what the log held stays.
    log = tmp_path / "log.txt"
    log.write_text("kept\n")
    with log.open("ab") as appended:
        done = subprocess.run(
            [*command, "--out", "/dev/stdout", "-q"],
            cwd=tmp_path,
            env=env,
            stdout=appended,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "kept" and [json.loads(x)["id"] for x in lines[1:]] == ["0", "1", "2"]


def test_results_to_a_pipe_its_reader_closed_end_in_one_line_with_the_answers_kept(
    tmp_path: Path,
) -> None:
    # As `lexibatch run ... --out /dev/stdout | head -1`.
    command, env = _run_to_stdout(tmp_path)
    run = subprocess.Popen(
        [*command, "--out", "/dev/stdout", "-q"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stdout is not None
    run.stdout.close()  # the reader is gone before the first line
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 2, stderr
    # The sandbox's notice (no provider is configured), then the one error line.
    assert [line for line in stderr.splitlines() if "sandbox" not in line] == [
        "lexibatch: error: the results to /dev/stdout were not all written: their reader "
        "closed it (a broken pipe); every answer is kept in the store: run the same command "
        "again once it can be written (nothing is paid twice)"
    ], stderr
    again = subprocess.run(
        [*command, "--out", "out.jsonl"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0 and "3 from cache" in again.stderr, again.stderr


def test_the_store_guard_sees_the_files_beside_a_symlinked_stores_real_file(
    tmp_path: Path,
) -> None:
    from plugins.outfile import check_writable
    from providers.errors import OutputWriteError

    real = tmp_path / "real" / "s.db"
    real.parent.mkdir()
    real.touch()
    (tmp_path / "link.db").symlink_to(real)
    for name in ("s.db", "s.db-wal", "s.db-shm", "s.db.batches.lock"):
        with pytest.raises(OutputWriteError, match="is the store's own file"):
            check_writable(real.parent / name, store=tmp_path / "link.db")
    check_writable(real.parent / "results.jsonl", store=tmp_path / "link.db")
