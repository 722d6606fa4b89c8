"""What the emulator remembers: files, batches, billing, and how often it saw a request.

Without a state directory everything lives in memory. With one, it survives
a restart (even ``kill -9``): file contents are files on disk, file metadata
and batch records are JSON documents written atomically (temporary file then
rename), and billing plus the seen-counters are an append-only event log that
is replayed on start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from providers.emulator import ids

__all__ = ["FileRecord", "State"]

_FILE_TTL = 30 * 24 * 3600  # batch files expire 30 days after upload


@dataclass(slots=True)
class FileRecord:
    """An uploaded or produced file."""

    id: str
    purpose: str
    filename: str
    size: int
    created_at: int
    data: bytes | None = None
    path: Path | None = None

    def obj(self, *, fresh_upload: bool = False) -> dict[str, Any]:
        """The OpenAI ``file`` object (an upload answer has ``expires_at: null``, as real ones)."""
        return {
            "object": "file",
            "id": self.id,
            "purpose": self.purpose,
            "filename": self.filename,
            "bytes": self.size,
            "created_at": self.created_at,
            "expires_at": None if fresh_upload else self.created_at + _FILE_TTL,
            "status": "processed",
            "status_details": None,
        }

    def content(self) -> bytes:
        """The whole content."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
    tmp.replace(path)


