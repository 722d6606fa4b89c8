"""A store whose file or folder cannot be written is one line saying so, not "not a store"."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from plugins.store import Store
from providers.errors import ConfigError, StoreWriteError


def _refusing(code: int) -> object:
    def setup(self: Store, busy_timeout: float) -> None:
        error = sqlite3.OperationalError("unable to open database file")
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
        raise error

    return setup


@pytest.mark.parametrize("code", [sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY])
def test_a_store_that_cannot_be_opened_for_writing_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    monkeypatch.setattr(Store, "_setup", _refusing(code))
    with pytest.raises(StoreWriteError, match=r"cannot be opened for writing.*connector\.db"):
        Store(tmp_path / "s.db")


def test_a_file_that_is_not_a_store_is_still_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(ConfigError, match="not a usable lexibatch store"):
        Store(tmp_path / "s.db")


def test_a_store_below_a_regular_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    with pytest.raises(StoreWriteError, match="not a folder"):
        Store(tmp_path / "afile" / "s.db")
