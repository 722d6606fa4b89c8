"""The OpenAI provider: chat completions or the Responses API, and the Batch API.

Works against api.openai.com and any OpenAI-compatible service (``base_url``):
immediate calls go through ``/v1/chat/completions`` (``response_format``
``json_schema`` with ``strict: true``) or ``/v1/responses`` (``text.format``);
batches through ``/v1/files`` + ``/v1/batches``.

One body builder serves both modes, so a batch line's ``body`` is byte for
byte what the immediate call would send. Answers are read with orjson and
plain dict access rather than the SDK's pydantic models: a batch of 50,000
result lines is parsed in well under a second that way. Every SDK exception
is translated into :mod:`providers.errors` here, at the boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal, NoReturn

import httpx2
import openai
import orjson

from providers.errors import (
    InvalidRequestError,
    ProviderError,
    UnsupportedError,
)
from providers.filegrace import FileGrace
from providers.jsonl import line_batches, result_items
from providers.listing import Page, find_listed
from providers.openai_wire import (
    Api,
    BodyBuilder,
    _completion,
    _error_message,
    batch_info,
    parse_result_line,
)
from providers.ratelimits import rate_limit_state
from providers.sdkerrors import SdkErrors, redact, translate_sdk_error
from providers.transport import pooled_client, transport_error
from providers.types import (
    BatchInfo,
    BatchLimits,
    Completion,
    ItemResult,
    JournaledShard,
    Request,
)

#: The OpenAI SDK's exceptions by what they mean (LiteLLM's subclass them).
OPENAI_ERRORS = SdkErrors(
    timeout=(openai.APITimeoutError,),
    connection=(openai.APIConnectionError,),
    status=(openai.APIStatusError,),
    connect_timeout=(httpx2.ConnectTimeout, httpx2.PoolTimeout),
)

__all__ = [
    "BodyBuilder",
    "OpenAIBatchEndpoint",
    "OpenAIProvider",
    "batch_info",
    "parse_result_line",
    "refusal_error",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"

_PATHS: dict[str, str] = {"chat": "/chat/completions", "responses": "/responses"}
_URLS: dict[str, str] = {"chat": "/v1/chat/completions", "responses": "/v1/responses"}


# A batch's output file is read in the pieces it arrives in (up to 64 KiB
# each): gathering them into bigger chunks would copy the whole file once more.
_DOWNLOAD_CHUNK: int | None = None
# Batch input files up to this size are uploaded from memory in one piece.
_UPLOAD_IN_ONE_PIECE = 64 * 1024 * 1024


class OpenAIBatchEndpoint:
    """OpenAI's Files + Batches API as a :class:`providers.protocol.BatchEndpoint`."""

    def __init__(self, provider: OpenAIProvider, limits: BatchLimits, file_grace: float) -> None:
        self._provider = provider
        self._limits = limits
        self._grace = FileGrace(file_grace)
        self._url = _URLS[provider.api]
        self._line = provider._builder.line

    @property
    def limits(self) -> BatchLimits:
        """OpenAI: 50,000 requests / 200 MB per batch by default, one model each."""
        return self._limits

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One JSONL input line: ``{"custom_id", "method", "url", "body"}``."""
        return self._line(request, custom_id, self._url)

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Upload the JSONL file with ``purpose=batch``, streamed from disk."""
        client = self._provider._client
        try:
            # Opening is one quick syscall. A file of moderate size is sent in
            # one piece: streamed in 64 KiB parts it needs an event-loop turn
            # per part, and while the caller is busy queuing the next shard
            # those turns are far apart. A larger one streams from disk.
            with Path(path).open("rb") as fh:  # noqa: ASYNC230
                size = os.fstat(fh.fileno()).st_size
                content: IO[bytes] | bytes = fh.read() if size <= _UPLOAD_IN_ONE_PIECE else fh
                created = await client.files.create(
                    file=(f"{shard_id}.jsonl", content, "application/jsonl"), purpose="batch"
                )
        except openai.OpenAIError as exc:
            self._provider._raise(exc, batch_path="/files")
        return created.id

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create the batch (``completion_window`` 24h) tagged with ``shard_id``."""
        if input_file_id is None:
            raise ValueError("OpenAI batches need an uploaded input file")
        body = {
            "input_file_id": input_file_id,
            "endpoint": _URLS[self._provider.api],
            "completion_window": "24h",
            "metadata": {"lexibatch_shard": shard_id, "lexibatch_model": model[:512]},
        }
        raw = await self._provider._request("post", "/batches", body=body, batch_path="/batches")
        return batch_info(raw)

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """The newest batch, created since the shard was journaled, whose metadata names it."""

        async def fetch(after: str | None) -> Page:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["after"] = after
            page = await self._provider._request(
                "get", "/batches", params=params, batch_path="/batches"
            )
            return page.get("data") or [], bool(page.get("has_more")), page.get("last_id")

        raw = await find_listed(fetch, shard.shard_id, shard.journaled_at)
        return None if raw is None else batch_info(raw)

    async def poll(self, batch_id: str) -> BatchInfo:
        """The batch's state and counts; ready only when its files are there.

        Just after ``completed`` the output file id can still be null; the
        batch then reads as not ready, so the caller polls again. If only
        the error file stays missing for longer than ``file_grace`` seconds,
        the batch is declared ready with what it has: its failed items are
        then the caller's to re-queue. A missing output file is waited for
        however long it takes: its answers were paid for, and re-queuing them
        would pay again.
        """
        raw = await self._provider._request("get", f"/batches/{batch_id}")
        return self._grace.judge(batch_info(raw))

    async def results(self, batch: BatchInfo) -> AsyncIterator[ItemResult]:
        """Every line of the output file, then of the error file, streamed."""
        name = self._provider.name
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                parse = functools.partial(parse_result_line, provider=name)
                where = f"batch file {file_id}"
                async for lines in self._line_batches(file_id):
                    for item in result_items(lines, parse, provider=name, where=where):
                        yield item

    async def _line_batches(self, file_id: str) -> AsyncIterator[list[bytes]]:
        client = self._provider._client
        try:
            async with client.files.with_streaming_response.content(file_id) as response:
                async for lines in line_batches(response.iter_bytes(_DOWNLOAD_CHUNK)):
                    yield lines
        except openai.OpenAIError as exc:
            self._provider._raise(exc)
        except Exception as exc:
            # Raised while the body streams, after the SDK has handed the response over.
            error = transport_error(
                exc,
                provider=self._provider.name,
                doing=f"download of {file_id}",
                redact=self._provider._api_key,
            )
            if error is None:
                raise
            raise error from None

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask OpenAI to cancel the batch (it moves to ``cancelling``)."""
        raw = await self._provider._request("post", f"/batches/{batch_id}/cancel")
        return batch_info(raw)

    def batch_files(self, batch: BatchInfo) -> list[str]:
        """The provider's files of ``batch``: its input, output and error files."""
        ids = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
        return [file_id for file_id in ids if file_id]

    async def delete_file(self, file_id: str) -> bool:
        """Delete one file at the provider; ``False`` when it was gone already.

        Idempotent: a file deleted before (or expired) is not an error.
        """
        try:
            await self._provider._client.files.delete(file_id)
        except openai.NotFoundError:
            return False
        except openai.OpenAIError as exc:
            self._provider._raise(exc)
        return True


