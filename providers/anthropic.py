"""The Anthropic provider: the Messages API and the Message Batches API.

Immediate calls go to ``POST /v1/messages``; batches go to the Message Batches
API, which takes its requests inline (there is no file upload) and serves its
results as JSONL in no particular order.

Structured output is asked for in one of two ways (``structured_output``):

``json_schema``
    ``output_config: {"format": {"type": "json_schema", "schema": ...}}``; the
    answer is the JSON text block.
``tool``
    one forced tool whose ``input_schema`` is the schema; the answer is the
    tool call's ``input``, dumped as JSON. For models without native
    structured output.

The official SDK does the HTTP work (auth headers, API version, error
classes), with its own retries off: retrying is the strategies' job. Bodies
are built as plain dicts, sent as orjson bytes and read back with orjson, so
that the SDK's typed models are never built on the hot path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal

import anthropic
import httpx2
import orjson

from providers.anthropic_records import default_records_dir, read_record
from providers.anthropic_wire import (
    _JSON_HEADERS,
    _RESULTS_HEADERS,
    StructuredOutput,
    _request_body,
    _timestamp,
    batch_info_from_dict,
    build_body,
    completion_from_message,
    error_from_anthropic_error,
    item_result_from_line,
    results_path,
)
from providers.errors import (
    BatchInDoubtError,
    ProviderError,
)
from providers.jsonl import line_batches, result_items
from providers.listing import Page, listed_since
from providers.ratelimits import rate_limit_state, retry_after_seconds
from providers.sdkerrors import SdkErrors, translate_sdk_error
from providers.transport import pooled_client, transport_error
from providers.types import (
    BatchInfo,
    BatchLimits,
    Completion,
    ItemResult,
    JournaledShard,
    Request,
)

__all__ = [
    "AnthropicBatchEndpoint",
    "AnthropicProvider",
    "StructuredOutput",
    "batch_info_from_dict",
    "build_body",
    "completion_from_message",
    "error_from_anthropic_error",
    "item_result_from_line",
    "results_path",
    "translate_error",
]

# --------------------------------------------------------------------------- errors


#: The Anthropic SDK's exceptions by what they mean.
ANTHROPIC_ERRORS = SdkErrors(
    timeout=(anthropic.APITimeoutError,),
    connection=(anthropic.APIConnectionError,),
    status=(anthropic.APIStatusError,),
    connect_timeout=(httpx2.ConnectTimeout, httpx2.PoolTimeout),
)


def translate_error(
    exc: BaseException,
    *,
    provider: str = "anthropic",
    api_key: str | None = None,
    where: str = "the Anthropic API",
) -> ProviderError:
    """Translate an SDK exception into the project's error tree (the key never leaks)."""
    return translate_sdk_error(
        exc, ANTHROPIC_ERRORS, provider=provider, where=where, api_key=api_key
    )


