"""Settings of the emulator and the model-name markers that force a fault."""

from __future__ import annotations

import re
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["MARKERS", "EmulatorConfig", "Markers", "context_window", "parse_markers"]

Fraction = Field(default=0.0, ge=0.0, le=1.0)


class EmulatorConfig(BaseModel):
    """Everything that shapes the emulator's answers, timing and faults.

    Fractions are probabilities in [0, 1]; each decision is a deterministic
    function of ``seed``, the request (its body, or its ``custom_id`` in a
    batch) and how often the emulator has already seen that request, so a
    retry can succeed and a test can predict the outcome.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = 0
    """Seed mixed into every answer and fault decision."""

    batch_seconds: float = Field(default=0.0, ge=0.0)
    """Wall-clock seconds from creation until a batch is complete (0: at the first poll)."""

    output_file_missing_polls: int = Field(default=0, ge=0)
    """Polls for which a completed batch still shows ``output_file_id: null``."""

    latency: float = Field(default=0.0, ge=0.0)
    """Seconds every immediate call waits before answering."""

    step_latency: float = Field(default=0.0, ge=0.0)
    """Seconds a file upload, a batch creation or a file download waits *after*
    doing its work and before answering: the window in which a client that
    dies has made the side effect without hearing of it (crash tests)."""

    rate_limit: float = Fraction
    """Fraction of immediate calls answered 429 with a ``retry-after`` header."""

    retry_after: float = Field(default=0.05, ge=0.0)
    """Seconds sent in ``retry-after`` (and ``retry-after-ms``) on a 429."""

    server_error: float = Fraction
    """Fraction of immediate calls answered 500 or 503 (OpenAI) / 500 or 529 (Anthropic)."""

    slow: float = Fraction
    """Fraction of immediate calls delayed by ``slow_seconds``."""

    slow_seconds: float = Field(default=2.0, ge=0.0)
    """Delay of a slow call."""

    bill_abandoned: bool = True
    """Whether a call whose client stopped waiting (a client timeout shorter than a slow
    answer) is still answered and billed, as the real APIs do."""

    batch_fail: float = Fraction
    """Fraction of batches that end ``failed`` (Anthropic: every item ``errored``)."""

    batch_fail_pattern: str | None = None
    """Regular expression: batches whose model matches it always fail."""

    batch_expire: float = Fraction
    """Fraction of batches that end ``expired`` with only part of the items done."""

    batch_expire_pattern: str | None = None
    """Regular expression: batches whose model matches it always expire."""

    batch_cancel: float = Fraction
    """Fraction of batches that end ``cancelled`` with only part of the items done."""

    batch_cancel_pattern: str | None = None
    """Regular expression: batches whose model matches it are always cancelled."""

    partial_done: float = Field(default=0.5, ge=0.0, le=1.0)
    """Share of items done (rounded down) in a batch that expires or is cancelled by a fault.

    Never all of them: at least one item is left undone, so the fault shows in a batch of
    any size (a batch of one runs none)."""

    item_error: float = Fraction
    """Fraction of batch items that end in the error file (Anthropic: ``errored``)."""

    schema_invalid: float = Fraction
    """Fraction of answers whose content does not fit the requested schema."""

    batch_create_rate_limit: int = Field(default=0, ge=0)
    """How many of the next batch creates (any API) are answered with an ordinary 429 —
    a rate limit on creating batches, with ``retry-after``, worded as each API words a
    rate limit (not a full queue: see ``enqueued_token_limit``). Each such answer uses one."""

    download_cuts: int = Field(default=0, ge=0)
    """How many of the next file and results downloads break off mid-body: the
    answer promises the whole file, sends its first line and part of the second,
    then closes the connection (as a dropped network does). Each cut uses one."""

    drop_result_lines: int = Field(default=0, ge=0)
    """How many of the next answered batch items are left out of the batch's result
    files although its counts say they ran (never billed). Each dropped line uses one.
    OpenAI and Anthropic batches."""

    foreign_result_lines: int = Field(default=0, ge=0)
    """How many result lines with a ``custom_id`` that was never sent are added to the
    next batch to end (all of them go to that one batch). OpenAI and Anthropic batches."""

    openai_max_requests: int | None = Field(default=None, ge=1)
    """Reject OpenAI batches with more lines than this (the real limit is 50,000)."""

    anthropic_max_requests: int | None = Field(default=None, ge=1)
    """Reject Anthropic batches with more requests than this (the real limit is 100,000)."""

    openai_max_bytes: int | None = Field(default=None, ge=1)
    """Refuse (400, at create) OpenAI batches whose input file is over this many bytes
    (the real limit is 200 MB)."""

    anthropic_max_bytes: int | None = Field(default=None, ge=1)
    """Refuse (413 ``request_too_large``) Anthropic batch creates over this many bytes
    (the real limit is 256 MB)."""

    enqueued_token_limit: int | None = Field(default=None, ge=1)
    """Tokens one model may have in batches that have not ended (``None``: no limit); a
    batch past it is refused as the real APIs refuse it (see :mod:`providers.emulator.queuecap`)."""

    api_keys: list[str] | None = None
    """The API keys accepted (``None``: any non-empty key); others get each API's 401."""

    rpm_limit: int = Field(default=1_000_000, ge=1)
    """Immediate calls per sliding minute; past it, 429 (reported in the rate-limit headers)."""

    tpm_limit: int = Field(default=1_000_000_000, ge=1)
    """Tokens (prompt and answer) per sliding minute; past it, 429."""

    rate_window: float = Field(default=60.0, gt=0.0)
    """Seconds over which ``rpm_limit`` and ``tpm_limit`` count (a minute, as their names say)."""

    context_window: int = Field(default=200_000, ge=1)
    """Prompt tokens a model takes; a longer prompt is refused as the real APIs refuse it."""

    context_windows: dict[str, int] = Field(default_factory=dict)
    """Context windows of some models (by name or name prefix), over ``context_window``."""

    poll_retry_after: float = Field(default=0.0, ge=0.0)
    """``retry-after`` seconds sent with a message batch in progress (real API: 10; 0: none)."""

    finalizing: float = Field(default=0.2, ge=0.0, le=0.8)
    """Share of ``batch_seconds`` an OpenAI batch spends ``finalizing`` (0: never seen)."""

    parallel: bool = True
    """Answer batches of 20,000+ items in two processes (a forked child does half), on a
    machine of three cores or more (see :mod:`providers.emulator.workers`)."""

    @field_validator("batch_fail_pattern", "batch_expire_pattern", "batch_cancel_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            re.compile(value)
        return value


def context_window(cfg: EmulatorConfig, model: str) -> int:
    """The context window of ``model``: the longest matching ``context_windows`` entry."""
    if not cfg.context_windows:
        return cfg.context_window
    name = model.split("@", 1)[0]
    best: tuple[int, int] | None = None
    for prefix, tokens in cfg.context_windows.items():
        if name.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), tokens)
    return best[1] if best is not None else cfg.context_window


