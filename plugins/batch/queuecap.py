"""Room in the provider's queue: shards held while their model's enqueued tokens would pass the cap.

Providers cap what one model may have waiting in an organisation's batches
(OpenAI: enqueued tokens per model — a batch over it ends ``failed`` with
``token_limit_exceeded``; Anthropic, Gemini and Mistral refuse the create
with a 429 whose message names the queue).

**Ahead** (``max_enqueued_tokens`` in ``[providers.NAME]``, optionally per
model): this run knows, per model, the tokens of its shards whose batch has
not ended — their input tokens, estimated with the one estimator ``--estimate``
uses (:func:`providers.tokens.estimate_tokens`), as the providers count a
queue in prompt tokens — and
holds a shard before its batch is created while adding it would pass the cap.
A shard bigger than the cap alone is split before it is sent (halved until
it fits, as :mod:`plugins.batch.oversize` does for a batch refused as too
large); a single request bigger than the cap is sent when nothing else of its
model is in flight (with a warning). Shards of earlier runs whose batch is
still in flight count from the start. Tokens are released when the shard's
batch ends.

**After a refusal**: a batch refused for the queue waits until one of this
run's batches ends (then asks again; refused again, it waits for the next) —
or, when none is in flight (another member of the organisation may hold the
queue), for a backoff that grows from ``batch.poll_interval`` to
``batch.max_poll_interval`` — and is created again. A shard is bigger than
the provider's limit by itself when the refusal states a limit below the
shard's estimate: it is split at once to fit; one refused :data:`SPLIT_AFTER`
times while none of this run's batches ended (the provider may count more
tokens than the estimate, or every shard in flight is too big) is halved. None of
this is a retry round or fails a request, and nothing is billed for a
refused batch; the executor journals the shard back to ``uploaded`` before
it waits (or forgets it, its requests queued again, before it is split), so
a crash resumes it alike.

**Which 429 is a full queue** (:func:`create_refusal`): one whose code or
message names the queue (OpenAI's ``token_limit_exceeded`` and "Enqueued
token limit reached …", Anthropic's and the emulator's "enqueued tokens"
wording) waits for room at once, without a retry round. Any other 429 — a
rate limit on creating batches, say — goes through the one retry policy
(:mod:`plugins.retry`, honouring ``retry-after``); if it is still refused
when the policy gives up, the shard stops, journaled before create, and the
same command resumes it. A provider that words a full batch queue as any
exhausted quota (Gemini: "You exceeded your current quota …",
``RESOURCE_EXHAUSTED``) says so when it registers
(``BatchSpec.queue_full_as_quota``): a 429 of its that outlasts the retry
policy is taken for a full queue.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from plugins.batch.journal import SchemaBook
from providers.errors import QUEUE_FULL, RateLimitError
from providers.tokens import estimate_tokens
from providers.types import BatchInfo, BatchState, Request

if TYPE_CHECKING:
    from plugins.store import Shard, Store

__all__ = [
    "SPLIT_AFTER",
    "QueueRefusedError",
    "QueueRoom",
    "create_refusal",
    "refused_at_create",
    "refused_for_queue",
    "request_tokens",
    "shard_tokens",
    "stated_limit",
]

log = logging.getLogger("lexibatch.batch")

#: The code OpenAI gives a batch failed because its model's queue was full
#: (and a plugin's refusal of a create for its full queue: providers.errors.QUEUE_FULL).
QUEUE_FULL_CODE: Final = QUEUE_FULL

#: Refusals in a row, with nothing of this run in flight, after which a shard is halved.
SPLIT_AFTER: Final = 3
#: Seconds within which a second wait for one model's room is logged at info level.
SAID_EVERY: Final = 60.0

# Error codes naming a full batch queue: OpenAI's for enqueued tokens, and for
# enqueued requests ("Enqueued request limit reached for … Limit: 1,000,000
# enqueued requests").
_QUEUE_CODES: Final = frozenset({QUEUE_FULL_CODE, "request_limit_exceeded"})
# Wording naming a full batch queue: OpenAI's "Enqueued token limit reached for
# gpt-4o-mini in organization org-… Limit: 2,000,000 enqueued tokens. Please try
# again once some in_progress batches have been completed.", Anthropic's
# "… limit of N enqueued tokens for MODEL in message batches being processed"
# and the emulator's "Enqueued token limit of N reached for MODEL batches".
_QUEUE_WORDS: Final = re.compile(
    r"enqueued (?:token|request|prompt)|enqueued tokens|in_progress batches|"
    r"batches being processed|batch queue",
    re.IGNORECASE,
)
# The limit a refusal states: "Limit: 2,000,000 enqueued tokens",
# "limit of 1,234 enqueued tokens", "Enqueued token limit of 1,234 reached".
_STATED: Final = (
    re.compile(r"([\d,]+)\s+enqueued tokens", re.IGNORECASE),
    re.compile(r"enqueued token limit of ([\d,]+)", re.IGNORECASE),
)

#: What a 429 at create says: the queue is full, or a rate limit like any other.
CreateRefusal = Literal["queue", "rate"]


class QueueRefusedError(Exception):
    """The provider refused to create a batch because its model's queue is full.

    Not a provider failure: the executor, which raises it once the shard is
    journaled back to before create, catches it and waits for room.
    """


def refused_for_queue(info: BatchInfo) -> bool:
    """Whether a batch ended failed because its model's queue was full (nothing ran)."""
    return info.state is BatchState.FAILED and any(
        reason.startswith(QUEUE_FULL_CODE) for reason in info.errors
    )


