"""Deleting a batch's files at the provider once its results are stored.

A batch of OpenAI's leaves up to three files in the organisation's file
storage: its input (up to 200 MB), its output and its error file; Mistral's
jobs the same three; Gemini's batches their uploaded input and results file
(the project holds 20 GB of files), and the batch itself, which keeps an
inline batch's answers. At the scale of hundreds of batches they would fill
that storage, so each is deleted once the batch is collected
(``batch.delete_files``, on by default) — by every provider whose batch
endpoint can delete them (:class:`~providers.protocol.BatchFiles`).

A shard given up before any batch of it ran — refused for the provider's
queue, or as too large, and sent again split — leaves its uploaded input
file behind too; it is never used again (the smaller shards upload their
own), so it is deleted alike.

Journaled: the files to delete are written to the store in the same
transaction that marks the shard collected (or given up), so a crash can
never delete a file whose results were not stored, or that a batch still
to be made needs, and a crash before the deletion leaves the list behind
for the next run to finish. A file the provider no longer has counts as
deleted; one it refuses to delete stays listed and is tried again on the
next run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from providers.errors import LexibatchError
from providers.protocol import BatchFiles

if TYPE_CHECKING:
    from plugins.store import Shard, Store
    from providers.protocol import BatchEndpoint
    from providers.types import BatchInfo

__all__ = ["NAMESPACE", "FileCleanup"]

log = logging.getLogger("lexibatch.batch")

#: The store's document namespace of files still to delete, keyed by shard id.
NAMESPACE = "batch-files-to-delete"


class FileCleanup:
    """Journals and deletes the provider files of collected batches of one provider."""

    def __init__(self, store: Store, endpoint: BatchEndpoint, provider: str, *, enabled: bool):
        self.store = store
        self.provider = provider
        self.files: BatchFiles | None = (
            endpoint if enabled and isinstance(endpoint, BatchFiles) else None
        )

    def plan(self, shard_id: str, batch: BatchInfo) -> bool:
        """Journal ``batch``'s files for deletion; whether there is anything to delete.

        Call it inside the transaction that marks the shard collected.
        """
        if self.files is None:
            return False
        return self._journal(shard_id, batch.id, self.files.batch_files(batch))

    def plan_unused_input(self, shard: Shard) -> bool:
        """Journal the uploaded input file of a shard given up before any batch of it ran;
        whether there is one to delete.

        Call it inside the transaction that gives the shard up (its requests
        go to new shards, which upload files of their own).
        """
        if self.files is None or not shard.input_file_id:
            return False
        return self._journal(shard.shard_id, shard.batch_id, [shard.input_file_id])

    def _journal(self, shard_id: str, batch_id: str | None, file_ids: list[str]) -> bool:
        if not file_ids:
            return False
        self.store.put_document(
            NAMESPACE,
            shard_id,
            {"provider": self.provider, "batch_id": batch_id, "files": file_ids},
        )
        return True

    def pending(self) -> list[str]:
        """Shards of this provider whose files are journaled but not yet deleted."""
        if self.files is None:
            return []
        return [
            key
            for key, doc in self.store.iter_documents(NAMESPACE)
            if doc.get("provider") == self.provider
        ]

    async def run(self, shard_id: str) -> int:
        """Delete the files journaled for ``shard_id``; returns how many were deleted.

        A failure is logged and leaves the rest journaled for the next run;
        it never fails the batch, whose results are stored already.
        """
        if self.files is None:
            return 0
        doc = self.store.get_document(NAMESPACE, shard_id)
        if doc is None:
            return 0
        left = [str(f) for f in doc.get("files") or ()]
        deleted = 0
        while left:
            try:
                if await self.files.delete_file(left[0]):
                    deleted += 1
            except LexibatchError as exc:
                batch_id = doc.get("batch_id")
                log.warning(
                    "%s: file %s could not be deleted at the provider (%s); "
                    "the next run tries again",
                    f"batch {batch_id}" if batch_id else f"shard {shard_id}",
                    left[0],
                    exc,
                )
                self.store.put_document(NAMESPACE, shard_id, {**doc, "files": left})
                return deleted
            left.pop(0)
        self.store.delete_documents(NAMESPACE, [shard_id])
        return deleted