class AnthropicBatchEndpoint:
    """The Message Batches API as a :class:`providers.protocol.BatchEndpoint`.

    Requests go inline in the create call (``upload`` returns ``None``);
    results are the JSONL at the batch's ``results_url``, read as a stream.

    Message batches carry no metadata, so the shard a batch was made for
    cannot be read back from the provider: :meth:`find` recognises it from
    what the journal knows of the shard (its size, its keys, when its create
    was sent).
    """

    #: How far before ``sent_at`` a matching batch may have been stamped
    #: (clock skew between this host and the provider).
    CLOCK_SKEW = 120.0
    #: How long after ``sent_at`` the provider may have created the batch.
    CREATE_WINDOW = 900.0

    def __init__(
        self,
        provider: AnthropicProvider,
        limits: BatchLimits,
        state_dir: Path | None = None,
    ) -> None:
        self._provider = provider
        self._client = provider._client
        self._limits = limits
        self._records_dir = state_dir or default_records_dir()

    @property
    def limits(self) -> BatchLimits:
        """100,000 requests / 256 MB per batch; models may be mixed."""
        return self._limits

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One inline batch entry: ``{"custom_id", "params": body}``."""
        return orjson.dumps({"custom_id": custom_id, "params": self._provider.build_body(request)})

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Nothing to upload: Anthropic takes the requests inline on create."""
        return None

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create a message batch from the encoded entries in ``path``."""
        body = await asyncio.to_thread(_request_body, path)
        try:
            response = await self._client.post(
                "/v1/messages/batches",
                cast_to=httpx2.Response,
                content=body,
                options={"headers": _JSON_HEADERS},
            )
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        return batch_info_from_dict(orjson.loads(response.content))

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """The batch created for ``shard``, when it can be told apart.

        Recent batches are listed; a candidate is one whose total request
        count equals the shard's, whose ``created_at`` lies within
        :attr:`CREATE_WINDOW` after the create was sent (allowing
        :attr:`CLOCK_SKEW` before), and which no other shard of the journal
        holds. A candidate that has ended shows what it carries: it is the
        shard's when its first result line names one of the shard's keys,
        and never otherwise. An unfinished one shows nothing — it may be
        another process's batch of the same size, and the shard's create may
        never have arrived — so while one is unfinished and none that ended
        carries the shard's keys, :class:`~providers.errors.BatchInDoubtError`
        is raised: the shard waits until they end rather than be created (and
        paid for) again, or take a batch that is not its own. A record an
        earlier version kept for the shard (:mod:`providers.anthropic_records`)
        is honoured: the batch it names, or the send time it gives. When the
        journal knows none of the shard's keys, nothing would ever tell the
        candidates apart: a single one is taken, two or more give ``None``. A
        provider without the list endpoint gives ``None``.
        """
        record = read_record(self._records_dir, shard.shard_id)
        if record is not None and record.batch_id:
            return await self.poll(record.batch_id)
        keys = set(shard.keys)
        count, sent = shard.requests, shard.sent_at
        if record is not None:
            count, sent = record.count, record.sent_at
            keys |= {k for k in (record.first_custom_id, record.last_custom_id) if k}
        if sent is not None:
            lo, hi = sent - self.CLOCK_SKEW, sent + self.CREATE_WINDOW
        elif shard.journaled_at is not None:
            lo, hi = shard.journaled_at - self.CLOCK_SKEW, float("inf")
        else:
            return None
        carrying: list[BatchInfo] = []
        untold: list[BatchInfo] = []  # unfinished, or nothing to tell them by
        async for batch in self._list_since(lo, shard.shard_id):
            created = _timestamp(batch.get("created_at"))
            if created is None or not lo <= created <= hi:
                continue
            info = batch_info_from_dict(batch)
            if info.id in shard.taken or info.total != count:
                continue  # another shard's (as the journal says), or not of its size
            if not info.results_ready or not keys:
                untold.append(info)
            elif await self._carries(info, keys):
                carrying.append(info)
        if carrying:
            return carrying[0]  # the newest batch that answers for the shard's keys
        if not keys:
            return untold[0] if len(untold) == 1 else None  # nothing would ever tell them apart
        if untold:
            n = len(untold)
            some = "an unfinished batch" if n == 1 else f"{n} unfinished batches"
            raise BatchInDoubtError(
                f"{some} of {count:,} requests created when shard {shard.shard_id} was sent "
                f"({', '.join(b.id for b in untold)}) may be its own; which is known once "
                "they end",
                provider=self._provider.name,
                code="batch_in_doubt",
            )
        return None

    async def _carries(self, info: BatchInfo, keys: set[str]) -> bool:
        """Whether the ended batch ``info`` answers for a shard of ``keys``: its first line does."""
        async with aclosing(self.results(info)) as items:
            async for item in items:
                return item.custom_id in keys
        return False

    def _list_since(self, since: float, shard_id: str) -> AsyncIterator[Mapping[str, Any]]:
        """Batches newest first, until a page reaches one older than ``since``."""

        async def fetch(after: str | None) -> Page:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after_id"] = after
            try:
                response = await self._client.get(
                    "/v1/messages/batches", cast_to=httpx2.Response, options={"params": params}
                )
            except anthropic.NotFoundError:
                return [], False, None  # a service without the list endpoint: none to find
            except Exception as exc:
                raise self._provider._translate(exc) from exc
            page = orjson.loads(response.content)
            return page.get("data") or [], bool(page.get("has_more")), page.get("last_id")

        return listed_since(fetch, since, shard_id, lambda b: _timestamp(b.get("created_at")))

    async def poll(self, batch_id: str) -> BatchInfo:
        """The batch's state and counts."""
        return await self._batch_call("get", f"/v1/messages/batches/{batch_id}")

    async def _batch_call(self, method: Literal["get", "post"], path: str) -> BatchInfo:
        """One call answering with a ``message_batch`` object, errors translated."""
        call = self._client.get if method == "get" else self._client.post
        try:
            response = await call(path, cast_to=httpx2.Response)
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        # A batch in progress comes with ``retry-after``: when to ask again.
        return batch_info_from_dict(
            orjson.loads(response.content), retry_after=retry_after_seconds(response.headers)
        )

    async def results(self, batch: BatchInfo) -> AsyncGenerator[ItemResult, None]:
        """Every result line of an ended batch, streamed, in the provider's order.

        Raises:
            ProviderError: when the batch has not ended (Anthropic answers
                404 for results before that), or the download fails.
        """
        url = results_path(batch)
        name = self._provider.name
        try:
            response = await self._client.get(
                str(url),
                cast_to=httpx2.Response,
                options={"headers": _RESULTS_HEADERS},
                stream=True,
                stream_cls=None,
            )
        except anthropic.NotFoundError as exc:
            raise ProviderError(
                f"results of batch {batch.id} are not available yet (the batch has not "
                f"ended); poll until it has",
                provider=name,
                status_code=404,
                body=exc.body,
                code="results_not_ready",
            ) from exc
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        parse = functools.partial(item_result_from_line, provider=name)
        where = f"the results of {batch.id}"
        try:
            async for lines in line_batches(response.aiter_bytes()):
                for item in result_items(lines, parse, provider=name, where=where):
                    yield item
        except Exception as exc:
            error = transport_error(
                exc,
                provider=name,
                doing=f"reading the results of batch {batch.id}",
                redact=self._provider._api_key,
            )
            if error is None:
                raise
            raise error from exc
        finally:
            await response.aclose()

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask Anthropic to cancel the batch (it moves to ``canceling``)."""
        return await self._batch_call("post", f"/v1/messages/batches/{batch_id}/cancel")


# --------------------------------------------------------------------------- provider


class AnthropicProvider:
    """Anthropic through the official SDK: Messages for immediate calls, Message Batches.

    Args:
        name: the registered provider name.
        api_key: the Anthropic API key.
        base_url: the API root (without ``/v1``), e.g. an emulator's address.
        structured_output: ``json_schema`` (``output_config.format``) or
            ``tool`` (forced tool use, for models without native structured output).
        timeout: seconds per HTTP request.
        connect_timeout: seconds to wait for a connection (at most ``timeout``).
        max_connections: size of the connection pool.
        max_batch_requests: requests per batch (Anthropic's limit: 100,000).
        max_batch_bytes: bytes per batch (Anthropic's limit: 256 MB).
        default_max_tokens: ``max_tokens`` for requests that set none.
        http_client: an ``httpx2.AsyncClient`` (what the installed SDK is built
            on) to use instead of a pooled one made here.
        state_dir: where an earlier version kept its shard records, read by
            :meth:`AnthropicBatchEndpoint.find` (default: the user's cache folder).
    """

    def __init__(
        self,
        *,
        name: str = "anthropic",
        api_key: str,
        base_url: str | None = None,
        structured_output: StructuredOutput = "json_schema",
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
        max_batch_requests: int = 100_000,
        max_batch_bytes: int = 256 * 1024 * 1024,
        default_max_tokens: int = 1024,
        http_client: httpx2.AsyncClient | None = None,
        state_dir: Path | None = None,
    ) -> None:
        if structured_output not in ("json_schema", "tool"):
            raise ValueError(
                f"structured_output must be 'json_schema' or 'tool', not {structured_output!r}"
            )
        self.name = name
        self.structured_output: StructuredOutput = structured_output
        self.default_max_tokens = default_max_tokens
        self._api_key = api_key
        http_client = pooled_client(
            http_client,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            make=anthropic.DefaultAsyncHttpxClient,
        )
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=httpx2.Timeout(timeout, connect=min(connect_timeout, timeout)),
            max_retries=0,
            http_client=http_client,
        )
        self._batch = AnthropicBatchEndpoint(
            self,
            BatchLimits(max_batch_requests, max_batch_bytes, mixed_models=True),
            state_dir=state_dir,
        )

    def build_body(self, request: Request) -> dict[str, Any]:
        """The Messages API body for ``request`` with this provider's settings."""
        return build_body(
            request,
            structured_output=self.structured_output,
            default_max_tokens=self.default_max_tokens,
        )

    async def complete(self, request: Request) -> Completion:
        """Run ``request`` through ``POST /v1/messages``.

        A refusal is returned (``Completion.refusal``): it is billed.

        Raises:
            ProviderError: the SDK's failure translated.
        """
        content = orjson.dumps(self.build_body(request))
        try:
            response = await self._client.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                content=content,
                options={"headers": _JSON_HEADERS},
            )
        except Exception as exc:
            raise self._translate(exc) from exc
        message = orjson.loads(response.content)
        completion = completion_from_message(
            message, request_id=response.headers.get("request-id"), provider=self.name
        )
        state = rate_limit_state(response.headers)
        return completion if state is None else dataclasses.replace(completion, rate_limit=state)

    @property
    def batch(self) -> AnthropicBatchEndpoint:
        """The Message Batches API."""
        return self._batch

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.close()

    def _translate(self, exc: BaseException) -> ProviderError:
        return translate_error(
            exc, provider=self.name, api_key=self._api_key, where=str(self._client.base_url)
        )
