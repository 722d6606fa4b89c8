"""The one error tree of lexibatch.

Every error the library raises is a :class:`LexibatchError`. User and
configuration mistakes are kept apart from what a provider does at run time,
so a CLI can print the first kind as one line and exit, and a strategy can
decide from the second kind whether to retry::

    LexibatchError
    ├── NotSentError                   not sent: the process is stopping
    ├── UserError                      the caller must change something
    │   ├── ConfigError                bad config key or value (names the key)
    │   ├── MissingAPIKeyError         API-key variable unset (names it)
    │   ├── UnknownPluginError         no provider / strategy by that name
    │   ├── InputError                 malformed word file, request file, ...
    │   ├── BudgetExceededError        a run would cost more than --budget
    │   ├── StoreBusyError             another process runs this store's batches
    │   ├── StoreWriteError            the store cannot be written (disk full, ...)
    │   ├── OutputWriteError           an output file cannot be written (names it)
    │   └── UnsupportedError           e.g. batch mode on a provider without one
    └── ProviderError                  what a provider answered or failed to
        ├── ProviderConnectionError    network failure               (retryable)
        │   └── ProviderTimeoutError   request timed out             (retryable)
        ├── RateLimitError             429                           (retryable)
        ├── ServerError                5xx                           (retryable)
        ├── AuthenticationError        401 / 403, or code KEY_REFUSED (permanent)
        ├── InvalidRequestError        other 4xx                     (permanent)
        │   └── ContextLengthError     the prompt exceeds the model's context (permanent)
        ├── TruncatedError             cut at max_tokens: retried with more tokens
        ├── SchemaValidationError      content did not fit the schema (retryable)
        ├── UnusableAnswerError        an answer that cannot be validated or stored (permanent)
        ├── BatchItemError             an item of a batch did not run
        │   ├── BatchExpiredError      the batch window ran out       (retryable)
        │   └── BatchCancelledError    the batch was cancelled        (retryable)
        │       └── CancelledByUserError  the user cancelled it       (permanent)
        ├── BatchFailedError           a whole batch was rejected     (permanent)
        └── BatchInDoubtError          find cannot yet tell a shard's batch: it waits

A :class:`ProviderError` keeps the provider's status code, body, headers and
``retry-after`` so nothing the provider said is lost in translation. Vendor
SDK exceptions are translated into this tree in each provider module, at the
boundary; nothing above the provider layer sees a vendor exception.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from providers.errortext import one_line_message, os_error_reason
from providers.ratelimits import retry_after_seconds

__all__ = [
    "CANCELLED_BY_USER",
    "KEY_REFUSED",
    "QUEUE_FULL",
    "AuthenticationError",
    "BatchCancelledError",
    "BatchExpiredError",
    "BatchFailedError",
    "BatchInDoubtError",
    "BatchItemError",
    "BudgetExceededError",
    "CancelledByUserError",
    "ConfigError",
    "ConnectorClosedError",
    "ContextLengthError",
    "InputError",
    "InvalidRequestError",
    "LexibatchError",
    "MissingAPIKeyError",
    "NotSentError",
    "OutputWriteError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "RateLimitError",
    "SchemaValidationError",
    "ServerError",
    "StoreBusyError",
    "StoreWriteError",
    "TruncatedError",
    "UnknownPluginError",
    "UnsupportedError",
    "UnusableAnswerError",
    "UserError",
    "defect_error",
    "error_from_dict",
    "error_from_status",
    "is_key_refused",
    "one_line_message",
    "os_error_reason",
]


class LexibatchError(Exception):
    """Base of every error lexibatch raises."""

    #: Whether trying the same request again may succeed.
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class NotSentError(LexibatchError):
    """The call was not sent, nor will be: the process is stopping (Ctrl-C, SIGTERM).

    Nothing was paid for it; the same request asked again later is sent then.
    """


class ConnectorClosedError(LexibatchError):
    """The connector was closed before the request was answered, or was used after it closed.

    Nothing paid for is lost: a call already sent was let finish and its answer
    stored; a request in a batch stays journaled, and the next run (or
    connector) on the same store collects it.
    """


class UserError(LexibatchError):
    """Something the user or the caller must change; never retried."""


class ConfigError(UserError):
    """A config key is unknown or its value is invalid.

    Attributes:
        key: the dotted config key, e.g. ``batch.linger``, when one is at fault.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class MissingAPIKeyError(UserError):
    """The environment variable that should hold a provider's API key is unset.

    ``offline``: the sandbox can stand in for the provider (the message offers it).
    """

    def __init__(self, provider: str, env_var: str, *, offline: bool = False) -> None:
        offline_too = " (or run offline with --provider sandbox)" if offline else ""
        super().__init__(
            f"{provider}: no API key — set the environment variable {env_var}{offline_too}"
        )
        self.provider = provider
        self.env_var = env_var


