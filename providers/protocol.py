"""The protocols the layers meet at: what a caller sees, what a provider supplies.

``Connector``
    What the synthesis layer (and any caller) programs against: typed
    structured calls that work the same whether they run immediately or
    through a batch endpoint.

``Provider``
    What a provider plugin supplies: ``complete`` for immediate calls, and
    optionally a ``BatchEndpoint``.

``BatchEndpoint``
    A provider's batch API, reduced to the steps the batch strategy journals
    one by one (upload, create, poll, read results, cancel), so that a crash
    between any two of them can be resumed without a second submission.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from providers.types import (
    BatchInfo,
    BatchLimits,
    Completion,
    ItemResult,
    JournaledShard,
    Message,
    Request,
    Response,
)

__all__ = ["BatchEndpoint", "BatchFiles", "Connector", "Prompt", "Provider", "as_messages"]

T = TypeVar("T", bound=BaseModel)

#: What ``Connector.structured`` accepts as its prompt: a user message as
#: text, or the whole conversation.
Prompt = str | Sequence[Message]


@runtime_checkable
class Connector(Protocol):
    """A provider-neutral way to make structured LLM calls.

    The same ``await`` returns the same type in both modes; in batch mode it
    suspends until that request's batch result has arrived.
    """

    async def structured(
        self,
        prompt: Prompt,
        response_model: type[T],
        *,
        task: str | None = None,
        model: str | None = None,
        **opts: Any,
    ) -> T:
        """Ask for an answer that validates against ``response_model``.

        Args:
            prompt: the user message, or the full list of messages.
            response_model: the pydantic class of the answer.
            task: a tag used for per-task model routing and cost reports.
            model: a model to use instead of the routed or default one.
            **opts: ``system`` (a system message), ``max_tokens``,
                ``temperature``, ``mode`` (``"immediate"`` to bypass batch
                mode for one urgent call), and provider extras.

        Returns:
            The validated instance.

        Raises:
            providers.errors.LexibatchError: a typed error when the request
                ends without a valid answer.
        """
        ...

    async def generate(self, request: Request, *, mode: str | None = None) -> Response:
        """Run one fully specified request and return its full response."""
        ...

    def enable_batch_mode(self) -> None:
        """Route the following calls through the provider's batch endpoint."""
        ...

    def disable_batch_mode(self) -> None:
        """Route the following calls immediately again (pending batches still run)."""
        ...

    async def execute_batch(self) -> None:
        """Dispatch whatever is pending now and wait until it has all resolved."""
        ...

    @property
    def batch_mode(self) -> bool:
        """Whether calls are currently routed through the batch endpoint."""
        ...


