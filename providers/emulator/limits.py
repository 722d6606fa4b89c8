"""Batches refused at create for their size, as the real APIs refuse them.

Enabled by ``openai_max_bytes`` / ``anthropic_max_bytes`` (see
:class:`~providers.emulator.config.EmulatorConfig`); the request-count
limits (``*_max_requests``) live with the batch validation in
:mod:`providers.emulator.jobs`.
"""

from __future__ import annotations

import orjson

from providers.emulator.config import EmulatorConfig
from providers.emulator.state import FileRecord

__all__ = ["anthropic_too_large", "openai_too_large"]


def openai_too_large(cfg: EmulatorConfig, rec: FileRecord) -> str | None:
    """The 400 message of a ``POST /v1/batches`` whose input file is over the byte limit."""
    limit = cfg.openai_max_bytes
    if limit is None or rec.size <= limit:
        return None
    data = rec.content()
    first = data[: data.find(b"\n")] if b"\n" in data else data
    try:
        model = orjson.loads(first)["body"]["model"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        model = "requested"
    return (
        f"The batch input file is larger than the {limit} maximum for the {model} model. "
        "Please try again with a smaller batch."
    )


def anthropic_too_large(cfg: EmulatorConfig, body: bytes) -> bool:
    """Whether a ``POST /v1/messages/batches`` body is over the byte limit (a 413)."""
    limit = cfg.anthropic_max_bytes
    return limit is not None and len(body) > limit
