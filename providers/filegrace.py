"""A terminal batch whose error file is late: waited for a while, then read without it.

OpenAI and Mistral name a batch's output and error files once it has ended,
sometimes a poll or two after its state says so, and OpenAI has ended a
batch with failed requests and no error file at all. The answers in the
output file are paid for, so a missing output file is waited for however
long it takes (with a warning); a missing error file only for the grace:
then the batch is read with what it has, and its failed requests, in no
file, are the caller's to re-queue (the batch's reconciliation says so).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from providers.types import BatchInfo

__all__ = ["FileGrace"]

log = logging.getLogger(__name__)


class FileGrace:
    """Judges, poll by poll, whether an ended batch missing a file can be read."""

    def __init__(self, seconds: float) -> None:
        """``seconds``: how long an ended batch may miss its error file."""
        self.seconds = seconds
        # batch id -> monotonic time it was first seen ended with a file missing
        self._missing_since: dict[str, float] = {}
        self._warned: set[str] = set()

    def judge(self, info: BatchInfo) -> BatchInfo:
        """``info``, declared ready once only its error file has been missing for the grace."""
        if not info.state.terminal or info.results_ready:
            self._missing_since.pop(info.id, None)
            return info
        first = self._missing_since.setdefault(info.id, time.monotonic())
        if time.monotonic() - first < self.seconds:
            return info
        if info.succeeded and info.output_file_id is None:
            if info.id not in self._warned:
                self._warned.add(info.id)
                log.warning(
                    "batch %s: %d answers are done but their output file is not there "
                    "yet; still waiting for it",
                    info.id,
                    info.succeeded,
                )
            return info
        del self._missing_since[info.id]
        return dataclasses.replace(info, results_ready=True)