class UnknownPluginError(UserError):
    """No provider or strategy is registered under the requested name."""

    def __init__(self, kind: str, name: str, known: list[str], *, left_out: str = "") -> None:
        choices = ", ".join(sorted(known)) or "none"
        why = f"; left out: {left_out}" if left_out else ""
        super().__init__(
            f"unknown {kind} {name!r} — registered {kind}s: {choices} (see `lexibatch plugins`)"
            + why
        )
        self.kind = kind
        self.name = name
        self.known = known


class InputError(UserError):
    """An input (word list, request file, source definitions, a request) is malformed.

    Attributes:
        problems: one line per problem found (``FILE:LINE: what is wrong``),
            when there were several; the message sums them up.
    """

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class BudgetExceededError(UserError):
    """Submitting would cost more than the configured budget."""

    def __init__(self, estimate_usd: float, budget_usd: float) -> None:
        from providers.money import format_usd

        super().__init__(
            f"estimated cost {format_usd(estimate_usd)} exceeds the budget "
            f"{format_usd(budget_usd)} — raise --budget or send fewer requests"
        )
        self.estimate_usd = estimate_usd
        self.budget_usd = budget_usd


class StoreBusyError(UserError):
    """Another process (or connector) is running the batches of the same store.

    Two runners of one journal would both resume its unfinished batches, and
    could both create (and pay for) the batch of a shard caught between
    upload and creation.
    """


class StoreWriteError(UserError):
    """The store could not be written: the disk is full, the file read-only or damaged.

    Raised instead of the ``sqlite3`` error at the store's boundary. What
    was committed before stays; a run stopped by it resumes from the
    journal once the store can be written again.
    """


class OutputWriteError(UserError):
    """An output file (``--out``) cannot be written: a missing or unwritable folder, a full disk.

    What was paid for is in the store: once the path can be written, the
    same command writes the output again without paying twice.

    Attributes:
        path: the file that could not be written.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class UnsupportedError(UserError):
    """The provider cannot do what was asked (e.g. it has no batch endpoint)."""


class ProviderError(LexibatchError):
    """A provider answered with an error, or could not be reached.

    Attributes:
        provider: the provider's registered name.
        status_code: the HTTP status, when there was one.
        body: the provider's error body (parsed JSON or text), when there was one.
        headers: the response headers, when there were any.
        retry_after: seconds the provider asked us to wait, when it said.
        code: the provider's machine-readable error code, when it gave one.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        self.retry_after = retry_after
        self.code = code

    def __str__(self) -> str:
        where = f"{self.provider}: " if self.provider else ""
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{where}{self.message}{status}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, as written to result files and the store."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "code": self.code,
            "status_code": self.status_code,
            "retryable": self.retryable,
        }