MARKERS = (
    "fail-batch",
    "expire",
    "cancel",
    "item-error",
    "schema-invalid",
    "rate-limit",
    "server-error",
    "slow",
)
"""Fault names usable as model-name markers (``model@NAME`` or ``model@NAME-once``)."""


class Markers:
    """The faults a model name asks for: ``always`` every time, ``once`` the first time."""

    __slots__ = ("always", "once")

    def __init__(self, always: frozenset[str], once: frozenset[str]) -> None:
        self.always = always
        self.once = once

    def wants(self, name: str, seen: int) -> bool:
        """Whether fault ``name`` is forced for a request already seen ``seen`` times."""
        return name in self.always or (name in self.once and seen == 0)

    def __bool__(self) -> bool:
        return bool(self.always or self.once)


_NO_MARKERS = Markers(frozenset(), frozenset())


@lru_cache(maxsize=4096)
def parse_markers(model: str) -> Markers:
    """The markers at the end of ``model`` (``gpt-4o-mini@item-error@slow-once``)."""
    if "@" not in model:
        return _NO_MARKERS
    always: set[str] = set()
    once: set[str] = set()
    for part in model.split("@")[1:]:
        name = part.strip().lower()
        if name.endswith("-once") and name[:-5] in MARKERS:
            once.add(name[:-5])
        elif name in MARKERS:
            always.add(name)
    return Markers(frozenset(always), frozenset(once))