class State:
    """Files, batch records, billing and seen-counters, optionally persisted under ``root``."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.files: dict[str, FileRecord] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._log_fd: int | None = None
        #: Called with a file's id before the file is deleted (the batch engine's hook).
        self.before_delete: Callable[[str], None] | None = None
        self._clear_memory()
        if root is not None:
            self._open(root)

    # ------------------------------------------------------------ lifecycle

    def _clear_memory(self) -> None:
        self.files = {}
        self.batches = {}
        self.totals: dict[str, list[int]] = {"immediate": [0, 0, 0], "batch": [0, 0, 0]}
        self.billed: dict[str, dict[str, int]] = {"immediate": {}, "batch": {}}
        self.billed_batches: set[str] = set()
        self.seen_bodies: dict[str, int] = defaultdict(int)
        self.seen_items: dict[str, int] = defaultdict(int)
        self.seen_batches: dict[str, int] = defaultdict(int)
        # Batches refused for the enqueued-token limit since the emulator started (or was reset).
        self.queue_refusals = 0
        self.key_refusals = 0

    def _open(self, root: Path) -> None:
        (root / "files").mkdir(parents=True, exist_ok=True)
        (root / "batches").mkdir(parents=True, exist_ok=True)
        for meta in (root / "files").glob("*.json"):
            try:
                m = orjson.loads(meta.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            path = root / "files" / f"{m['id']}.data"
            if path.exists():
                self.files[m["id"]] = FileRecord(
                    m["id"], m["purpose"], m["filename"], m["size"], m["created_at"], path=path
                )
        for doc in (root / "batches").glob("*.json"):
            try:
                rec = orjson.loads(doc.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            self.batches[rec["id"]] = rec
        log = root / "events.log"
        if log.exists():
            for line in log.read_bytes().split(b"\n"):
                if not line:
                    continue
                try:
                    self._apply(orjson.loads(line))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut short by a kill
        self._log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def close(self) -> None:
        """Close the event log."""
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    def reset(self) -> None:
        """Forget everything, on disk too."""
        self._clear_memory()
        if self.root is not None:
            self.close()
            for sub in ("files", "batches"):
                shutil.rmtree(self.root / sub, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (self.root / "events.log").unlink()
            self._open(self.root)

    # ---------------------------------------------------------------- files

    def add_file(
        self, data: bytes, purpose: str, filename: str, file_id: str | None = None
    ) -> FileRecord:
        """Store ``data`` as a new file."""
        rec = FileRecord(file_id or ids.file_id(), purpose, filename, len(data), int(time.time()))
        if self.root is None:
            rec.data = data
        else:
            path = self.root / "files" / f"{rec.id}.data"
            _atomic_write(path, data)
            rec.path = path
            meta = {k: getattr(rec, k) for k in ("id", "purpose", "filename", "size", "created_at")}
            _atomic_write(self.root / "files" / f"{rec.id}.json", orjson.dumps(meta))
        self.files[rec.id] = rec
        return rec

    def delete_file(self, file_id: str) -> bool:
        """Forget a file (on disk too); whether there was one."""
        if file_id in self.files and self.before_delete is not None:
            self.before_delete(file_id)
        rec = self.files.pop(file_id, None)
        if rec is None:
            return False
        if self.root is not None:
            for suffix in (".json", ".data"):
                with contextlib.suppress(FileNotFoundError):
                    (self.root / "files" / f"{file_id}{suffix}").unlink()
        return True

    # -------------------------------------------------------------- batches

    def save_batch(self, rec: dict[str, Any]) -> None:
        """Remember (and persist) a batch record."""
        self.batches[rec["id"]] = rec
        if self.root is not None:
            _atomic_write(self.root / "batches" / f"{rec['id']}.json", orjson.dumps(rec))

    # -------------------------------------------------------------- billing

    def _write(self, event: dict[str, Any]) -> None:
        if self._log_fd is not None:
            os.write(self._log_fd, orjson.dumps(event) + b"\n")

    def _apply(self, e: dict[str, Any]) -> None:
        if e["t"] == "i":
            key = e["k"]
            self.seen_bodies[key] += 1
            if e["b"]:
                self._bill("immediate", [key], e["in"], e["out"])
        elif e["t"] == "b":
            if e["id"] in self.billed_batches:
                return
            self.billed_batches.add(e["id"])
            for cid in e["seen"]:
                self.seen_items[cid] += 1
            self.seen_batches[e["bk"]] += 1
            if e["keys"]:
                self._bill("batch", e["keys"], e["in"], e["out"])

    def _bill(self, mode: str, keys: list[str], in_tokens: int, out_tokens: int) -> None:
        t = self.totals[mode]
        t[0] += len(keys)
        t[1] += in_tokens
        t[2] += out_tokens
        counts = self.billed[mode]
        for k in keys:
            counts[k] = counts.get(k, 0) + 1

    def immediate_call(self, key: str, billed: bool, in_tokens: int, out_tokens: int) -> None:
        """Record an immediate call of body ``key`` (billed only if it succeeded)."""
        event = {"t": "i", "k": key, "b": billed, "in": in_tokens, "out": out_tokens}
        self._write(event)
        self._apply(event)

    def batch_done(
        self,
        batch_id: str,
        batch_key: str,
        seen: list[str],
        billed: list[str],
        in_tokens: int,
        out_tokens: int,
    ) -> None:
        """Record a finished batch: its items were seen, the ``billed`` ones paid for."""
        if batch_id in self.billed_batches:
            return
        event = {
            "t": "b",
            "id": batch_id,
            "bk": batch_key,
            "seen": seen,
            "keys": billed,
            "in": in_tokens,
            "out": out_tokens,
        }
        self._write(event)
        self._apply(event)

    def billing(self) -> dict[str, Any]:
        """The billing report (see the package docstring)."""
        report: dict[str, Any] = {}
        dups = 0
        for mode in ("immediate", "batch"):
            requests, in_tokens, out_tokens = self.totals[mode]
            counts = self.billed[mode]
            mode_dups = sum(c - 1 for c in counts.values() if c > 1)
            dups += mode_dups
            report[mode] = {
                "requests": requests,
                "input_tokens": in_tokens,
                "output_tokens": out_tokens,
                "duplicates": mode_dups,
            }
        report["by_key"] = {
            "immediate": dict(self.billed["immediate"]),
            "batch": dict(self.billed["batch"]),
        }
        report["duplicates"] = dups
        report["queue_refusals"] = self.queue_refusals
        report["key_refusals"] = self.key_refusals
        return report