# ---------------------------------------------------------------- provider


class OpenAIProvider:
    """OpenAI (or any OpenAI-compatible service) as a :class:`providers.protocol.Provider`.

    Args:
        name: the registered provider name, carried by errors and responses.
        api_key: the API key (never put into any error message).
        base_url: the service's ``/v1`` URL; OpenAI's when omitted.
        api: ``chat`` (chat completions) or ``responses`` (Responses API).
        timeout: seconds for one HTTP call.
        connect_timeout: seconds to wait for a connection (at most ``timeout``).
        max_connections: the connection pool size.
        max_batch_requests: requests per batch.
        max_batch_bytes: bytes per batch input file.
        http_client: an ``httpx2.AsyncClient`` (what the installed SDK is built
            on) to use instead of the default one.
        file_grace: seconds a terminal batch may miss a file its counts imply
            before its results are read without it.
    """

    def __init__(
        self,
        *,
        name: str = "openai",
        api_key: str,
        base_url: str | None = None,
        api: Api = "chat",
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
        max_batch_requests: int = 50_000,
        max_batch_bytes: int = 200 * 1024 * 1024,
        http_client: httpx2.AsyncClient | None = None,
        file_grace: float = 300.0,
    ) -> None:
        if api not in _PATHS:
            raise ValueError(f"api must be 'chat' or 'responses', not {api!r}")
        self.name = name
        self.api: Api = api
        self._api_key = api_key
        http_client = pooled_client(
            http_client,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            make=openai.DefaultAsyncHttpxClient,
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            timeout=httpx2.Timeout(timeout, connect=min(connect_timeout, timeout)),
            max_retries=0,
            http_client=http_client,
        )
        self.base_url = str(self._client.base_url).rstrip("/")
        self._builder = BodyBuilder(api)
        self._path = _PATHS[api]
        self._batch = OpenAIBatchEndpoint(
            self,
            BatchLimits(max_batch_requests, max_batch_bytes, mixed_models=False),
            file_grace,
        )

    @property
    def batch(self) -> OpenAIBatchEndpoint:
        """The Files + Batches endpoint."""
        return self._batch

    def body(self, request: Request) -> dict[str, Any]:
        """The JSON body sent for ``request`` (immediately or as a batch line)."""
        return self._builder.build(request)

    async def complete(self, request: Request) -> Completion:
        """Run ``request`` now.

        A refusal comes back as a :class:`Completion` with ``refusal`` set and
        a ``length`` finish with whatever (truncated) content there was, for
        the strategy to map.
        """
        try:
            # Pre-serialized bytes go out as they are: the same orjson bytes a
            # batch line carries, without the SDK's slower JSON encoder.
            response = await self._client.post(
                self._path,
                content=orjson.dumps(self._builder.build(request)),
                cast_to=httpx2.Response,
                options={"headers": {"Content-Type": "application/json"}},
            )
        except openai.OpenAIError as exc:
            self._raise(exc)
        completion = _completion(self._json(response), response.headers.get("x-request-id"))
        state = rate_limit_state(response.headers)
        return completion if state is None else dataclasses.replace(completion, rate_limit=state)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.close()

    # -- plumbing shared with the batch endpoint

    async def _request(
        self,
        method: Literal["get", "post"],
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        batch_path: str | None = None,
    ) -> dict[str, Any]:
        try:
            if method == "get":
                response = await self._client.get(
                    path,
                    cast_to=httpx2.Response,
                    options={"params": dict(params)} if params else {},
                )
            else:
                response = await self._client.post(
                    path,
                    content=orjson.dumps(body),
                    cast_to=httpx2.Response,
                    options={"headers": {"Content-Type": "application/json"}},
                )
        except openai.OpenAIError as exc:
            self._raise(exc, batch_path=batch_path)
        return self._json(response)

    def _json(self, response: httpx2.Response) -> dict[str, Any]:
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"{self.base_url} answered with something that is not JSON",
                provider=self.name,
                status_code=response.status_code,
            ) from None
        if not isinstance(data, dict):
            raise ProviderError(
                "expected a JSON object", provider=self.name, status_code=response.status_code
            )
        return data

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key)

    def _raise(self, exc: openai.OpenAIError, *, batch_path: str | None = None) -> NoReturn:
        """Raise the :mod:`providers.errors` counterpart of an SDK exception."""
        raise self._translate(exc, batch_path=batch_path) from None

    def _translate(
        self, exc: openai.OpenAIError, *, batch_path: str | None = None
    ) -> ProviderError | UnsupportedError:
        status = getattr(exc, "status_code", None)
        if (
            batch_path is not None
            and isinstance(exc, openai.APIStatusError)
            and status in (404, 405)
        ):
            return UnsupportedError(
                f"{self.base_url} has no Batch API (Files/Batches endpoints answered "
                f"{status}); use --mode immediate"
            )
        return translate_sdk_error(
            exc,
            OPENAI_ERRORS,
            provider=self.name,
            where=self.base_url,
            api_key=self._api_key,
            message_of=_error_message,
        )


def refusal_error(completion: Completion, provider: str = "openai") -> InvalidRequestError:
    """The error a refused completion ends in (code ``refusal``, not retried)."""
    return InvalidRequestError(
        f"the model refused: {completion.refusal}", provider=provider, code="refusal"
    )
