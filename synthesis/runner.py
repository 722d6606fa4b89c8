"""Running the pipeline over a word list into a JSONL file, resumably.

The output file is the run's record: one entry a line, appended as each
word finishes. A line is written with a single ``write`` of the whole line
on a file opened for appending, so an interrupted run leaves whole lines
only; should a crash still leave a partial last line, it is cut off when
the file is next opened. A re-run skips the words whose entries are already
in the file.

Lines are appended in the order words finish; when a run ends (however many
words failed) the file is put in the order of the word list, through a
temporary file renamed into place, so a finished or resumed run reads in
input order. Entries of words the list does not name (an earlier run's
list) follow, in their order.
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

from providers.errors import (
    InputError,
    OutputWriteError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    is_key_refused,
    os_error_reason,
)
from providers.protocol import Connector
from synthesis.components import ALL_COMPONENTS
from synthesis.models import DictionaryEntry
from synthesis.pipeline import ModelFor, synthesize_many
from synthesis.sources import SourceLookup

__all__ = [
    "JsonlWriter",
    "SynthesisSummary",
    "entry_line",
    "load_done",
    "order_entries",
    "repair_jsonl",
    "run_synthesis",
]

_MAX_FAILURES_KEPT = 100


@dataclass
class SynthesisSummary:
    """What a run did.

    Attributes:
        requested: words given.
        skipped: words left out because their entries were already written.
        written: entries written by this run.
        failed: words that failed (they are retried by the next run).
        failures: ``(word, error message)`` of the first failures.
        repaired_bytes: bytes of a partial last line cut off the output file.
        out_path: the output file.
        unreachable: the first failure that said the provider could not be reached.
        key_refused: the first failure that said the provider refused the API key.
    """

    requested: int = 0
    skipped: int = 0
    written: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    repaired_bytes: int = 0
    out_path: Path | None = None
    unreachable: ProviderConnectionError | None = None
    key_refused: ProviderError | None = None


def entry_line(entry: DictionaryEntry) -> bytes:
    """``entry`` as one JSONL line (with its newline)."""
    return orjson.dumps(entry.model_dump(mode="json")) + b"\n"


def repair_jsonl(path: Path) -> int:
    """Cut a partial last line off ``path``; returns the bytes removed (0 if none)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with path.open("rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # Walk back in chunks to the last newline.
        end = size
        chunk = 1 << 16
        keep = 0
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            data = f.read(end - start)
            cut = data.rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            end = start
        f.truncate(keep)
        return size - keep


def load_done(path: Path, *, repair: bool = True) -> set[str]:
    """The words (case-folded) whose entries ``path`` already holds.

    Args:
        path: the JSONL output of earlier runs (missing: nothing done).
        repair: cut a partial last line off the file first; without it the
            file is only read, and a partial last line is not counted.
    """
    done: set[str] = set()
    try:
        if repair:
            repair_jsonl(path)
        f = path.open("rb")
    except FileNotFoundError:
        return done
    except OSError as exc:
        raise OutputWriteError(
            f"cannot read the entries already in {path}: {os_error_reason(exc)} — choose "
            "another --out or fix the folder; nothing was sent",
            path=str(path),
        ) from None
    with f:
        for number, line in enumerate(f, 1):
            if not line.strip() or not line.endswith(b"\n"):
                # Only the last line can lack its newline: an interrupted write.
                continue
            try:
                word = orjson.loads(line)["word"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise InputError(
                    f"{path}:{number}: not an entry line — is this the output of an earlier run?"
                ) from None
            if isinstance(word, str):
                done.add(word.casefold())
    return done


class JsonlWriter:
    """Appends entries to a JSONL file, one whole line per ``write``.

    What the file system refuses (a folder that cannot be made, a read-only
    mount, a full disk) is an :class:`~providers.errors.OutputWriteError`
    naming the file; a line it could not write whole is cut off again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.repaired_bytes = repair_jsonl(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise self._error(exc, before=True) from None
        self.lines = 0

    def write(self, entry: DictionaryEntry) -> None:
        """Append ``entry`` as one line.

        Raises:
            OutputWriteError: the line could not be written.
        """
        if self._fd is None:
            raise ValueError(f"{self.path} is closed")
        view = memoryview(entry_line(entry))
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            with contextlib.suppress(OSError):
                repair_jsonl(self.path)
            raise self._error(exc, before=False) from None
        self.lines += 1

    def close(self) -> None:
        """Flush to disk and close."""
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise self._error(exc, before=False) from None
            finally:
                os.close(self._fd)
                self._fd = None

    def _error(self, exc: OSError, *, before: bool) -> OutputWriteError:
        then = (
            "nothing was sent"
            if before
            else "every answer is kept in the store: run the same command again once it can "
            "be written (nothing is paid twice)"
        )
        return OutputWriteError(
            f"cannot write the entries to {self.path}: {os_error_reason(exc)} — choose another "
            f"--out or fix the folder (permissions, free space); {then}",
            path=str(self.path),
        )

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def order_entries(path: Path, words: Sequence[str]) -> bool:
    """Put the entry lines of ``path`` in the order of ``words``; returns whether it moved any.

    Words are compared case-insensitively; lines of other words keep their
    order after them. The file is rewritten only when the order changes,
    through ``path.tmp`` and a rename, so a reader never sees half of it.
    Only each line's place is held in memory, never the lines: the entries
    of a large job are gigabytes, and they are read twice instead (once to
    find each line's word, once to copy the lines in order).

    Raises:
        OutputWriteError: the file could not be rewritten (it is left as it was).
    """
    rank: dict[str, int] = {}
    for index, word in enumerate(words):
        rank.setdefault(word.casefold(), index)
    try:
        source = path.open("rb")
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise OutputWriteError(
            f"cannot read {path} to order it: {os_error_reason(exc)}", path=str(path)
        ) from None
    with source:
        try:
            keys, starts = _line_places(source, rank)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot read {path} to order it: {os_error_reason(exc)}", path=str(path)
            ) from None
        if all(a < b for a, b in pairwise(keys)):
            return False
        _write_in_order(path, source, sorted(keys), starts)
    return True


def _line_places(source: BinaryIO, rank: Mapping[str, int]) -> tuple[array[int], array[int]]:
    """Each line's sort key (its word's rank, then its position, in one integer)
    and where each line starts (one more: where the file ends)."""
    after = len(rank)
    keys: array[int] = array("q")
    starts: array[int] = array("q", [0])
    end = 0
    for position, line in enumerate(source):
        try:
            word = orjson.loads(line)["word"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            order = after
        else:
            order = rank.get(str(word).casefold(), after)
        keys.append(order << _POSITION_BITS | position)
        end += len(line)
        starts.append(end)
    return keys, starts


# A line's position in the low bits of its sort key, its word's rank above them.
_POSITION_BITS = 32
_POSITION_MASK = (1 << _POSITION_BITS) - 1


def _write_in_order(path: Path, source: BinaryIO, order: list[int], starts: array[int]) -> None:
    """Copy the lines of ``source`` into ``path`` in ``order`` (through ``path.tmp``)."""
    if path.is_symlink():
        # The link's target is rewritten; the link stays.
        path = Path(os.path.realpath(path))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as fh:
            for key in order:
                position = key & _POSITION_MASK
                source.seek(starts[position])
                line = source.read(starts[position + 1] - starts[position])
                # A last line cut short of its newline is not run into the next one.
                fh.write(line if line.endswith(b"\n") else line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputWriteError(
            f"cannot write the entries to {path} in input order: {os_error_reason(exc)} — "
            "they are all there, in the order they finished",
            path=str(path),
        ) from None


async def run_synthesis(
    words: Sequence[str],
    connector: Connector,
    *,
    components: Iterable[str] = ALL_COMPONENTS,
    sources: SourceLookup | None,
    out_path: Path,
    done: set[str],
    batch_mode: bool,
    progress: Callable[[str, int, int], None] | None,
    on_entry: Callable[[DictionaryEntry], Any] | None = None,
    model_for: ModelFor | Mapping[str, str] | None = None,
    max_in_flight: int | None = None,
) -> SynthesisSummary:
    """Synthesize the words not yet done and append their entries to ``out_path``.

    Args:
        words: the headwords (already cleaned and de-duplicated).
        connector: where the model calls go.
        components: component names to run.
        sources: where words are looked up.
        out_path: the JSONL output; created if missing, appended to otherwise.
        done: words (compared case-insensitively) to skip, e.g. from
            :func:`load_done`.
        batch_mode: run through the provider's batch endpoint.
        progress: called as ``progress(word, finished, total)`` after each
            word ends, successfully or not.
        on_entry: called with each entry after its line is written (the
            CLI puts it in the store).
        model_for: task → model, recorded in entries' metadata.
        max_in_flight: words run at once (see :func:`synthesize_many`).

    Raises:
        providers.errors.UserError: the run cannot go on (bad key, budget, ...).
    """
    done_keys = {w.casefold() for w in done}
    todo = [w for w in words if w.casefold() not in done_keys]
    summary = SynthesisSummary(
        requested=len(words), skipped=len(words) - len(todo), out_path=out_path
    )
    total = len(todo)
    finished = 0

    def tick(word: str) -> None:
        nonlocal finished
        finished += 1
        if progress is not None:
            progress(word, finished, total)

    with JsonlWriter(out_path) as writer:
        summary.repaired_bytes = writer.repaired_bytes

        def wrote(entry: DictionaryEntry) -> None:
            writer.write(entry)
            summary.written += 1
            if on_entry is not None:
                on_entry(entry)
            tick(entry.word)

        def failed(word: str, error: Exception) -> None:
            summary.failed += 1
            if (
                summary.unreachable is None
                and isinstance(error, ProviderConnectionError)
                and not isinstance(error, ProviderTimeoutError)
            ):
                summary.unreachable = error
            if summary.key_refused is None and is_key_refused(error):
                summary.key_refused = error
            if len(summary.failures) < _MAX_FAILURES_KEPT:
                summary.failures.append((word, str(error) or type(error).__name__))
            tick(word)

        if todo:
            await synthesize_many(
                todo,
                connector,
                components=components,
                sources=sources,
                batch_mode=batch_mode,
                on_entry=wrote,
                on_error=failed,
                model_for=model_for,
                max_in_flight=max_in_flight,
                collect=False,
            )
    # Whatever finished, in the order the user listed the words.
    order_entries(out_path, words)
    return summary