def defect_error(exc: BaseException, *, provider: str, doing: str) -> ProviderError:
    """A provider's code raised ``exc``, which is not a :class:`LexibatchError`.

    That is a defect of its adapter or plugin, not a provider failure: said
    as a provider error (code ``provider_defect``, not retried), so callers
    meet the one error tree, with the original as its ``__cause__``.
    """
    what = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    # Where it came from, when the code that let it through said (e.g. "during the batch's poll").
    where = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
    what += where
    error = ProviderError(
        f"{doing} raised {what} — a defect of the provider's adapter or plugin "
        "(not a provider failure; not retried)",
        provider=provider,
        code="provider_defect",
    )
    error.__cause__ = exc
    return error


class ProviderConnectionError(ProviderError):
    """The provider could not be reached."""

    retryable = True


class ProviderTimeoutError(ProviderConnectionError):
    """The provider did not answer in time."""


class RateLimitError(ProviderError):
    """The provider refused for rate or quota reasons (HTTP 429)."""

    retryable = True


class ServerError(ProviderError):
    """The provider failed internally (HTTP 5xx, or ``overloaded``)."""

    retryable = True


class AuthenticationError(ProviderError):
    """The API key was refused (HTTP 401 / 403, or a provider's own words for it)."""


#: The ``code`` that says the provider's batch queue is full: on a
#: :class:`RateLimitError` raised by ``BatchEndpoint.create``, or at the start of
#: an ``errors`` entry of a batch that ended failed for it (OpenAI's own code).
#: lexibatch waits for room and creates the batch again: no retry round, no
#: failed request.
QUEUE_FULL = "token_limit_exceeded"

#: The ``code`` of an :class:`AuthenticationError` a provider raises for a
#: refused key that it does not answer with a 401 (Gemini: a 400 whose reason
#: is ``API_KEY_INVALID``).
KEY_REFUSED = "key_refused"


def is_key_refused(exc: BaseException | None) -> TypeGuard[AuthenticationError]:
    """Whether ``exc`` says the provider refused the API key itself.

    A 401, or an :class:`AuthenticationError` whose code is
    :data:`KEY_REFUSED`. A 403 is not: it may refuse one model or one
    operation to a good key.
    """
    return isinstance(exc, AuthenticationError) and (
        exc.status_code == 401 or exc.code == KEY_REFUSED
    )


class InvalidRequestError(ProviderError):
    """The provider rejected the request itself (HTTP 400, 404, 422, ...)."""


class ContextLengthError(InvalidRequestError):
    """The prompt is longer than the model's context window; that request alone fails.

    OpenAI answers 400 with code ``context_length_exceeded``; Anthropic 400
    ``invalid_request_error`` "prompt is too long: N tokens > M maximum".
    """


