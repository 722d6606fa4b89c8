"""Paid answers the store cannot take: kept safe until it can, never paid for again.

An immediate answer is paid for the moment it arrives. Should the store then
refuse the write that keeps it (a full disk, a read-only remount, a damaged
file), the answer would be lost — and with it every other answer in flight
at that moment, up to ``max_concurrency`` of them — and the next run would
pay for them all again. Three things prevent that:

- **Stop sending.** The first refused write stops the immediate strategy
  from sending anything more (:attr:`SafeKeep.refused`); what is already in
  flight is answered and kept. A process that lives on (a server) tries the
  store again after :data:`RECHECK_AFTER` seconds, when a request comes: it
  sends again once the store takes the spill back.
- **A space reserve.** Beside the store lies ``DB.reserve``, a file of
  :func:`reserve_bytes` made when the first immediate call is sent. At the
  first refused write it is deleted and the write tried once more: on a disk
  that filled up, the space it frees lets the answers in flight be stored
  after all.
- **A spill.** An answer the store still refuses is appended, with its
  ledger rows and the id of the run that paid for it, to
  ``DB.unsaved.jsonl`` and synced (the file, and its folder when the file is
  new) before its caller hears of the failure. The next connector on the
  store (any mode, any command that opens one) stores what the spill holds
  before it sends anything — each entry once, even if that import is itself
  interrupted, its ledger rows under the run that paid — then deletes it.

The run ends with one error that names the store, the spill when it holds
anything, and what to do; the same command then takes every kept answer
from the store and pays nothing again for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from plugins.store import CallRecord, StoredResult
from providers.errors import StoreWriteError, os_error_reason
from providers.types import Usage

if TYPE_CHECKING:
    from plugins.store import Store

__all__ = [
    "RECHECK_AFTER",
    "SafeKeep",
    "StoreRefusedError",
    "reserve_bytes",
    "reserve_path",
    "spill_path",
    "take_back",
]

log = logging.getLogger("lexibatch.safekeep")

#: Room the space reserve keeps per call in flight: storing one answer adds
#: a few pages to SQLite's log (and a line to the spill).
RESERVE_PER_CALL = 64 << 10
#: The smallest and the largest space reserve.
RESERVE_MIN, RESERVE_MAX = 1 << 20, 16 << 20

#: Seconds after a refusal before the store is tried again (:meth:`SafeKeep.may_send`).
RECHECK_AFTER = 30.0

# Documents naming the spill entries already stored (an import is exactly-once).
_IMPORTED = "lexibatch.safekeep.imported"


def reserve_bytes(in_flight: int) -> int:
    """The size of the space reserve for ``in_flight`` calls at once (``max_concurrency``)."""
    return min(max(in_flight * RESERVE_PER_CALL, RESERVE_MIN), RESERVE_MAX)


#: What the reserve's and the spill's names add to the store's.
RESERVE_SUFFIX = ".reserve"
SPILL_SUFFIX = ".unsaved.jsonl"


def reserve_path(store: Store) -> Path | None:
    """The space reserve beside ``store`` (``None`` for an in-memory store)."""
    return None if store.path == ":memory:" else Path(f"{store.path}{RESERVE_SUFFIX}")


def spill_path(store: Store) -> Path | None:
    """The spill of paid answers beside ``store`` (``None`` for an in-memory store)."""
    return None if store.path == ":memory:" else Path(f"{store.path}{SPILL_SUFFIX}")


class StoreRefusedError(StoreWriteError):
    """The store refused a write during an immediate run: sending stopped there.

    One such error reaches every request the run did not finish. What it
    says is read when it is shown, once the calls in flight have ended: how
    many paid answers wait in the spill, and where.
    """

    def __init__(self, keep: SafeKeep) -> None:
        self._keep = keep
        super().__init__(keep.summary())

    def __str__(self) -> str:
        return self._keep.summary()


class SafeKeep:
    """Keeps the paid answers of one immediate strategy that its store refuses.

    Args:
        store: the store the answers belong in.
        in_flight: how many calls may be in flight at once (sizes the reserve).
        recheck_after: seconds after a refusal before the store is tried again.
    """

    def __init__(
        self, store: Store, *, in_flight: int = 32, recheck_after: float = RECHECK_AFTER
    ) -> None:
        self.store = store
        self.reserve_bytes = reserve_bytes(in_flight)
        self.recheck_after = recheck_after
        self._refused_at = 0.0
        self.reserve = reserve_path(store)
        self.spill = spill_path(store)
        #: The store's first refusal in this run; set, nothing more is sent.
        self.refused: StoreWriteError | None = None
        #: Answers kept in the spill, and answers neither stored nor kept.
        self.kept = 0
        self.lost = 0
        self._spill_error: OSError | None = None
        self._reserved = False

    def make_reserve(self) -> None:
        """Lay the space reserve down, if it is not there (once per run; never fails)."""
        if self._reserved or self.reserve is None:
            return
        self._reserved = True
        try:
            if self.reserve.stat().st_size >= self.reserve_bytes:
                return
        except FileNotFoundError:
            pass
        except OSError:
            return
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                # Blocks really allocated: a sparse file would free nothing.
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, self.reserve_bytes)
                else:
                    os.write(fd, bytes(self.reserve_bytes))
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            # No room for it (or no such call here): the run goes on without one.
            with contextlib.suppress(OSError):
                self.reserve.unlink()
            log.info("no space reserve beside the store (%s): %s", self.reserve, exc)

    def store_paid(
        self,
        write: Callable[[], object],
        calls: Sequence[CallRecord],
        result: StoredResult | None,
        provider: str,
        *,
        spends: str | None = None,
    ) -> None:
        """Run ``write`` (which stores a paid answer and its ledger rows); keep them if refused.

        Args:
            write: one transaction storing ``calls`` and ``result``.
            calls: the ledger rows of the paid calls.
            result: the answer (``None``: paid calls without a usable answer).
            provider: the provider ``result`` belongs to.
            spends: the key whose kept re-ask ``write`` ends without an answer
                (its re-asks used up); an answer ends its own key's.

        Raises:
            StoreRefusedError: the store refused it, also after the reserve
                was let go; it is kept in the spill (or, if even that could
                not be written, counted as lost).
        """
        try:
            write()
            return
        except StoreWriteError as exc:
            self._note(exc)
        # Only the first answer refused frees the reserve; those after it
        # were refused with its room already free.
        if self._let_reserve_go():
            try:
                write()
                return
            except StoreWriteError:
                pass
        self._keep(calls, result, provider, spends)
        raise StoreRefusedError(self)

    def refuse(self, error: StoreWriteError) -> StoreRefusedError:
        """Stop sending: the store refused ``error``'s write (the first refusal is kept)."""
        self._note(error)
        return StoreRefusedError(self)

    def may_send(self) -> bool:
        """Whether sending may go on: no refusal, or the store takes writes again.

        Within :attr:`recheck_after` seconds of the last refusal it may not.
        After that the spill is stored (a write that shows whether the store
        has room again); once it is, the reserve is laid down anew and
        sending goes on. A store with nothing spilled is tried by the next
        request's own claim.
        """
        if self.refused is None:
            return True
        if time.monotonic() - self._refused_at < self.recheck_after:
            return False
        try:
            take_back(self.store)
        except StoreWriteError:
            self._refused_at = time.monotonic()
            return False
        log.warning("the store %s takes writes again: sending goes on", self.store.path)
        self.refused = None
        self.kept = 0
        self._reserved = False
        return True

    def _note(self, error: StoreWriteError) -> None:
        if self.refused is None:
            self.refused = error
        self._refused_at = time.monotonic()

    def summary(self) -> str:
        """The one line that tells the user what happened and what to do."""
        refused = self.refused
        what = (
            str(refused) if refused is not None else f"the store {self.store.path} refused a write"
        )
        if self.kept:
            what += (
                f"; {self.kept} answer{'s' if self.kept != 1 else ''} already paid for "
                f"{'are' if self.kept != 1 else 'is'} kept in {self.spill} and stored by the "
                "next run before it sends anything (never paid for again)"
            )
        if self.lost:
            where = (
                f"{self.spill}: {os_error_reason(self._spill_error)}"
                if self._spill_error is not None
                else "the store is in memory"
            )
            what += (
                f"; {self.lost} answer{'s' if self.lost != 1 else ''} paid for could not be kept "
                f"({where}) and will be asked again"
            )
        return what

    def has_spill(self) -> bool:
        """Whether paid answers wait in the spill (of this run or another process)."""
        return self.spill is not None and self.spill.exists()

    def _let_reserve_go(self) -> bool:
        """Delete the space reserve; whether there was one to free."""
        if self.reserve is None:
            return False
        try:
            self.reserve.unlink()
        except OSError:
            return False
        log.warning(
            "the store %s refused a write: its space reserve was let go to keep the answers "
            "in flight; nothing more is sent",
            self.store.path,
        )
        return True

    def _keep(
        self,
        calls: Sequence[CallRecord],
        result: StoredResult | None,
        provider: str,
        spends: str | None,
    ) -> None:
        entry = {
            "id": secrets.token_hex(8),
            # The run that paid: the ledger rows stay its own when a later run stores them.
            "run": self.store.run_id,
            "provider": provider,
            "result": None if result is None else _result_dict(result),
            "calls": [_call_dict(c) for c in calls],
        }
        if spends is not None:
            entry["spends"] = spends
        line = orjson.dumps(entry) + b"\n"
        if self.spill is None:
            self.lost += 1
            return
        try:
            new = not self.spill.exists()
            with _locked(self.spill, create=True) as fd:
                os.write(fd, line)
                os.fsync(fd)
            if new:
                # The file's name in its folder is what a crash must not lose.
                _sync_folder(self.spill.parent)
        except OSError as exc:
            self.lost += 1
            self._spill_error = exc
            log.error("a paid answer could not be kept in %s: %s", self.spill, exc)
            return
        self.kept += 1


