"""Persistence across restarts (also after ``kill -9``), billing and determinism."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import httpx
import openai
import orjson
from emu_helpers import batch_file, chat_body, lines_of, requests_of, run_batch

from providers.emulator import Emulator, EmulatorConfig


def test_batch_created_before_restart_completes_after(tmp_path: Path) -> None:
    config = EmulatorConfig(batch_seconds=0.5)
    with Emulator(config, state_dir=tmp_path) as emu:
        oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
        f = oai.files.create(file=("in.jsonl", batch_file(6)), purpose="batch")
        batch = oai.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        ant = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
        mbatch = ant.messages.batches.create(requests=requests_of(4))  # type: ignore[arg-type]
        oai.chat.completions.create(**chat_body("immediate"))
    time.sleep(0.5)
    with Emulator(config, state_dir=tmp_path) as emu:
        oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
        assert oai.files.retrieve(f.id).bytes == len(batch_file(6))
        done = oai.batches.retrieve(batch.id)
        assert done.status == "completed" and done.created_at == batch.created_at
        assert len(lines_of(oai, done.output_file_id)) == 6
        ant = anthropic.Anthropic(base_url=emu.base_url, api_key="k", max_retries=0)
        assert ant.messages.batches.retrieve(mbatch.id).processing_status == "ended"
        assert len(list(ant.messages.batches.results(mbatch.id))) == 4
        billing = emu.billing()
    assert billing["batch"]["requests"] == 10 and billing["immediate"]["requests"] == 1
    with Emulator(config, state_dir=tmp_path) as emu:
        assert emu.billing() == billing  # billed once, not again on a later start
        emu.reset()
        assert emu.billing()["batch"]["requests"] == 0
    with Emulator(config, state_dir=tmp_path) as emu:
        assert emu.billing()["batch"]["requests"] == 0


def test_separate_process_survives_kill_9(tmp_path: Path) -> None:
    state = tmp_path / "state"

    def start() -> tuple[subprocess.Popen[bytes], str]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "providers.emulator",
                "--port",
                "0",
                "--state",
                str(state),
                "--batch-seconds",
                "0.4",
                "--config",
                '{"seed": 3}',
            ],
            stderr=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        return proc, match.group(1)

    proc, url = start()
    try:
        oai = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        f = oai.files.create(file=("in.jsonl", batch_file(3)), purpose="batch")
        batch = oai.batches.create(
            input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc, url = start()
    try:
        oai = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0)
        deadline = time.time() + 10
        while (done := oai.batches.retrieve(batch.id)).status != "completed":
            assert time.time() < deadline
            time.sleep(0.05)
        assert len(lines_of(oai, done.output_file_id)) == 3
        assert httpx.get(url + "/_emulator/config").json()["seed"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_billing_counts_duplicates(emu: Emulator, oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(**chat_body("a"))
    oai.chat.completions.create(**chat_body("a"))
    oai.chat.completions.create(**chat_body("b"))
    run_batch(oai, batch_file(3))
    run_batch(oai, batch_file(2))
    billing = httpx.get(emu.base_url + "/_emulator/billing").json()
    assert billing == emu.billing()
    assert billing["immediate"]["requests"] == 3
    assert first.usage is not None
    assert billing["immediate"]["input_tokens"] >= 3 * first.usage.prompt_tokens - 2
    assert billing["immediate"]["duplicates"] == 1
    assert sorted(billing["by_key"]["immediate"].values()) == [1, 2]
    assert billing["by_key"]["batch"] == {"w0": 2, "w1": 2, "w2": 1}
    assert billing["batch"] | {"input_tokens": 0, "output_tokens": 0} == {
        "requests": 5,
        "input_tokens": 0,
        "output_tokens": 0,
        "duplicates": 2,
    }
    assert billing["duplicates"] == 3
    httpx.post(emu.base_url + "/_emulator/reset")
    assert emu.billing()["duplicates"] == 0


def test_same_seed_same_answers_across_emulators() -> None:
    def answer(seed: int) -> str:
        with Emulator(EmulatorConfig(seed=seed)) as emu:
            oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
            return oai.chat.completions.create(**chat_body("same")).choices[0].message.content or ""

    assert answer(1) == answer(1)
    assert answer(1) != answer(2)


def test_state_files_are_plain(tmp_path: Path) -> None:
    with Emulator(EmulatorConfig(), state_dir=tmp_path) as emu:
        oai = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
        batch = run_batch(oai, batch_file(2))
    record = orjson.loads((tmp_path / "batches" / f"{batch.id}.json").read_bytes())
    assert record["final"]["status"] == "completed"
    out = tmp_path / "files" / f"{batch.output_file_id}.data"
    assert len(out.read_bytes().splitlines()) == 2
    assert not list(tmp_path.rglob("*.tmp"))
