"""The batch-side commands against an emulator: auto mode, estimate, budget, resume, batches."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEXIBATCH_", "OPENAI_"))}
    env.update({"LEXIBATCH_LOAD_PLUGINS": "", "OPENAI_API_KEY": "sk-cli-test"})
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "synthesis.cli", *args]


def _lexibatch(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cmd(*args), cwd=work, env=_env(), capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def work(tmp_path: Path, fresh_emulator: Any) -> Path:
    (tmp_path / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "openai"\n'
        'mode = "auto"\n'
        "[providers.openai]\n"
        f'base_url = "{fresh_emulator.base_url}/v1"\n'
        "[batch]\n"
        "linger = 0.2\n"
        "poll_interval = 0.05\n"
        "max_poll_interval = 0.1\n"
        "auto_threshold = 10\n"
    )
    return tmp_path


def _requests(work: Path, n: int, name: str = "requests.jsonl") -> str:
    lines = [
        json.dumps({"id": str(i), "prompt": f"{name} {i}", "schema": SCHEMA}) for i in range(n)
    ]
    (work / name).write_text("\n".join(lines) + "\n")
    return name


def test_auto_mode_picks_by_workload_size_and_says_so(work: Path, fresh_emulator: Any) -> None:
    small = _lexibatch(work, "run", _requests(work, 3, "small.jsonl"), "--out", "s.jsonl")
    assert small.returncode == 0, small.stderr
    assert "mode auto: immediate" in small.stderr
    large = _lexibatch(work, "run", _requests(work, 12, "large.jsonl"), "--out", "l.jsonl")
    assert large.returncode == 0, large.stderr
    assert "mode auto: batch" in large.stderr
    billing = fresh_emulator.billing()
    assert billing["immediate"]["requests"] == 3 and billing["batch"]["requests"] == 12


def test_estimate_sends_nothing_and_budget_refuses(work: Path, fresh_emulator: Any) -> None:
    name = _requests(work, 40)
    est = _lexibatch(work, "run", name, "--estimate")
    assert est.returncode == 0, est.stderr
    assert "immediate: $" in est.stdout and "batch:     $" in est.stdout
    assert "batch saves" in est.stdout
    refused = _lexibatch(work, "run", name, "--budget", "0.000001")
    assert refused.returncode == 2
    assert "exceeds the budget" in refused.stderr and refused.stderr.count("\n") == 1
    billing = fresh_emulator.billing()
    assert billing["immediate"]["requests"] == billing["batch"]["requests"] == 0


def _kill_when_created(work: Path, name: str) -> None:
    run = subprocess.Popen(
        _cmd("run", name, "--mode", "batch", "--out", "out.jsonl"),
        cwd=work,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db = work / ".lexibatch" / "lexibatch.db"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as conn:
                        states = [r[0] for r in conn.execute("SELECT state FROM shards")]
                except sqlite3.OperationalError:
                    states = []  # not migrated yet, or busy: look again
                if "created" in states:
                    return
            time.sleep(0.02)
        raise AssertionError("the batch was never created")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=10)


def _running_batch(work: Path, emulator: Any) -> tuple[str, str, str]:
    """Eight requests in a batch still running at ``emulator``, their run killed.

    Returns the request file's name, the shard id and the batch id.
    """
    emulator.configure(batch_seconds=30.0)
    name = _requests(work, 8)
    _kill_when_created(work, name)
    with sqlite3.connect(work / ".lexibatch" / "lexibatch.db") as conn:
        shard_id, batch_id = conn.execute("SELECT shard_id, batch_id FROM shards").fetchone()
    return name, shard_id, batch_id


def _as_if_never_journaled(work: Path) -> None:
    """As if the run died between creating its batch and journaling the batch's id."""
    with sqlite3.connect(work / ".lexibatch" / "lexibatch.db") as conn:
        conn.execute("UPDATE shards SET state = 'submitting', batch_id = NULL")