class TruncatedError(ProviderError):
    """The answer was cut at the output-token limit before it was complete.

    Sending the same request again would be cut at the same place; it is
    retried with :attr:`retry_max_tokens` instead (twice the limit it hit).

    Attributes:
        content: the cut-off content.
        max_tokens: the limit the answer hit.
        retry_max_tokens: the limit to retry with; ``None``: no retry.
        raw_stop_reason: the provider's own stop reason (``length``, ``max_tokens``, ...).
    """

    #: The largest output-token limit a retry asks for.
    CEILING = 65_536

    def __init__(
        self,
        message: str,
        *,
        content: str = "",
        max_tokens: int | None = None,
        raw_stop_reason: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("code", "max_tokens")
        super().__init__(message, **kwargs)
        self.content = content
        self.max_tokens = max_tokens
        self.raw_stop_reason = raw_stop_reason
        self.retry_max_tokens: int | None = None
        if max_tokens and max_tokens < self.CEILING:
            self.retry_max_tokens = min(2 * max_tokens, self.CEILING)

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        """Retryable when a larger limit is left to ask for."""
        return self.retry_max_tokens is not None


class SchemaValidationError(ProviderError):
    """The model answered, but its content did not validate against the schema.

    Attributes:
        content: the raw content the model produced.
    """

    retryable = True

    def __init__(self, message: str, *, content: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.content = content


class UnusableAnswerError(ProviderError):
    """The provider answered (and billed), but the answer could not be validated or stored.

    The request's schema is broken (an unknown type, a regex that does not
    compile), a validator of its response model crashed, or the answer
    cannot be written to the store. Asking again would fail the same way
    and be paid again, so it is permanent: the request fails alone, and
    the rest of its batch is stored.

    Attributes:
        content: the raw content the model produced.
    """

    def __init__(self, message: str, *, content: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.content = content


class BatchItemError(ProviderError):
    """One item of a batch did not run to an answer."""

    retryable = True


class BatchExpiredError(BatchItemError):
    """The batch's completion window ran out before this item ran."""


class BatchCancelledError(BatchItemError):
    """The batch was cancelled before this item ran."""


class CancelledByUserError(BatchCancelledError):
    """The user cancelled the batch (``lexibatch batches cancel``) before this item ran.

    Final: it is not sent again unless the user asks (``--retry-cancelled``).
    """

    retryable = False

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", CANCELLED_BY_USER)
        super().__init__(message, **kwargs)


#: The error code of a request whose batch the user cancelled.
CANCELLED_BY_USER = "cancelled_by_user"


class BatchFailedError(ProviderError):
    """The provider rejected a whole batch (e.g. its input file failed validation)."""


class BatchInDoubtError(ProviderError):
    """The provider holds batches that may be a shard's, and cannot yet tell which.

    Raised by :meth:`~providers.protocol.BatchEndpoint.find` when more than
    one unfinished batch could be the one a crash left unjournaled (a
    provider whose batches carry no shard id, told apart only by what they
    answer once ended). Creating the shard's batch again could pay for it
    twice, so the shard waits and asks again.
    """


_ERROR_TYPES: dict[str, type[ProviderError]] = {
    cls.__name__: cls
    for cls in (
        ProviderError,
        ProviderConnectionError,
        ProviderTimeoutError,
        RateLimitError,
        ServerError,
        AuthenticationError,
        InvalidRequestError,
        ContextLengthError,
        TruncatedError,
        SchemaValidationError,
        UnusableAnswerError,
        BatchItemError,
        BatchExpiredError,
        BatchCancelledError,
        CancelledByUserError,
        BatchFailedError,
        BatchInDoubtError,
    )
}


def error_from_status(
    status_code: int | None,
    message: str,
    *,
    provider: str = "",
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> ProviderError:
    """Map an HTTP status to the matching :class:`ProviderError` subclass.

    ``retry-after`` (seconds or ``retry-after-ms``) is read from ``headers``.
    """
    retry_after = retry_after_seconds(headers)
    cls: type[ProviderError]
    if status_code is None:
        cls = ProviderConnectionError
    elif status_code == 429:
        cls = RateLimitError
    elif status_code in (408,):
        cls = ProviderTimeoutError
    elif status_code >= 500 or status_code == 529:
        cls = ServerError
    elif status_code in (401, 403):
        cls = AuthenticationError
    elif status_code >= 400:
        cls = ContextLengthError if _context_exceeded(message, code) else InvalidRequestError
    else:
        cls = ProviderError
    return cls(
        one_line_message(message),
        provider=provider,
        status_code=status_code,
        body=body,
        headers=headers,
        retry_after=retry_after,
        code=code,
    )


def error_from_dict(data: Mapping[str, Any], *, provider: str = "") -> ProviderError:
    """Rebuild an error stored with :meth:`ProviderError.to_dict`."""
    cls = _ERROR_TYPES.get(str(data.get("type")), ProviderError)
    return cls(
        str(data.get("message", "")),
        provider=provider,
        status_code=data.get("status_code"),
        code=data.get("code"),
    )


def _context_exceeded(message: str, code: str | None) -> bool:
    """Whether a 4xx says the prompt does not fit the model's context window."""
    if code == "context_length_exceeded":
        return True
    lowered = message.lower()
    return "prompt is too long" in lowered or "maximum context length" in lowered
