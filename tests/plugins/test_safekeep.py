"""Paid answers a store refused: kept in the spill, stored once (plugins.safekeep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from plugins.factory import open_connector
from plugins.safekeep import SafeKeep, StoreRefusedError, spill_path, take_back
from plugins.store import CallRecord, Store, StoredResult
from providers.errors import StoreWriteError
from providers.types import Usage
from tests.plugins.batch_helpers import Entry


def _refused() -> None:
    raise StoreWriteError("the store could not be written (database or disk is full)")


def test_a_spill_whose_import_was_cut_short_adds_nothing_twice(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        keep = SafeKeep(store)
        usage = Usage(input_tokens=5, output_tokens=7)
        for n in range(3):
            call = CallRecord("openai", "gpt-4o-mini", "t", "immediate", f"k{n}", usage, 0.5)
            result = StoredResult(f"k{n}", "gpt-4o-mini", "t", "immediate", "{}", usage, 0.5)
            with pytest.raises(StoreRefusedError, match="kept in"):
                keep.store_paid(_refused, [call], result, "openai")
        assert keep.kept == 3 and keep.refused is not None
        spill = tmp_path / "lexibatch.db.unsaved.jsonl"
        text = spill.read_text()
        assert take_back(store) == 3 and not spill.exists()
        # Cut short after its commit, before the spill was deleted: imported again, nothing added.
        spill.write_text(text)
        assert take_back(store) == 0 and not spill.exists()
        assert store.count_results("openai") == 3
        assert store.query("SELECT COUNT(*), TOTAL(cost_usd) FROM calls")[0] == (3, 1.5)
    finally:
        store.close()


def test_an_answer_taken_from_the_spill_ends_the_reask_kept_before_it(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        usage = Usage(input_tokens=5, output_tokens=7)
        misfit = StoredResult("k", "gpt-4o-mini", "t", "immediate", '{"a": 1}', usage, 0.5)
        store.keep_reasked("openai", misfit, state='{"attempt": 1, "added": []}')
        assert store.pending_reask("openai", "k") is not None
        # The re-ask's answer, refused by the store: kept in the spill.
        call = CallRecord("openai", "gpt-4o-mini", "t", "immediate", "k", usage, 0.5)
        answer = StoredResult("k", "gpt-4o-mini", "t", "immediate", '{"a": 2}', usage, 0.5)
        with pytest.raises(StoreRefusedError):
            SafeKeep(store).store_paid(_refused, [call], answer, "openai")
        assert take_back(store) == 1
        stored = store.get_result("openai", "k")
        assert stored is not None and stored.text == '{"a": 2}'
        # Answered: a later run that asks it anew starts from the first question.
        assert store.pending_reask("openai", "k") is None
        assert len(store.retired_results("openai", "k")) == 1  # the misfit stays, paid
    finally:
        store.close()


def test_paid_calls_taken_from_the_spill_end_the_reask_their_failure_used_up(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        usage = Usage(input_tokens=5, output_tokens=7)
        misfit = StoredResult("k", "gpt-4o-mini", "t", "immediate", '{"a": 1}', usage, 0.5)
        store.keep_reasked("openai", misfit, state='{"attempt": 1, "added": []}')
        store.keep_reasked("openai", misfit._replace(key="other"), state='{"attempt": 1}')
        # The last re-ask misfit too, and its ledger row and the end of the re-ask
        # were refused by the store: both are kept in the spill.
        call = CallRecord("openai", "gpt-4o-mini", "t", "immediate", "k", usage, 0.5)
        with pytest.raises(StoreRefusedError):
            SafeKeep(store).store_paid(_refused, [call], None, "openai", spends="k")
        assert take_back(store) == 1
        assert store.query("SELECT COUNT(*) FROM calls")[0] == (1,)
        # Used up: a later run asks it anew instead of resuming the re-ask; another
        # request's kept re-ask is left as it was.
        assert store.pending_reask("openai", "k") is None
        assert store.pending_reask("openai", "other") is not None
    finally:
        store.close()


def test_an_import_the_store_refuses_keeps_the_spill(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        call = CallRecord("openai", "gpt-4o-mini", None, "immediate", "k", cost_usd=0.25)
        with pytest.raises(StoreWriteError):
            SafeKeep(store).store_paid(_refused, [call], None, "openai")
        store._conn.execute("PRAGMA query_only = ON")  # the store refuses every write
        with pytest.raises(StoreWriteError, match="wait there until it can"):
            take_back(store)
        assert (tmp_path / "lexibatch.db.unsaved.jsonl").exists()
        store._conn.execute("PRAGMA query_only = OFF")
        assert take_back(store) == 1
        assert store.query("SELECT COUNT(*) FROM calls")[0] == (1,)
    finally:
        store.close()


async def test_an_answer_another_process_kept_is_taken_from_its_spill_not_paid_again(
    make_settings: Any,
) -> None:
    from providers.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig()) as emu:
        connector = open_connector(make_settings(emu))
        try:
            request = connector.build_request("kept elsewhere", Entry, task="t")
            # Another process on the store was paid for it, and its store refused the answer.
            usage = Usage(input_tokens=3, output_tokens=4)
            call = CallRecord("openai", request.model, "t", "immediate", request.key, usage, 0.1)
            text = '{"word": "kept", "level": "easy"}'
            result = StoredResult(request.key, request.model, "t", "immediate", text, usage, 0.1)
            elsewhere = SafeKeep(Store(connector.store.path))
            with pytest.raises(StoreRefusedError):
                elsewhere.store_paid(_refused, [call], result, "openai")
            elsewhere.store.close()
            answer = await connector.structured("kept elsewhere", Entry, task="t")
            spill_left = spill_path(connector.store)
        finally:
            await connector.aclose()
        billing = emu.billing()
    assert answer == Entry(word="kept", level="easy")
    assert spill_left is not None and not spill_left.exists()
    assert billing["immediate"]["requests"] == 0


def test_the_first_refused_answer_lets_the_reserve_go_and_is_stored_after_all(
    tmp_path: Path,
) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        keep = SafeKeep(store)
        keep.make_reserve()
        reserve = tmp_path / "lexibatch.db.reserve"
        assert reserve.stat().st_size == 2 << 20  # 64 KiB for each of 32 calls in flight
        assert reserve.stat().st_blocks * 512 >= 2 << 20  # allocated, not sparse
        tries: list[bool] = []

        def full_until_room() -> None:
            # Refused while the reserve takes the disk's last room.
            tries.append(reserve.exists())
            if reserve.exists():
                _refused()

        keep.store_paid(full_until_room, [], None, "openai")
        assert tries == [True, False] and keep.refused is not None
        assert keep.kept == 0 and not (tmp_path / "lexibatch.db.unsaved.jsonl").exists()
        # Sending stops all the same: the disk is full.
        assert "could not be written" in str(StoreRefusedError(keep))
    finally:
        store.close()


def test_sending_goes_on_once_the_store_takes_the_spill_back(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    spill = tmp_path / "lexibatch.db.unsaved.jsonl"
    try:
        call = CallRecord("openai", "gpt-4o-mini", None, "immediate", "k", cost_usd=0.25)
        patient = SafeKeep(store)
        with pytest.raises(StoreRefusedError):
            patient.store_paid(_refused, [call], None, "openai")
        assert not patient.may_send()  # not before RECHECK_AFTER

        keep = SafeKeep(store, recheck_after=0.0)
        with pytest.raises(StoreRefusedError, match="kept in"):
            keep.store_paid(_refused, [call], None, "openai")
        store._conn.execute("PRAGMA query_only = ON")  # still full
        assert not keep.may_send()
        assert spill.exists()
        store._conn.execute("PRAGMA query_only = OFF")  # room again
        assert keep.may_send()
        assert (keep.refused, keep.kept) == (None, 0)
        # Both kept entries are stored, once.
        assert store.query("SELECT COUNT(*) FROM calls")[0] == (2,)
        assert not spill.exists()
    finally:
        store.close()


def test_an_answer_the_spill_cannot_take_either_is_said_to_be_lost(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        (tmp_path / "lexibatch.db.unsaved.jsonl").mkdir()  # the spill cannot be written
        keep = SafeKeep(store)
        call = CallRecord("openai", "gpt-4o-mini", None, "immediate", "k", cost_usd=0.25)
        with pytest.raises(StoreRefusedError) as refused:
            keep.store_paid(_refused, [call], None, "openai")
        assert (keep.kept, keep.lost) == (0, 1)
        message = str(refused.value)
        assert "1 answer paid for could not be kept" in message and "it is a folder" in message
        assert "\n" not in message
    finally:
        store.close()


def test_answers_taken_from_the_spill_stay_in_the_ledger_of_the_run_that_paid(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "lexibatch.db")
    paying = Store(path)
    usage = Usage(input_tokens=5, output_tokens=7)
    try:
        keep = SafeKeep(paying)
        for n in range(2):
            call = CallRecord("openai", "gpt-4o-mini", "t", "immediate", f"k{n}", usage, 0.5)
            with pytest.raises(StoreRefusedError):
                keep.store_paid(_refused, [call], None, "openai")
        paid_by = paying.run_id
    finally:
        paying.close()
    rerun = Store(path)
    try:
        assert rerun.run_id != paid_by
        assert take_back(rerun) == 2
        # The re-run paid nothing: `lexibatch cost` of its run counts none of them.
        assert rerun.cost_report(run=rerun.run_id) == []
        [row] = rerun.cost_report(run=paid_by)
        assert (row.requests, row.cost_usd) == (2, 1.0)
        assert rerun.query("SELECT COUNT(*) FROM runs WHERE run_id = ?", (paid_by,)) == [(1,)]
        # A spill of an earlier version names no run: its rows go to the importing run.
        old = {"id": "old0", "provider": "openai", "result": None, "calls": []}
        call = CallRecord("openai", "gpt-4o-mini", "t", "immediate", "k9", usage, 0.25)
        old["calls"] = [{**call._asdict(), "usage": usage.to_dict()}]
        spill_path(rerun).write_bytes(orjson.dumps(old) + b"\n")  # type: ignore[union-attr]
        assert take_back(rerun) == 1
        [mine] = rerun.cost_report(run=rerun.run_id)
        assert (mine.requests, mine.cost_usd) == (1, 0.25)
    finally:
        rerun.close()


def test_a_new_spill_file_is_synced_into_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import stat

    synced: list[tuple[bool, int]] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((stat.S_ISDIR(info.st_mode), info.st_ino))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store = Store(str(tmp_path / "lexibatch.db"))
    try:
        keep = SafeKeep(store)
        folder = tmp_path.stat().st_ino
        for n in range(2):
            call = CallRecord("openai", "gpt-4o-mini", "t", "immediate", f"k{n}", cost_usd=0.1)
            with pytest.raises(StoreRefusedError):
                keep.store_paid(_refused, [call], None, "openai")
            spill = spill_path(store)
            assert spill is not None
            if n == 0:
                # The line, then the folder that now names the new file.
                assert synced == [(False, spill.stat().st_ino), (True, folder)]
                synced.clear()
        # Appended to a file that exists: the line alone.
        assert synced == [(False, spill.stat().st_ino)]
    finally:
        store.close()
