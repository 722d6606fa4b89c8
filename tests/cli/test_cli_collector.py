"""``lexibatch run`` keeps its requests out of the collector's way, and only while it runs."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import plugins.jobs
from plugins.cli import main

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}


@pytest.fixture
def requests_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "")
    lines = [
        json.dumps({"id": f"q{i}", "prompt": f"question {i}", "schema": SCHEMA}) for i in range(5)
    ]
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _collector() -> tuple[int, tuple[int, int, int]]:
    return gc.get_freeze_count(), gc.get_threshold()


def test_the_requests_are_frozen_while_answered_and_the_collector_is_restored(
    requests_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _collector()
    seen: list[tuple[int, tuple[int, int, int]]] = []
    answer = plugins.jobs.run_requests

    async def watched(connector: Any, items: list[Any], out: Path) -> Any:
        seen.append(_collector())
        # Every request read is out of the collector's sight: frozen objects
        # are in no generation.
        listed = {id(o) for o in gc.get_objects()}
        assert items and all(gc.is_tracked(i) and id(i) not in listed for i in items)
        return await answer(connector, items, out)

    monkeypatch.setattr(plugins.jobs, "run_requests", watched)
    done = CliRunner().invoke(main, ["run", str(requests_file), "--out", "out.jsonl"])
    assert done.exit_code == 0, done.output
    assert len(Path("out.jsonl").read_text().splitlines()) == 5
    ((during_frozen, during_threshold),) = seen
    assert during_frozen > before[0]
    assert during_threshold[2] >= 100 and during_threshold[:2] == before[1][:2]
    assert _collector() == before


def test_a_run_that_fails_restores_the_collector_too(
    requests_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _collector()

    async def broken(connector: Any, items: list[Any], out: Path) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plugins.jobs, "run_requests", broken)
    done = CliRunner().invoke(main, ["run", str(requests_file), "--out", "out.jsonl"])
    assert done.exit_code != 0
    assert _collector() == before


def test_a_run_leaves_its_objects_out_of_the_collection_at_exit_once(
    requests_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import atexit

    from plugins.cli import session

    before = _collector()
    registered: list[Any] = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(session, "_final_collection_skipped", False)
    for _ in range(2):
        done = CliRunner().invoke(main, ["run", str(requests_file), "--out", "out.jsonl"])
        assert done.exit_code == 0, done.output
    # Frozen when the process exits, not now: the collector is as it was.
    assert registered == [gc.freeze]
    assert _collector() == before


def test_the_requests_are_frozen_before_any_collection_sees_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEXIBATCH_LOAD_PLUGINS", "")
    # Enough lines that reading them makes more objects than the young
    # generation's threshold: a collection is due as soon as reading ends.
    lines = [json.dumps({"id": f"q{i}", "prompt": f"question {i}"}) for i in range(400)]
    Path("requests.jsonl").write_text("\n".join(lines) + "\n")
    read = plugins.jobs.read_requests
    items: list[Any] = []
    seen_unfrozen: list[bool] = []

    def kept_read(*args: Any, **kwargs: Any) -> Any:
        items.extend(read(*args, **kwargs))
        return items

    def first_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and items and not seen_unfrozen:
            # Frozen objects are in no generation.
            listed = {id(o) for o in gc.get_objects()}
            seen_unfrozen.append(any(id(i) in listed for i in items))

    monkeypatch.setattr(plugins.jobs, "read_requests", kept_read)
    gc.callbacks.append(first_collection)
    try:
        done = CliRunner().invoke(main, ["run", "requests.jsonl", "--out", "out.jsonl"])
    finally:
        gc.callbacks.remove(first_collection)
    assert done.exit_code == 0, done.output
    assert len(items) == 400
    assert seen_unfrozen == [False]
