"""Commands that only read the store never make one: a mistyped --db is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import _lexibatch


@pytest.mark.parametrize(
    "command",
    [
        ("cost",),
        ("cost", "--json"),
        ("batches", "list"),
        ("batches", "show", "batch_x"),
        ("batches", "cancel", "batch_x"),
        ("show", "apple"),
    ],
)
def test_a_db_that_does_not_exist_is_named_and_not_made(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    done = _lexibatch(*command, "--db", "typo/store.db", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "lexibatch: error: no store at typo/store.db: --db must name the store a run made "
        "(by default .lexibatch/lexibatch.db in the folder the run started in)"
    )
    assert not (tmp_path / "typo").exists()


def test_before_any_run_the_default_store_reads_as_empty_and_is_not_made(tmp_path: Path) -> None:
    cost = _lexibatch("cost", cwd=tmp_path)
    assert cost.returncode == 0 and cost.stdout.strip() == "no paid calls recorded yet"
    listed = _lexibatch("batches", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.strip() == "no batches in the journal"
    shown = _lexibatch("batches", "show", "batch_x", cwd=tmp_path)
    assert shown.returncode == 2 and "no batch 'batch_x' in the journal" in shown.stderr
    assert not (tmp_path / ".lexibatch").exists()