def create_refusal(error: BaseException) -> CreateRefusal | None:
    """What a failed create says of the queue: ``"queue"`` (full), ``"rate"`` (a 429 like
    any other) or ``None`` (not a 429).

    A 429 proves the batch was not made: waiting for room and creating it
    again never pays twice.
    """
    if not isinstance(error, RateLimitError):
        return None
    if error.code in _QUEUE_CODES or _QUEUE_WORDS.search(error.message):
        return "queue"
    return "rate"


def refused_at_create(error: BaseException, *, quota_worded: bool = False) -> bool:
    """Whether a create refused once the retry policy gave up on it is a full queue.

    A 429 naming the queue is one (it never reaches the policy: see
    :func:`create_refusal`); so is any lasting 429 when ``quota_worded`` (the
    provider words a full queue as any exhausted quota, as its
    ``BatchSpec.queue_full_as_quota`` declares). Any other lasting 429 is a
    rate limit the policy gave up on, not a full queue.
    """
    refusal = create_refusal(error)
    return refusal == "queue" or (refusal == "rate" and quota_worded)


def stated_limit(why: str) -> int | None:
    """The enqueued-token limit a refusal states, if it states one."""
    for pattern in _STATED:
        found = pattern.search(why)
        if found is not None:
            digits = found.group(1).replace(",", "")
            if digits.isdigit() and int(digits) > 0:
                return int(digits)
    return None


def request_tokens(request: Request) -> int:
    """The tokens one request holds in the queue: its input tokens.

    The providers count a queue in prompt tokens ("enqueued prompt tokens";
    what a request may output does not count), so the output guess that
    ``--estimate`` prices is left out here.
    """
    return estimate_tokens(request)[0]