def test_resume_finishes_without_the_input(work: Path, fresh_emulator: Any) -> None:
    fresh_emulator.configure(batch_seconds=2.0)
    name = _requests(work, 15)
    _kill_when_created(work, name)
    (work / name).unlink()  # resume needs only the journal
    resumed = _lexibatch(work, "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "15 succeeded" in resumed.stderr
    # Its progress counts what it finished and spent, though nobody asked for them.
    progress = [line for line in resumed.stderr.splitlines() if " · spent $" in line][-1]
    assert "requests 15 done" in progress, resumed.stderr
    cost = re.search(r"cost (\$[0-9.]+) for 15 paid calls", resumed.stderr)
    assert cost is not None and progress.endswith(f"spent {cost.group(1)}"), resumed.stderr
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 15 and billing["duplicates"] == 0
    # The same work again is all cache: nothing more is billed.
    _requests(work, 15)
    again = _lexibatch(work, "run", name, "--mode", "batch", "--out", "out.jsonl")
    assert again.returncode == 0 and "15 from cache" in again.stderr
    assert fresh_emulator.billing()["batch"]["requests"] == 15


def test_resume_of_another_providers_work_says_which_provider_holds_it(
    work: Path, fresh_emulator: Any
) -> None:
    fresh_emulator.configure(batch_seconds=2.0)
    name = _requests(work, 6)
    _kill_when_created(work, name)
    other = _lexibatch(work, "resume", "--provider", "sandbox")
    assert other.returncode == 0, other.stderr
    assert (
        "lexibatch: 6 requests of provider openai are still queued or in a batch in this "
        "store: `lexibatch resume --provider openai` finishes them"
    ) in other.stderr, other.stderr
    # Nothing of openai's was touched: its own resume collects the batch, paid once.
    resumed = _lexibatch(work, "resume")
    assert resumed.returncode == 0 and "6 succeeded" in resumed.stderr, resumed.stderr
    assert "still queued" not in resumed.stderr
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 6 and billing["duplicates"] == 0


def test_resume_makes_no_store_and_refuses_a_db_that_names_none(work: Path) -> None:
    mistyped = _lexibatch(work, "resume", "--db", "lexibtach.db")
    assert mistyped.returncode == 2, mistyped.stderr
    assert mistyped.stderr.startswith("lexibatch: error: no store at lexibtach.db: --db must")
    nothing = _lexibatch(work, "resume")
    assert nothing.returncode == 0, nothing.stderr
    assert "nothing to resume: no run has made the store" in nothing.stderr
    assert sorted(p.name for p in work.iterdir()) == ["lexibatch.toml"]


def test_batches_list_show_cancel_then_rerun(work: Path, fresh_emulator: Any) -> None:
    # Long enough that no request is answered before the cancel, however slow
    # the machine is at listing and showing.
    fresh_emulator.configure(batch_seconds=200.0)
    name = _requests(work, 8)
    _kill_when_created(work, name)
    listed = _lexibatch(work, "batches", "list")
    assert listed.returncode == 0 and "created" in listed.stdout
    batch_id = next(w for w in listed.stdout.split() if w.startswith("batch_"))
    assert re.search(rf"{batch_id} +│ openai +│ gpt-4o-mini +│ created +│", listed.stdout)
    (row,) = json.loads(_lexibatch(work, "batches", "list", "--json").stdout)
    assert (row["batch_id"], row["state"], row["requests"]) == (batch_id, "created", 8)
    assert row["cost_usd"] == "0" and row["paid_calls"] == 0 and "raw" not in row
    assert row["created_at"].startswith(time.strftime("%Y-"))  # ISO, local time
    shown = _lexibatch(work, "batches", "show", batch_id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^batch +{batch_id} *$", shown.stdout, re.M)
    assert re.search(r"provider now +(validating|in_progress), 0/\d+ succeeded", shown.stdout)
    assert re.search(r"created +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)", shown.stdout)
    as_json = json.loads(_lexibatch(work, "batches", "show", batch_id, "--json").stdout)
    assert as_json["batch_id"] == batch_id and as_json["raw"]["id"] == batch_id
    assert as_json["provider_now"]["state"] in ("validating", "in_progress")
    cancelled = _lexibatch(work, "batches", "cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() in (f"{batch_id}: cancelling", f"{batch_id}: cancelled")
    unknown = _lexibatch(work, "batches", "show", "batch_nope")
    assert unknown.returncode == 2 and "batch_nope" in unknown.stderr
    # Re-running re-attaches and reads what the cancelled batch finished; the
    # user's cancel is final: the rest end as cancelled, and are not sent again.
    fresh_emulator.configure(batch_seconds=0.0)
    rerun = _lexibatch(work, "run", name, "--mode", "batch", "--out", "out.jsonl")
    assert rerun.returncode == 1, rerun.stderr
    assert f"batch {batch_id} was cancelled by the user" in rerun.stderr
    codes = [json.loads(line)["error"]["code"] for line in (work / "out.jsonl").open()]
    assert codes == ["cancelled_by_user"] * 8
    assert fresh_emulator.billing()["batch"]["requests"] == 0
    # Its batch is collected now: there is nothing left to cancel, and the
    # provider is not asked (it would refuse a finished batch).
    again = _lexibatch(work, "batches", "cancel", batch_id)
    assert again.returncode == 2, again.stderr
    assert again.stderr.strip() == (
        f"lexibatch: error: {batch_id} is collected: its batch has ended, there is nothing "
        "to cancel"
    )
    # Asked for, they are sent again, once.
    retried = _lexibatch(
        work, "run", name, "--mode", "batch", "--out", "out.jsonl", "--retry-cancelled"
    )
    assert retried.returncode == 0, retried.stderr
    assert "8 succeeded" in retried.stderr
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


def test_a_cancel_is_journaled_before_the_provider_is_asked(
    work: Path, fresh_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Journaled first: a run that collects the batch between the two, or a
    # cancel command that dies between them, must end the unanswered requests
    # as cancelled by the user, not resend them as merely cancelled.
    from click.testing import CliRunner

    from plugins.cli import main
    from providers.openai import OpenAIBatchEndpoint

    _, shard_id, batch_id = _running_batch(work, fresh_emulator)
    db = work / ".lexibatch" / "lexibatch.db"
    original = OpenAIBatchEndpoint.cancel
    journaled_at_cancel: list[bool] = []

    async def cancel(self: Any, asked: str) -> Any:
        with sqlite3.connect(db, timeout=5) as conn:
            (at,) = conn.execute(
                "SELECT cancelled_by_user_at FROM shards WHERE shard_id = ?", (shard_id,)
            ).fetchone()
        journaled_at_cancel.append(at is not None)
        return await original(self, asked)

    monkeypatch.setattr(OpenAIBatchEndpoint, "cancel", cancel)
    for name in [k for k in os.environ if k.startswith(("LEXIBATCH_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cli-test")
    monkeypatch.chdir(work)
    done = CliRunner().invoke(main, ["batches", "cancel", batch_id])
    assert done.exit_code == 0, done.output
    assert journaled_at_cancel == [True]
    assert fresh_emulator.billing()["batch"]["requests"] == 0


def test_a_second_batch_run_on_a_busy_store_stops_in_one_line(work: Path) -> None:
    db = work / ".lexibatch" / "lexibatch.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    code = (
        "import time\n"
        "from plugins.lease import BatchLease\n"
        f"lease = BatchLease({str(db)!r})\n"
        "lease.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=root, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        name = _requests(work, 3)
        busy = _lexibatch(work, "run", name, "--mode", "batch", "--out", "out.jsonl")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert busy.returncode != 0
    lines = [line for line in busy.stderr.splitlines() if line.strip()]
    assert "another lexibatch process is running the batches of this store" in lines[-1]
    assert "Traceback" not in busy.stderr
    done = _lexibatch(work, "run", name, "--mode", "batch", "--out", "out.jsonl")
    assert done.returncode == 0, done.stderr


def test_a_batch_gone_at_the_provider_is_forgotten_by_hand_then_sent_again(
    work: Path, fresh_emulator: Any
) -> None:
    name, _, batch_id = _running_batch(work, fresh_emulator)
    # The config now names another provider: the batch's own is asked all the same.
    config = work / "lexibatch.toml"
    config.write_text(config.read_text().replace('provider = "openai"', 'provider = "sandbox"'))
    running = _lexibatch(work, "batches", "forget", batch_id, "--yes")
    assert running.returncode == 2
    assert f"batch {batch_id} is still" in running.stderr and "cancel it first" in running.stderr
    assert len(running.stderr.strip().splitlines()) == 1

    fresh_emulator.reset()  # the provider no longer has the batch (nor billed it)
    stuck = _lexibatch(work, "run", name, "--mode", "batch", "--provider", "openai")
    assert stuck.returncode != 0
    assert "lexibatch batches forget" in stuck.stderr
    unconfirmed = _lexibatch(work, "batches", "forget", batch_id)
    assert unconfirmed.returncode == 2
    assert "not found" in unconfirmed.stderr and "add --yes" in unconfirmed.stderr
    forgotten = _lexibatch(work, "batches", "forget", batch_id, "--yes")
    assert forgotten.returncode == 0, forgotten.stderr
    assert forgotten.stdout.strip() == (
        f"{batch_id}: forgotten (the provider: not found); 0 answered requests kept, "
        "8 queued again for the next run (or lexibatch resume --provider openai)"
    )
    again = _lexibatch(work, "batches", "forget", batch_id, "--yes")
    assert again.returncode == 2 and "nothing to forget" in again.stderr

    fresh_emulator.configure(batch_seconds=0.0)
    resumed = _lexibatch(work, "resume", "--provider", "openai")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed (8 queued requests sent)" in resumed.stderr
    rerun = _lexibatch(work, "run", name, "--provider", "openai", "--out", "out.jsonl")
    assert rerun.returncode == 0 and "8 from cache" in rerun.stderr, rerun.stderr
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


def test_a_batch_created_but_not_journaled_can_be_cancelled_by_its_shard(
    work: Path, fresh_emulator: Any
) -> None:
    name, shard_id, batch_id = _running_batch(work, fresh_emulator)
    _as_if_never_journaled(work)
    refused = _lexibatch(work, "batches", "forget", shard_id, "--yes")
    assert refused.returncode == 2
    assert f"batch {batch_id} is still" in refused.stderr
    assert f"lexibatch batches cancel {shard_id}" in refused.stderr
    cancelled = _lexibatch(work, "batches", "cancel", shard_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() in (f"{batch_id}: cancelling", f"{batch_id}: cancelled")
    # The next run finds the cancelled batch and reads what it finished; the
    # user's cancel is final: the rest end as cancelled, sent again only if asked.
    fresh_emulator.configure(batch_seconds=0.0)
    rerun = _lexibatch(work, "run", name, "--mode", "batch", "--out", "out.jsonl")
    assert rerun.returncode == 1, rerun.stderr
    assert f"batch {batch_id} was cancelled by the user" in rerun.stderr
    assert fresh_emulator.billing()["batch"]["requests"] == 0
    retried = _lexibatch(
        work, "run", name, "--mode", "batch", "--out", "out.jsonl", "--retry-cancelled"
    )
    assert retried.returncode == 0, retried.stderr
    assert "8 succeeded" in retried.stderr
    billing = fresh_emulator.billing()
    assert billing["batch"]["requests"] == 8 and billing["duplicates"] == 0


def test_a_create_in_doubt_on_a_list_that_does_not_page_can_still_be_forgotten(
    work: Path, fresh_emulator: Any
) -> None:
    name, shard_id, _ = _running_batch(work, fresh_emulator)
    _as_if_never_journaled(work)
    engine = fresh_emulator.app.engine
    original = engine.list_openai

    async def ignoring_the_cursor(limit: int, after: str | None) -> dict[str, Any]:
        page: dict[str, Any] = await original(limit, None)
        for batch in page["data"]:
            batch["metadata"] = {}  # its batch would be on a later page
        page["has_more"] = True
        return page

    engine.list_openai = ignoring_the_cursor
    stuck = _lexibatch(work, "run", name, "--mode", "batch")
    assert stuck.returncode != 0 and "does not page past" in stuck.stderr
    unconfirmed = _lexibatch(work, "batches", "forget", shard_id)
    assert unconfirmed.returncode == 2
    assert "cannot be looked up" in unconfirmed.stderr and "add --yes" in unconfirmed.stderr
    forgotten = _lexibatch(work, "batches", "forget", shard_id, "--yes")
    assert forgotten.returncode == 0, forgotten.stderr
    assert "8 queued again" in forgotten.stdout


def test_a_batch_is_shown_through_the_batch_api_of_its_own_model(
    tmp_path: Path, fresh_emulator: Any
) -> None:
    import openai

    from plugins.store import Shard, Store

    # LiteLLM picks its batch API by model: the config's model has none, the batch's has.
    (tmp_path / "lexibatch.toml").write_text(
        "[connector]\n"
        'provider = "litellm"\n'
        'model = "anthropic/claude-3-5-haiku-latest"\n'
        "[providers.litellm]\n"
        f'base_url = "{fresh_emulator.base_url}/v1"\n'
    )
    client = openai.OpenAI(base_url=fresh_emulator.base_url + "/v1", api_key="sk-cli-test")
    line = {
        "custom_id": "k-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
    }
    upload = client.files.create(file=("in.jsonl", json.dumps(line).encode()), purpose="batch")
    batch = client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    db = tmp_path / ".lexibatch" / "lexibatch.db"
    db.parent.mkdir()
    with Store(db) as store:
        store.add_shard(
            Shard("shard_x", "litellm", "openai/gpt-4o-mini", state="created", batch_id=batch.id)
        )
    shown = _lexibatch(tmp_path, "batches", "show", batch.id)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^provider now +\w+, \d+/\d+ succeeded", shown.stdout, re.M), shown.stdout
