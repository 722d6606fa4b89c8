"""Documents: a namespaced JSON key-value table (synthesized entries, run metadata).

``documents``
    one JSON object per ``(namespace, key)``; a later write replaces it,
    unless it is an :meth:`~DocumentTables.add_documents`, which keeps the first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from plugins.store.backend import PAGE, Backend
from plugins.store.rows import dumps, second

__all__ = ["DocumentTables"]


class DocumentTables(Backend):
    """The ``documents`` table (a mixin of :class:`~plugins.store.Store`)."""

    def put_document(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        """Store (or replace) one JSON document."""
        self.put_documents(namespace, [(key, value)])

    def put_documents(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Store (or replace) many JSON documents in one transaction; returns how many."""
        return self._write_documents("REPLACE", namespace, items)

    def add_documents(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Store the documents whose key is not stored yet, in one transaction; how many.

        A document already stored, by this process or another, is left as it
        is: the first writer of a key wins, whatever was read before.
        """
        return self._write_documents("IGNORE", namespace, items)

    def _write_documents(
        self, conflict: str, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> int:
        """Insert ``items``; a stored key is replaced (``REPLACE``) or kept (``IGNORE``)."""
        now = time.time()
        rows = [(namespace, key, dumps(dict(value)), now) for key, value in items]
        rows.sort(key=second)
        return self._changes(
            f"INSERT OR {conflict} INTO documents (namespace, key, value, updated_at) "
            "VALUES (?,?,?,?)",
            rows,
        )

    def get_document(self, namespace: str, key: str) -> dict[str, Any] | None:
        """One document, if it is stored."""
        rows = self._read(
            "SELECT value FROM documents WHERE namespace = ? AND key = ?", (namespace, key)
        )
        if not rows:
            return None
        value: dict[str, Any] = orjson.loads(rows[0][0])
        return value

    def iter_documents(self, namespace: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every document of a namespace as ``(key, value)``, in key order."""
        last: str | None = None
        while True:
            if last is None:
                sql = "SELECT key, value FROM documents WHERE namespace = ? ORDER BY key LIMIT ?"
                params: tuple[Any, ...] = (namespace, PAGE)
            else:
                sql = (
                    "SELECT key, value FROM documents WHERE namespace = ? AND key > ? "
                    "ORDER BY key LIMIT ?"
                )
                params = (namespace, last, PAGE)
            rows = self._read(sql, params)
            for key, value in rows:
                yield key, orjson.loads(value)
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def document_keys(self, namespace: str) -> Iterator[str]:
        """The keys of a namespace, in key order, without reading their documents."""
        last: str | None = None
        while True:
            if last is None:
                sql = "SELECT key FROM documents WHERE namespace = ? ORDER BY key LIMIT ?"
                params: tuple[Any, ...] = (namespace, PAGE)
            else:
                sql = (
                    "SELECT key FROM documents WHERE namespace = ? AND key > ? ORDER BY key LIMIT ?"
                )
                params = (namespace, last, PAGE)
            rows = self._read(sql, params)
            for (key,) in rows:
                yield key
            if len(rows) < PAGE:
                return
            last = rows[-1][0]

    def delete_documents(self, namespace: str, keys: Iterable[str]) -> int:
        """Remove documents of a namespace; returns how many there were."""
        rows = [(namespace, key) for key in sorted(set(keys))]
        return self._changes("DELETE FROM documents WHERE namespace = ? AND key = ?", rows)

    def has_documents(self, namespace: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` have a document in ``namespace``."""
        sql = "SELECT key FROM documents WHERE namespace = ? AND key IN ({marks})"
        return {row[0] for row in self._read_for_keys(sql, namespace, keys)}