class QueueRoom:
    """The tokens each model has enqueued by this run, and the waits for room.

    A shard is counted under each model it holds requests of (an Anthropic
    batch may mix models), with the tokens of that model's requests.

    Args:
        cap: the cap of a model (``None``: no cap ahead).
        capped: whether any model has a cap (else no tokens are estimated).
        backoff: ``(first, longest)`` seconds waited after a refusal when none
            of this run's batches is in flight.
        notify: called as ``notify(shard_id, model, enqueued, cap, waiting)``
            when a shard starts (``waiting`` true) and stops waiting.
    """

    def __init__(
        self,
        cap: Callable[[str], int | None],
        capped: bool,
        backoff: tuple[float, float],
        notify: Callable[[str, str, int, int | None, bool], Any],
    ) -> None:
        self._cap = cap
        self.capped = capped
        self._backoff = backoff
        self._notify = notify
        self._held: dict[str, Mapping[str, int]] = {}
        self._enqueued: dict[str, int] = {}
        # Refusals in a row with nothing of ours in flight (for the backoff).
        self._idle_refusals = 0
        # Batches of this run that ended (released), to wake who waits for one.
        self._ended = 0
        # Set, and replaced, at every release: what waiters sleep on.
        self._changed = asyncio.Event()
        #: Seconds spent waiting for room, all shards together.
        self.waited = 0.0
        #: Waits for room, all shards together.
        self.waits = 0
        # Each refused shard's refusals since the last batch of this run ended:
        # shard id → (batches ended when its count began, refusals).
        self._streak: dict[str, tuple[int, int]] = {}
        # When a wait for each model was last said as a warning (time.monotonic()).
        self._said: dict[str, float] = {}

    def cap(self, model: str) -> int | None:
        """The cap of ``model`` (``None``: none ahead)."""
        return self._cap(model)

    def enqueued(self, model: str) -> int:
        """Tokens of ``model`` in this run's shards whose batch has not ended."""
        return self._enqueued.get(model, 0)

    def in_flight(self, model: str | None = None) -> int:
        """This run's shards counted (of ``model``, or all) whose batch has not ended."""
        return sum(1 for held in self._held.values() if model is None or model in held)

    def hold(self, shard_id: str, tokens: Mapping[str, int]) -> None:
        """Count a shard's tokens by model now, without waiting (its batch is, or may be, in
        flight)."""
        if shard_id in self._held:
            return
        self._held[shard_id] = dict(tokens)
        for model, count in tokens.items():
            self._enqueued[model] = self._enqueued.get(model, 0) + count

    def release(self, shard_id: str) -> None:
        """The shard's batch ended (or never will be made): its tokens leave the count."""
        if self._drop(shard_id):
            self._ended += 1
            self._idle_refusals = 0

    def _drop(self, shard_id: str) -> bool:
        """Take the shard's tokens out of the count (and wake who waits); whether it was in."""
        held = self._held.pop(shard_id, None)
        if held is None:
            return False
        for model, count in held.items():
            self._enqueued[model] -= count
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        return True

    async def admit(self, shard_id: str, tokens: Callable[[], Mapping[str, int]]) -> None:
        """Wait until the shard fits under the cap of each of its models, then count it.

        ``tokens`` (the shard's tokens by model) is called once.
        """
        if shard_id in self._held:
            return
        need = tokens()
        for model, count in need.items():
            cap = self._cap(model)
            if cap is not None and count > cap:
                # A shard of one request (a bigger one is split before it gets here).
                log.warning(
                    "shard %s alone holds %d tokens for %s, more than the cap of %d enqueued "
                    "tokens: it is sent when nothing else of that model is in flight",
                    shard_id,
                    count,
                    model,
                    cap,
                )
        full = self._full(need)
        if full is not None:
            await self._wait(shard_id, full, lambda: self._full(need) is None, "")
        self.hold(shard_id, need)

    def over_cap(self, need: Mapping[str, int]) -> tuple[str, float] | None:
        """The first model whose cap the shard passes alone, and the share of it that fits.

        ``None`` when the shard fits under every cap (or none is configured).
        """
        for model, count in need.items():
            cap = self._cap(model)
            if cap is not None and count > cap:
                return model, cap / count
        return None

    def _full(self, need: Mapping[str, int]) -> str | None:
        """The first model whose cap ``need`` would pass, or ``None``."""
        for model, count in need.items():
            cap = self._cap(model)
            if cap is None or not self.in_flight(model):
                continue
            if self.enqueued(model) + count > cap:
                return model
        return None

    async def refused(
        self,
        shard_id: str,
        model: str,
        why: str,
        *,
        tokens: Callable[[], Mapping[str, int]] | None = None,
    ) -> float | None:
        """The provider refused the shard's batch for its queue: wait for room, or split it.

        Returns once one of this run's batches has ended (or none is left in
        flight), or after the backoff when none is in flight — ``None``:
        create it again. With ``tokens`` (the shard's estimated tokens by
        model; given for a shard that can be split), a shard bigger than the
        limit the refusal states, or refused :data:`SPLIT_AFTER` times while
        no batch of this run ended, is not waited for: the share of it that
        fits the provider's queue is returned at once (half, when the refusal
        states no limit the estimate passes).
        """
        # Its refused batch held no room: its end makes none for the others.
        self._drop(shard_id)
        if tokens is not None:
            share = self._split_share(shard_id, why, tokens)
            if share is not None:
                return share
        if self._held:
            ended = self._ended
            await self._wait(shard_id, model, lambda: self._ended != ended or not self._held, why)
            return None
        count, self._idle_refusals = self._idle_refusals, self._idle_refusals + 1
        first, longest = self._backoff
        pause = min(first * 2**count, longest)
        cap = self._cap(model)
        log.log(
            self._level(model),
            "waiting for queue room for %s: the provider refused shard %s (%s) and none of "
            "this run's batches is in flight; asking again in %.3g s",
            model,
            shard_id,
            why,
            pause,
        )
        self._notify(shard_id, model, self.enqueued(model), cap, True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.sleep(pause)
        finally:
            self._waited(shard_id, loop.time() - started)
            self._notify(shard_id, model, self.enqueued(model), cap, False)
        return None

    def _split_share(
        self, shard_id: str, why: str, tokens: Callable[[], Mapping[str, int]]
    ) -> float | None:
        """The share of a refused shard that fits the provider's queue, or ``None`` (wait).

        A shard is split when the refusal states a limit below its estimate,
        or when it was refused :data:`SPLIT_AFTER` times while none of this
        run's batches ended (batches that end make room: one refused while
        they run waits for them, and is not counted against).
        """
        largest = max(tokens().values(), default=0)
        limit = stated_limit(why)
        if limit is not None and largest > limit:
            self._streak.pop(shard_id, None)
            return limit / largest
        since, count = self._streak.get(shard_id, (self._ended, 0))
        count = count + 1 if since == self._ended else 1
        if count >= SPLIT_AFTER:
            self._streak.pop(shard_id, None)
            return 0.5
        self._streak[shard_id] = (self._ended, count)
        return None

    def _level(self, model: str) -> int:
        """A wait for ``model``'s room is a warning once a :data:`SAID_EVERY`; else it is info.

        Many shards wait at once when the queue is full: the display counts
        them, and the log need not repeat it for each.
        """
        now = time.monotonic()
        if now - self._said.get(model, -SAID_EVERY) < SAID_EVERY:
            return logging.INFO
        self._said[model] = now
        return logging.WARNING

    async def _wait(self, shard_id: str, model: str, ready: Callable[[], bool], why: str) -> None:
        enqueued = self.enqueued(model)
        cap = self._cap(model)
        if cap is not None:
            held = f"{enqueued:,} tokens enqueued, cap {cap:,}"
        else:
            # No tokens are counted without a cap: what is waited for is a batch's end.
            held = f"{self.in_flight(model)} of this run's batches in flight, no cap configured"
        log.log(
            self._level(model),
            "waiting for queue room for %s: %s%s (shard %s)",
            model,
            held,
            f"; the provider refused it: {why}" if why else "",
            shard_id,
        )
        self._notify(shard_id, model, enqueued, cap, True)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while not ready():
                await self._changed.wait()
        finally:
            self._waited(shard_id, loop.time() - started)
            self._notify(shard_id, model, self.enqueued(model), cap, False)

    def _waited(self, shard_id: str, seconds: float) -> None:
        self.waited += seconds
        self.waits += 1
        log.info(
            "shard %s waited %.1f s for queue room (shards waited %.1f s in all)",
            shard_id,
            seconds,
            self.waited,
        )


def shard_tokens(store: Store, provider: str, shard: Shard, *, estimate: bool) -> dict[str, int]:
    """The tokens a shard's requests hold in the queue, by model.

    Estimated from the journal (not the spool), so a shard of an earlier run
    counts the same as one sealed by this run; a request that cannot be
    rebuilt counts 0. Without ``estimate`` (no cap is configured), the shard
    counts 0 tokens under its own model (``*`` for a shard of mixed models).
    """
    if not estimate:
        return {shard.model: 0}
    keys = store.shard_keys(shard.shard_id, "submitted")
    rows = store.get_requests(provider, keys)
    tokens: dict[str, int] = {}
    decoded = SchemaBook(store).decode_each(list(rows), [row.body for row in rows.values()])
    for row, request in zip(rows.values(), decoded, strict=True):
        count = request_tokens(request) if isinstance(request, Request) else 0
        tokens[row.model] = tokens.get(row.model, 0) + count
    return tokens
