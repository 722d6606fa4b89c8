"""Fixtures of the store tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plugins.store import Store


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A database path in a directory that does not exist yet."""
    return tmp_path / "state" / "lexibatch.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """A fresh store on disk (WAL mode, as in real runs)."""
    with Store(db_path) as opened:
        yield opened
