"""The one retry policy: which provider failures are tried again, how often, for how long.

Every call lexibatch makes to a provider goes through :class:`RetryPolicy` —
an immediate completion as much as each step of a batch's lifecycle (upload,
find, create, poll) — so a provider that cannot be reached is given up on in
the same bounded time in either mode. The policy is configured in one place,
the ``[retry]`` section (:class:`plugins.config.RetrySettings`):

- **what is retried**: a :class:`~providers.errors.ProviderError` that says it
  is retryable (a dropped connection, a timeout, a 429, a 5xx). Answers that
  do not fit their schema are re-asked by the immediate strategy, and failed
  batch items go to a retry round: neither is this policy's business.
- **how long**: at most ``max_attempts`` tries, and no try is started after
  ``give_up_after`` seconds — unless the provider answered with a
  ``retry-after``: a provider that says when to come back is reachable, and
  is waited for (within ``max_attempts``).
- **how long between tries**: a jittered, doubling wait from
  ``backoff_initial`` up to ``backoff_max`` — or what the provider's
  ``retry-after`` asked for, if that is longer.
- **a paid call that timed out** (an immediate completion the provider may
  have answered, and billed, after the client stopped waiting) is tried
  again at most ``timeout_retries`` times, and each such retry is said.
- **once given up**: when connection failures exhausted one call, the
  provider is taken to be unreachable; every other call then gets one try
  (not a full round of retries), so a run of many requests gives up in the
  time of one. The first call that gets through takes that back.
- **a refused key** (a 401): no other call is sent with the key for
  :data:`KEY_REFUSED_HOLD` seconds; each fails at once with the refusal, so a
  run of thousands of requests stops after one instead of sending them all.

The store's writes and reads, when another process holds its lock, are tried
again here too (:func:`retry_while_busy`): a short jittered backoff from
:data:`BUSY_BACKOFF` up to :data:`BUSY_BACKOFF_MAX` seconds, for as long as
the store's ``lock_timeout`` allows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeGuard, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from providers.errors import (
    AuthenticationError,
    BatchItemError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    SchemaValidationError,
    is_key_refused,
)

if TYPE_CHECKING:
    from plugins.config import RetrySettings

__all__ = [
    "BUSY_BACKOFF",
    "BUSY_BACKOFF_MAX",
    "KEY_REFUSED_HOLD",
    "RetryPolicy",
    "is_retryable",
    "is_unreachable",
    "retry_while_busy",
]

T = TypeVar("T")

log = logging.getLogger("lexibatch.retry")

#: Seconds of the first wait for a lock another process holds, and of the longest.
BUSY_BACKOFF = 0.002
BUSY_BACKOFF_MAX = 0.1


def is_retryable(exc: BaseException | None) -> bool:
    """Whether the policy tries a call that raised ``exc`` again."""
    return (
        isinstance(exc, ProviderError)
        and exc.retryable
        and not isinstance(exc, SchemaValidationError | BatchItemError)
    )


#: Seconds after a provider refused the API key during which no call is sent with it.
KEY_REFUSED_HOLD = 60.0


def is_unreachable(exc: BaseException | None) -> TypeGuard[ProviderConnectionError]:
    """Whether ``exc`` says the provider could not be reached (not that it answered slowly)."""
    return isinstance(exc, ProviderConnectionError) and not isinstance(exc, ProviderTimeoutError)


class RetryPolicy:
    """Tries provider calls again per ``[retry]``; one instance per connector (and provider).

    Args:
        settings: the ``[retry]`` section.
        provider: the provider's name, for messages.
    """

    def __init__(self, settings: RetrySettings, *, provider: str) -> None:
        self.settings = settings
        self.provider = provider
        self._jitter = wait_random_exponential(
            multiplier=settings.backoff_initial, max=settings.backoff_max
        )
        self._unreachable: ProviderConnectionError | None = None
        self._timeouts_said = 0
        # The refusal of the key, and when it came (time.monotonic()).
        self._key_refused: tuple[AuthenticationError, float] | None = None

    @property
    def unreachable(self) -> ProviderConnectionError | None:
        """The failure that made the policy give up on reaching the provider, while it holds."""
        return self._unreachable

    async def call(self, fn: Callable[[], Awaitable[T]], *, what: str, paid: bool = False) -> T:
        """``await fn()``, tried again per the policy.

        Args:
            fn: one attempt of the call.
            what: what the call is, for messages ("create of batch shard_…").
            paid: the provider may bill an attempt that timed out (an
                immediate completion): timeouts are tried again at most
                ``timeout_retries`` times.

        Raises:
            ProviderError: the last failure, once the policy gives up; its
                message then says how many tries were made over how long.
        """
        started = time.monotonic()
        self.unless_key_refused()
        # The first try outside the retry machinery (most calls succeed at once);
        # a failure to try again is then judged by it like any other try.
        first: ProviderError | None = None
        try:
            value = await fn()
        except ProviderError as exc:
            if not is_retryable(exc):
                self._failed(exc)
                raise
            first = exc
        else:
            self._unreachable = None
            return value

        async def again() -> T:
            nonlocal first
            if first is not None:
                failed, first = first, None
                raise failed
            return await fn()

        tries = 0
        timeouts = 0
        enough_tries = stop_after_attempt(self.settings.max_attempts)
        give_up_after = self.settings.give_up_after

        def stop(state: RetryCallState) -> bool:
            nonlocal timeouts
            exc = _exception(state)
            if enough_tries(state):
                return True
            # A provider that answered with the pause it wants is waited for
            # (as many tries as allowed); the time bound is for one that is silent.
            # No try starts past the bound, counted from the first try.
            asked = isinstance(exc, ProviderError) and exc.retry_after is not None
            if not asked and time.monotonic() - started + state.upcoming_sleep >= give_up_after:
                return True
            if is_unreachable(exc) and self._unreachable is not None:
                # Given up on already (by another call): one try each, not a round.
                return True
            if paid and isinstance(exc, ProviderTimeoutError):
                timeouts += 1
                return timeouts > self.settings.timeout_retries
            return False

        retrying = AsyncRetrying(
            stop=stop,
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=lambda state: self._before_sleep(state, what, paid),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tries += 1
                    value = await again()
        except ProviderError as exc:
            self._failed(exc)
            if not is_retryable(exc):
                raise
            if is_unreachable(exc) and self._unreachable is None:
                self._unreachable = exc
            raise _gave_up(exc, tries, time.monotonic() - started) from None
        self._unreachable = None
        return value

    def _failed(self, exc: ProviderError) -> None:
        """Remember a refused key (see :meth:`unless_key_refused`)."""
        if is_key_refused(exc):
            self._key_refused = (exc, time.monotonic())

    def unless_key_refused(self) -> None:
        """Refuse to send while the provider's refusal of the key holds (a caller's last check).

        Raises:
            AuthenticationError: the provider refused the key less than
                :data:`KEY_REFUSED_HOLD` seconds ago; nothing is sent.
        """
        if self._key_refused is None:
            return
        refused, when = self._key_refused
        ago = time.monotonic() - when
        if ago >= KEY_REFUSED_HOLD:
            self._key_refused = None
            return
        raise type(refused)(
            f"{refused.message} (not sent: the provider refused the same key {ago:.0f} s ago)",
            provider=refused.provider,
            status_code=refused.status_code,
            code=refused.code,
        )

    def _wait(self, state: RetryCallState) -> float:
        backoff = float(self._jitter(state))
        exc = _exception(state)
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return max(backoff, exc.retry_after)
        return backoff

    def _before_sleep(self, state: RetryCallState, what: str, paid: bool) -> None:
        exc = _exception(state)
        wait = state.upcoming_sleep
        if paid and isinstance(exc, ProviderTimeoutError):
            # Said every time, at warning level the first time: each timed-out
            # try may be billed, and a longer client timeout is the cure.
            level = logging.WARNING if self._timeouts_said == 0 else logging.INFO
            self._timeouts_said += 1
            log.log(
                level,
                "%s: %s — the provider may bill the call anyway; trying once more in %.1f s "
                "(at most %d retries after a timeout; a longer providers.%s.timeout avoids them)",
                what,
                exc,
                wait,
                self.settings.timeout_retries,
                self.provider,
            )
        else:
            # Quiet: the caller says it once if the policy gives up.
            log.info("%s failed (%s); retrying in %.1f s", what, exc, wait)


def _exception(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    return outcome.exception() if outcome is not None else None


def _gave_up(exc: ProviderError, tries: int, seconds: float) -> ProviderError:
    """``exc`` again, saying how long the policy tried."""
    if tries <= 1:
        return exc
    clone = type(exc)(
        f"{exc.message} (gave up after {tries} tries in {seconds:.1f} s)",
        provider=exc.provider,
        status_code=exc.status_code,
        body=exc.body,
        headers=exc.headers,
        retry_after=exc.retry_after,
        code=exc.code,
    )
    return clone


def retry_while_busy(
    fn: Callable[[], T], *, busy: Callable[[BaseException], bool], give_up_after: float
) -> T:
    """``fn()``, tried again while it fails because another process holds a lock.

    The first try costs nothing more than the call; only a failure that
    ``busy`` recognises is tried again, with a jittered, doubling wait, until
    ``give_up_after`` seconds have passed since the first retry.

    Raises:
        Exception: what ``fn`` raised, when it is not ``busy``, or still is
            once the time is up.
    """
    try:
        return fn()
    except Exception as exc:
        if not busy(exc):
            raise
    retrying = Retrying(
        stop=stop_after_delay(give_up_after),
        wait=wait_random_exponential(multiplier=BUSY_BACKOFF, max=BUSY_BACKOFF_MAX),
        retry=retry_if_exception(busy),
        reraise=True,
    )
    return retrying(fn)