def take_back(store: Store) -> int:
    """Store what the spill beside ``store`` holds, then delete it; how many entries were new.

    Each entry is stored once: the entries stored are recorded in the same
    commit, so an import cut short and run again adds nothing twice.

    Raises:
        StoreWriteError: the store still cannot be written; the spill is kept.
    """
    path = spill_path(store)
    if path is None or not path.exists():
        return 0
    try:
        with _locked(path, create=False) as fd:
            entries = list(_entries(_read_all(fd), path))
            new = _store_entries(store, entries)
            path.unlink()
    except FileNotFoundError:
        # Another run took it back meanwhile.
        return 0
    except OSError as exc:
        raise StoreWriteError(
            f"paid answers kept in {path} could not be read ({os_error_reason(exc)}): "
            "make the file readable, then run the same command again"
        ) from None
    if new:
        log.warning("%d paid answers kept in %s were stored", new, path)
    return new


def _store_entries(store: Store, entries: list[dict[str, Any]]) -> int:
    try:
        with store.in_transaction():
            done = store.has_documents(_IMPORTED, [e["id"] for e in entries])
            todo = [e for e in entries if e["id"] not in done]
            for entry in todo:
                # A spill written before entries named their run: the importing run's.
                run = entry.get("run")
                store.record_calls(
                    (_call_from(c) for c in entry["calls"]),
                    run_id=run if isinstance(run, str) and run else None,
                )
                if entry["result"] is not None:
                    result = _result_from(entry["result"])
                    store.put_results(entry["provider"], [result])
                    # Answered: a re-ask of it kept before is not resumed by a later run.
                    store.spend_reasks(entry["provider"], result.key)
                spends = entry.get("spends")
                if isinstance(spends, str):
                    # Its re-asks were used up: a later run asks it anew.
                    store.spend_reasks(entry["provider"], spends)
            store.put_documents(_IMPORTED, ((e["id"], {"n": len(e["calls"])}) for e in todo))
    except StoreWriteError as exc:
        raise StoreWriteError(
            f"{exc}; the paid answers kept in {spill_path(store)} wait there until it can"
        ) from exc
    return len(todo)


