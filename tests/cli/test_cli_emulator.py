"""``lexibatch emulator`` on bad flags and places: one line, exit 2; Ctrl-C: exit 130."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _emulator(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "emulator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LEXIBATCH_LOAD_PLUGINS": ""},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--port", "70000"), "70000 is not in the range 0<=x<=65535"),
        (("--port", "-5"), "-5 is not in the range 0<=x<=65535"),
        (("--batch-seconds", "-5"), "-5.0 is not in the range x>=0"),
        (("--batch-seconds", "nan"), "--batch-seconds must be a number of seconds, got nan"),
        (("--host", "nosuch.invalid", "--port", "0"), "cannot listen on nosuch.invalid:0"),
    ],
)
def test_a_bad_flag_is_refused_without_a_traceback(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    done = _emulator(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and says in done.stderr, done.stderr


def test_a_taken_port_or_a_state_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _emulator("--port", str(port), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0], lines
    assert "choose another --port" in lines[0]
    (tmp_path / "a-file").write_text("")
    done = _emulator("--state", "a-file/state", "--port", "0", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot keep its state in a-file/state" in lines[0], lines


def test_ctrl_c_stops_it_with_exit_130_and_sigterm_with_0(tmp_path: Path) -> None:
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 0)):
        server = subprocess.Popen(
            [sys.executable, "-m", "synthesis.cli", "emulator", "--port", "0"],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LEXIBATCH_LOAD_PLUGINS": ""},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert server.stderr is not None
        assert "listening on http://127.0.0.1:" in server.stderr.readline()
        server.send_signal(sig)
        assert server.wait(timeout=30) == status
        assert "Traceback" not in server.stderr.read()
