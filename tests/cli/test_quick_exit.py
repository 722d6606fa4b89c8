"""The ``lexibatch`` process ends at once: exit handlers run, output and status kept."""

from __future__ import annotations

import os
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Any

import pytest

from plugins.cli.quickexit import exit_status, keep_until_exit

# A program as the console script runs it. Its module keeps an object whose
# finalizer marks the interpreter's teardown; its command registers an exit
# handler, writes a long output, and ends as asked.
_PROGRAM = """
import atexit, sys, threading, time
import click
from plugins.cli.quickexit import keep_until_exit, run_and_exit

class TornDown:
    def __init__(self, path):
        import os
        self.write, self.fd = os.write, os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def __del__(self):
        self.write(self.fd, b"torn down\\n")

MARKS = sys.argv[1]
kept = TornDown(MARKS)

@click.command()
@click.argument("marks")
@click.argument("how")
def command(marks, how):
    def handler():
        with open(marks, "a") as fh:
            fh.write("exit handler\\n")
    atexit.register(handler)
    out = sys.stdout  # None when the descriptor is closed
    if out is not None:
        # Past the buffer (written through at once), then a tail the buffer keeps.
        if how != "small":
            out.write("x" * 300_000 + "\\n")
        out.write("tail\\n")
    if how == "keep":
        held = TornDown(marks)
        keep_until_exit(held)
        del held
        with open(marks, "a") as fh:
            fh.write("command ended\\n")
    if how == "thread":
        threading.Thread(target=time.sleep, args=(0.3,)).start()
    elif how == "crash":
        raise RuntimeError("a bug")
    elif how == "message":
        sys.exit("lexibatch: error: told")
    elif how not in ("ok", "small", "keep", "crash"):
        sys.exit(int(how))

run_and_exit(command)
"""


_OUTPUT = "x" * 300_000 + "\ntail\n"


def _run(
    tmp_path: Path, how: str, *, stdout: Any = subprocess.PIPE, shell_suffix: str = ""
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    marks = tmp_path / "marks"
    # Buffered as a console script's output is, unless the caller's
    # environment says otherwise: the flush at the end is what is tested.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-c", _PROGRAM, str(marks), how]
    if shell_suffix:
        command = ["sh", "-c", '"$0" "$@" ' + shell_suffix, *command]
    done = subprocess.run(
        command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=60
    )
    return done, marks.read_text().splitlines() if marks.exists() else []


@pytest.mark.parametrize(("how", "status"), [("ok", 0), ("0", 0), ("2", 2), ("130", 130)])
def test_the_status_output_and_exit_handlers_are_kept_and_teardown_skipped(
    tmp_path: Path, how: str, status: int
) -> None:
    done, marks = _run(tmp_path, how)
    assert done.returncode == status, done.stderr
    assert done.stdout == _OUTPUT
    assert marks == ["exit handler"]


def test_what_a_command_keeps_until_exit_is_never_freed_one_by_one(tmp_path: Path) -> None:
    done, marks = _run(tmp_path, "keep")
    assert done.returncode == 0, done.stderr
    assert marks == ["command ended", "exit handler"]


def test_outside_the_program_nothing_is_kept() -> None:
    class Held:
        pass

    held = Held()
    alive = weakref.ref(held)
    keep_until_exit(held)
    del held
    assert alive() is None


def test_a_closed_standard_output_is_no_error(tmp_path: Path) -> None:
    done, marks = _run(tmp_path, "ok", stdout=None, shell_suffix=">&-")
    assert done.returncode == 0, done.stderr
    assert marks == ["exit handler"]


def test_output_that_cannot_be_written_is_reported_as_the_interpreter_does(
    tmp_path: Path,
) -> None:
    with Path("/dev/full").open("w") as full:
        done, marks = _run(tmp_path, "small", stdout=full)
    assert done.returncode == 120
    assert "No space left on device" in done.stderr
    assert marks == ["exit handler", "torn down"]


def test_a_message_is_printed_with_status_one(tmp_path: Path) -> None:
    done, marks = _run(tmp_path, "message")
    assert done.returncode == 1
    assert done.stderr == "lexibatch: error: told\n"
    assert marks == ["exit handler"]


def test_an_uncaught_exception_ends_as_it_always_did(tmp_path: Path) -> None:
    done, marks = _run(tmp_path, "crash")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "RuntimeError: a bug" in done.stderr
    assert marks == ["exit handler", "torn down"]


def test_a_thread_still_running_is_waited_for_as_usual(tmp_path: Path) -> None:
    done, marks = _run(tmp_path, "thread")
    assert done.returncode == 0, done.stderr
    # The interpreter's own exit: it joined the thread, then tore the module down.
    assert marks == ["exit handler", "torn down"]


def test_exit_status_is_what_sys_exit_ends_with(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(None) == 0
    assert exit_status(3) == 3
    assert exit_status("why") == 1
    assert capsys.readouterr().err == "why\n"