def _entries(data: bytes, path: Path) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            # A line cut short by a crash while it was written: its caller was
            # never told it was kept, and it cannot be read back.
            log.error("%s:%d: a kept answer was cut short and is skipped", path, number)
            continue
        if isinstance(entry, dict):
            yield entry


def _sync_folder(folder: Path) -> None:
    """Sync ``folder`` itself, so that a file just created in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def _locked(path: Path, *, create: bool) -> Iterator[int]:
    """``path`` opened for appending under an exclusive lock, the very file at ``path``.

    A writer that waited while an importer deleted the file opens it anew,
    so nothing is appended to a file that is gone.
    """
    flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    while True:
        fd = os.open(path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = path.stat().st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield fd
                return
            if not create:
                raise FileNotFoundError(path)
        finally:
            os.close(fd)


def _result_dict(r: StoredResult) -> dict[str, Any]:
    return {
        "key": r.key,
        "model": r.model,
        "task": r.task,
        "mode": r.mode,
        "text": r.text,
        "usage": r.usage.to_dict(),
        "cost_usd": r.cost_usd,
        "request_id": r.request_id,
        "batch_id": r.batch_id,
    }


def _result_from(d: dict[str, Any]) -> StoredResult:
    return StoredResult(
        key=d["key"],
        model=d["model"],
        task=d["task"],
        mode=d["mode"],
        text=d["text"],
        usage=Usage.from_dict(d["usage"]),
        cost_usd=d["cost_usd"],
        request_id=d["request_id"],
        batch_id=d["batch_id"],
    )


def _call_dict(c: CallRecord) -> dict[str, Any]:
    data = {**c._asdict(), "usage": c.usage.to_dict()}
    # The key's stored form is made again when the call is recorded.
    del data["cell"]
    return data


def _call_from(d: dict[str, Any]) -> CallRecord:
    return CallRecord(**{**d, "usage": Usage.from_dict(d["usage"])})