@runtime_checkable
class BatchEndpoint(Protocol):
    """A provider's batch API, one journaled step per method.

    Each method makes one try (retries are lexibatch's, per its retry
    policy) and is bounded in time by the provider's own HTTP timeout (the
    options' ``timeout``): lexibatch sets no deadline of its own on them, so
    a call that hangs holds its shard until that timeout ends it.
    """

    @property
    def limits(self) -> BatchLimits:
        """How many requests and bytes one batch may hold, and whether models may mix.

        lexibatch seals shards within these and within what the provider
        declared when it registered (its
        :class:`~plugins.providerspec.BatchSpec`, lowered by the user's
        ``max_batch_requests`` and ``max_batch_bytes``): the tighter of the
        two, and mixed models only when both allow them.
        """
        ...

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One batch input line (JSON, no trailing newline) for ``request``."""
        ...

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Upload the JSONL input file at ``path``.

        Returns:
            The provider's file id, or ``None`` for providers that take
            requests inline when the batch is created (Anthropic).
        """
        ...

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create the batch; ``shard_id`` is attached so :meth:`find` can see it.

        ``model`` is the shard's model, or ``"*"`` when :attr:`limits` allow
        mixed models and the shard holds several (each line names its own).
        A refusal because the provider's batch queue is full is a
        :class:`~providers.errors.RateLimitError` whose ``code`` is
        :data:`~providers.errors.QUEUE_FULL`: the shard waits for room and is
        created again (any other 429 goes through the retry policy).
        """
        ...

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """A batch already created for ``shard``, if the provider has one.

        Used after a crash between sending ``create`` and journaling its
        answer, so that the shard is not submitted (and paid for) twice.
        The journaled shard gives its id (which ``create`` attached), its
        request count and keys, and when it was journaled and sent: its batch
        cannot be older, however long ago that was.

        Return ``None`` only when no batch of the provider can be the shard's
        (it is then created again). A provider whose batches carry no shard
        id, and which holds several that may be the shard's but will tell
        only once they end (by their results), raises
        :class:`~providers.errors.BatchInDoubtError`: the shard waits and
        asks again, instead of being paid for twice.
        """
        ...

    async def poll(self, batch_id: str) -> BatchInfo:
        """The batch's current state and counts.

        Set ``results_ready`` once the batch has ended (any terminal state:
        completed, failed, cancelled, expired) and :meth:`results` can be
        read — also when it holds no result at all. An ended batch read as
        not ready is polled again: for ever while ``succeeded`` counts
        answers (they were paid for; a warning says so after five minutes),
        and only five minutes when it counts none.
        """
        ...

    def results(self, batch: BatchInfo) -> AsyncIterator[ItemResult]:
        """Every finished item of an ended batch: output and error lines alike.

        Each item echoes the ``custom_id`` its input line was given by
        :meth:`encode` and carries exactly one of ``completion`` (an answer:
        the billed usage, even for a refusal, which sets ``refusal``) or
        ``error`` (a :class:`~providers.errors.ProviderError`; ``retryable``
        when sending it again may succeed). A request with no item is
        re-queued, and paid for again (unless the batch also holds lines under
        ids not ours, when it fails): skip only a line that cannot be read at
        all (:func:`providers.jsonl.unreadable_line` says what becomes of one).
        """
        ...

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask the provider to cancel the batch."""
        ...


@runtime_checkable
class BatchFiles(Protocol):
    """A batch endpoint whose batches leave files at the provider (a Files API).

    Optional: an endpoint that has it gets its batches' files deleted once
    their results are stored (``batch.delete_files``), and the uploaded
    input of a shard given up before or without its batch.
    """

    def batch_files(self, batch: BatchInfo) -> list[str]:
        """The ids of what ``batch`` leaves at the provider: its files (and, where the
        provider keeps answers in the batch itself, the batch), all deleted by
        :meth:`delete_file`."""
        ...

    async def delete_file(self, file_id: str) -> bool:
        """Delete one of them; ``False`` when it was gone already (not an error)."""
        ...


@runtime_checkable
class Provider(Protocol):
    """What a provider plugin supplies."""

    #: The provider's registered name (``openai``, ``anthropic``, ...).
    name: str

    async def complete(self, request: Request) -> Completion:
        """Run ``request`` immediately, once: retries are the strategies' job.

        Bound every call in time (the options' ``timeout`` and
        ``connect_timeout``): lexibatch ends a call that runs 30 s past its
        ``timeout`` as a timed-out try (which the provider may bill).
        A refusal is returned with ``Completion.refusal`` set, not raised.

        Raises:
            providers.errors.ProviderError: the provider's failure, translated
                (its subclass says whether it is retried).
        """
        ...

    @property
    def batch(self) -> BatchEndpoint | None:
        """The provider's batch endpoint, or ``None`` when it has none."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def as_messages(prompt: Prompt, system: str | None = None) -> tuple[Message, ...]:
    """Normalize a prompt (text or messages) plus an optional system message."""
    messages: list[Message] = []
    if system:
        messages.append(Message("system", system))
    if isinstance(prompt, str):
        messages.append(Message("user", prompt))
    else:
        messages.extend(prompt)
    return tuple(messages)
