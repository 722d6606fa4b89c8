"""The few calls the table modules make of the database engine under the store.

Each table module (:mod:`~plugins.store.cache`, :mod:`~plugins.store.costs`,
:mod:`~plugins.store.journal`, :mod:`~plugins.store.shards`,
:mod:`~plugins.store.documents`) is a mixin of :class:`Backend`: it writes
SQL and speaks through these methods only, never to a connection. The
engine (:class:`~plugins.store.engine.SQLiteEngine`) implements them, and
:class:`~plugins.store.Store` puts the engine and the tables together on one
connection, so that a transaction can span tables. Another engine
implementing this class could stand in for SQLite without a table module
changing.

Statements use ``?`` placeholders (``?N`` for a numbered one); a statement
for :meth:`Backend._read_for_keys` holds ``{marks}`` where the keys go.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Self, TypeVar

from plugins.store.keys import key_cell

__all__ = ["PAGE", "Backend", "ConstraintError"]

T = TypeVar("T")

#: Rows fetched per query by the iterators, so no read cursor stays open across a yield.
PAGE: Final = 5000


class ConstraintError(Exception):
    """A write broke a rule of the schema (a primary key or a unique column already taken).

    Its text is the engine's own description, e.g. ``UNIQUE constraint failed:
    shards.batch_id``.
    """


class Backend(ABC):
    """What a database engine under the store provides to the table modules.

    Writes run under the engine's write lock and commit together: a write
    made while a transaction is open (:meth:`_write` nested in another, or
    inside ``in_transaction``) joins it as a savepoint.
    """

    #: The database the store was opened on.
    path: str
    #: Unique to this instance: the ledger rows it writes carry it.
    run_id: str

    @abstractmethod
    def in_transaction(self, *, durable: bool = False) -> AbstractContextManager[Self]:
        """Group several calls, on any tables, into one atomic commit (savepoints when nested).

        ``durable``: the commit must survive a power loss.
        """

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of the query ``sql`` (retried while another writer holds the lock)."""

    @abstractmethod
    def _read_for_keys(self, sql: str, scope: str | None, keys: Iterable[bytes | str]) -> list[Any]:
        """The rows of ``sql`` for every key of ``keys``.

        ``sql`` takes the scope (provider or namespace; ``None``: none) and
        then the keys in an ``IN ({marks})`` list; the keys are sent in
        sorted chunks under the engine's bound-parameter limit.
        """

    def _read_keys(self, sql: str, scope: str | None, keys: Iterable[str]) -> list[Any]:
        """:meth:`_read_for_keys` for request keys, sent as stored (:mod:`plugins.store.keys`)."""
        return self._read_for_keys(sql, scope, {key_cell(k) for k in keys})

    @abstractmethod
    def _changes(self, sql: str, rows: list[tuple[Any, ...]], *, durable: bool = False) -> int:
        """Run ``sql`` once per row of ``rows`` in one write; returns how many rows changed.

        Raises:
            StoreWriteError: the database could not be written.
            ConstraintError: a row broke a rule of the schema.
        """

    @abstractmethod
    def _write(self, fn: Callable[[], T], *, durable: bool = False) -> T:
        """Run ``fn`` in its own write transaction (a savepoint inside an open one).

        ``fn`` runs its statements with :meth:`_execute` and :meth:`_fetch_one`;
        if it raises, none of them is kept. ``durable``: the commit must
        survive a power loss (journal writes that precede a paid side effect).

        Raises:
            StoreWriteError: the database could not be written.
            ConstraintError: a statement broke a rule of the schema.
        """

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement inside :meth:`_write`; returns how many rows it changed."""

    @abstractmethod
    def _execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run ``sql`` once per row inside :meth:`_write`; returns how many rows changed."""

    @abstractmethod
    def _fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row of a query run inside :meth:`_write` (``None``: no row)."""
