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


def test_a_folder_given_as_the_store_is_one_line_that_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        Store(tmp_path)
    message = str(refused.value)
    assert message == (
        f"{tmp_path}: cannot open the store: it is a folder — give --db (or connector.db) the "
        "path of a store file, in a folder this process may write"
    )


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (sqlite3.SQLITE_READONLY, "the file (or its folder) is read-only — make it writable"),
        (sqlite3.SQLITE_FULL, "free disk space or set connector.db to a writable file"),
    ],
)
def test_a_write_the_file_refuses_gets_the_advice_that_fits(
    tmp_path: Path, code: int, advice: str
) -> None:
    with Store(tmp_path / "s.db") as store:
        error = sqlite3.OperationalError("refused")
        error.sqlite_errorcode = code  # type: ignore[attr-defined]
        with pytest.raises(StoreWriteError) as refused, store._writing():
            raise error
    assert advice in str(refused.value)
    assert "what was stored before is kept" in str(refused.value)
