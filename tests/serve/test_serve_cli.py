"""The ``serve`` command: its web stack is loaded only when it runs; a taken port is one line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_help_does_not_load_the_web_stack(tmp_path: Path) -> None:
    done = _python(
        "import sys\n"
        "from synthesis.cli import main\n"
        "try:\n"
        "    main(['serve', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))\n",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "--token" in done.stdout and "LEXIBATCH_SERVE_TOKEN" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_taken_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _python(
            f"from synthesis.cli import main\nmain(['serve', '--port', '{port}'])\n", tmp_path
        )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0]


def test_the_token_from_the_environment_guards_serve_and_leaves_other_commands_alone(
    tmp_path: Path,
) -> None:
    import time

    import httpx

    from tests.serve.serve_helpers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    # Exported once in the shell, for `serve`; every other command runs beside it.
    env["LEXIBATCH_SERVE_TOKEN"] = "s3cret"
    cost = subprocess.run(
        [sys.executable, "-m", "synthesis.cli", "cost"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cost.returncode == 0, cost.stderr
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synthesis.cli",
            "serve",
            "--db",
            str(tmp_path / "s.db"),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                httpx.get(url + "/cost", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.2)
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.post("/lookup/kettle").status_code == 401
            ok = client.post("/lookup/kettle", headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200, ok.text
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_an_address_not_of_this_machine_or_a_port_out_of_range_is_refused(tmp_path: Path) -> None:
    done = _python(
        "from synthesis.cli import main\nmain(['serve', '--host', 'nosuch.invalid'])\n", tmp_path
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on nosuch.invalid:8000" in lines[0], lines
    assert "give --host an address of this machine" in lines[0]
    done = _python("from synthesis.cli import main\nmain(['serve', '--port', '70000'])\n", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "70000 is not in the range 0<=x<=65535" in done.stderr


def test_ctrl_c_stops_the_server_with_exit_130_and_no_traceback(tmp_path: Path) -> None:
    import signal

    from tests.serve.serve_helpers import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env["LEXIBATCH_LOAD_PLUGINS"] = ""
    server = subprocess.Popen(
        [sys.executable, "-m", "synthesis.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert server.stderr is not None
    while "serving http://" not in (line := server.stderr.readline()):
        assert line, "the server ended before it served"
    server.send_signal(signal.SIGINT)
    rest = server.stderr.read()
    assert server.wait(timeout=30) == 130
    assert "Traceback" not in rest and "ERROR" not in rest, rest
    assert rest.strip().splitlines()[-1].startswith("lexibatch: interrupted — every answer")
