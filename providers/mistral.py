"""The Mistral provider: chat completions and batch jobs, through the ``mistralai`` SDK.

Immediate calls go to ``/v1/chat/completions`` with ``response_format``
``json_schema`` (``strict: true``). Batches are jobs over a ``purpose=batch``
file of ``{"custom_id", "body"}`` lines, one model per job; a job goes
``QUEUED`` → ``RUNNING`` → ``SUCCESS`` / ``FAILED`` / ``TIMEOUT_EXCEEDED``
(``CANCELLATION_REQUESTED`` → ``CANCELLED``), and its output and error files
hold lines ``{"id", "custom_id", "response": {"status_code", "body"}, "error"}``
— OpenAI's result-line shape, read by :func:`providers.openai.parse_result_line`.

Creating a job is not idempotent: it carries ``metadata.lexibatch_shard``,
by which :meth:`MistralBatchEndpoint.find` recognises it after a crash
between sending ``create`` and journaling its answer.
"""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import httpx2
import orjson
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors

from providers.errors import (
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_from_status,
)
from providers.filegrace import FileGrace
from providers.jsonl import line_batches, result_items
from providers.listing import CLOCK_SKEW_S, Page, find_listed
from providers.openai_wire import parse_result_line
from providers.transport import pooled_client
from providers.types import (
    BatchInfo,
    BatchLimits,
    BatchState,
    Completion,
    ItemResult,
    JournaledShard,
    Request,
    Usage,
)

__all__ = ["MistralBatchEndpoint", "MistralProvider", "batch_info", "build_body"]

DEFAULT_SERVER_URL = "https://api.mistral.ai"
ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"

_STATES: dict[str, BatchState] = {
    "QUEUED": BatchState.VALIDATING,
    "RUNNING": BatchState.IN_PROGRESS,
    "SUCCESS": BatchState.COMPLETED,
    "FAILED": BatchState.FAILED,
    "TIMEOUT_EXCEEDED": BatchState.EXPIRED,
    "CANCELLATION_REQUESTED": BatchState.CANCELLING,
    "CANCELLED": BatchState.CANCELLED,
}
_UPLOAD_IN_ONE_PIECE = 64 * 1024 * 1024
_CHUNK = 1 << 20


def build_body(request: Request, *, model: bool = True) -> dict[str, Any]:
    """The chat-completion body for ``request``; ``model=False`` leaves the model to the job."""
    body: dict[str, Any] = {"messages": [m.to_dict() for m in request.messages]}
    if model:
        body["model"] = request.model
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {
                "name": request.schema_name or "response",
                "schema": request.json_schema,
                "strict": True,
            },
        }
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.extras:
        body.update(request.extras)
    return body


def _text(content: Any) -> str:
    # Content is a string, or chunks (text, and thinking for reasoning models).
    if isinstance(content, str) or content is None:
        return content or ""
    out = []
    for chunk in content:
        kind = getattr(chunk, "type", None) or (
            chunk.get("type") if isinstance(chunk, dict) else None
        )
        if kind == "text":
            out.append(
                getattr(chunk, "text", None)
                or (chunk.get("text") if isinstance(chunk, dict) else "")
            )
    return "".join(t or "" for t in out)


def batch_info(job: Any) -> BatchInfo:
    """A :class:`BatchInfo` from a ``BatchJob`` (the SDK's object).

    Ready once terminal with its files: an output file when any request
    succeeded, an error file when any failed.
    """
    state = _STATES.get(str(job.status), BatchState.IN_PROGRESS)
    succeeded = int(job.succeeded_requests or 0)
    failed = int(job.failed_requests or 0)
    output = job.output_file if isinstance(job.output_file, str) else None
    error = job.error_file if isinstance(job.error_file, str) else None
    ready = (
        state.terminal
        and (succeeded == 0 or output is not None)
        and (failed == 0 or error is not None)
    )
    total = int(job.total_requests or 0)
    if state.terminal:
        # Requests an ended job never ran (timed out, cancelled) failed too.
        failed = max(failed, total - succeeded)
    raw = job.model_dump(mode="json", by_alias=True)
    return BatchInfo(
        id=str(job.id),
        state=state,
        total=total,
        succeeded=succeeded,
        failed=failed,
        input_file_id=(job.input_files or [None])[0],
        output_file_id=output,
        error_file_id=error,
        results_ready=ready,
        errors=tuple(str(e.message) for e in job.errors or ()),
        raw=raw,
    )


class MistralBatchEndpoint:
    """Mistral's batch jobs as a :class:`providers.protocol.BatchEndpoint`."""

    def __init__(self, provider: MistralProvider, limits: BatchLimits, file_grace: float) -> None:
        self._provider = provider
        self._limits = limits
        self._grace = FileGrace(file_grace)

    @property
    def limits(self) -> BatchLimits:
        """Requests and bytes per job (Mistral takes up to 1 M requests); one model per job."""
        return self._limits

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One JSONL line ``{"custom_id", "body"}`` (the model is the job's)."""
        return b"".join(
            (
                b'{"custom_id":',
                orjson.dumps(custom_id),
                b',"body":',
                orjson.dumps(build_body(request, model=False)),
                b"}",
            )
        )

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Upload the shard with ``purpose=batch``."""
        client = self._provider._client
        try:
            with Path(path).open("rb") as fh:  # noqa: ASYNC230 - one quick open
                size = os.fstat(fh.fileno()).st_size
                content: IO[bytes] | bytes = fh.read() if size <= _UPLOAD_IN_ONE_PIECE else fh
                created = await client.files.upload_async(
                    file={"file_name": f"{shard_id}.jsonl", "content": content}, purpose="batch"
                )
        except Exception as exc:
            raise self._provider._translate(exc) from None
        return str(created.id)

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create the job over the uploaded file, tagged ``lexibatch_shard`` in its metadata."""
        if input_file_id is None:
            raise ValueError("Mistral batch jobs need an uploaded input file")
        try:
            job = await self._provider._client.batch.jobs.create_async(
                input_files=[input_file_id],
                endpoint=ENDPOINT,
                model=model,
                metadata={"lexibatch_shard": shard_id, "lexibatch_model": model[:512]},
                timeout_hours=24,
            )
        except Exception as exc:
            raise self._provider._translate(exc) from None
        return batch_info(job)

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """The newest job whose metadata names the shard, created since it was journaled."""
        shard_id, since = shard.shard_id, shard.journaled_at
        after = None if since is None else datetime.fromtimestamp(since - CLOCK_SKEW_S, UTC)
        jobs = self._provider._client.batch.jobs

        async def fetch(cursor: str | None) -> Page:
            page = int(cursor or 0)
            try:
                listed = await jobs.list_async(
                    page=page,
                    page_size=100,
                    metadata={"lexibatch_shard": shard_id},
                    created_after=after,
                )
            except Exception as exc:
                raise self._provider._translate(exc) from None
            data = [
                {"id": j.id, "metadata": j.metadata or {}, "created_at": j.created_at}
                for j in listed.data or ()
            ]
            more = (page + 1) * 100 < int(listed.total or 0)
            return data, more, str(page + 1)

        found = await find_listed(fetch, shard_id, since)
        return None if found is None else await self.poll(str(found["id"]))

    async def poll(self, batch_id: str) -> BatchInfo:
        """The job's state and counts; ready when its files are there.

        An ended job that keeps its error file missing for longer than
        ``file_grace`` seconds is read without it (see :mod:`providers.filegrace`).
        """
        try:
            job = await self._provider._client.batch.jobs.get_async(job_id=batch_id)
        except Exception as exc:
            raise self._provider._translate(exc) from None
        return self._grace.judge(batch_info(job))

    async def results(self, batch: BatchInfo) -> AsyncIterator[ItemResult]:
        """Every line of the output file, then of the error file, streamed."""
        name = self._provider.name
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            try:
                response = await self._provider._client.files.download_async(file_id=file_id)
            except Exception as exc:
                raise self._provider._translate(exc) from None
            parse = functools.partial(parse_result_line, provider=name)
            where = f"batch file {file_id}"
            try:
                async for lines in line_batches(response.aiter_bytes(_CHUNK)):
                    for item in result_items(lines, parse, provider=name, where=where):
                        yield item
            except httpx2.HTTPError as exc:
                raise ProviderConnectionError(
                    f"download of {file_id} broke off: {type(exc).__name__}", provider=name
                ) from None
            finally:
                await response.aclose()

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask Mistral to cancel the job (``CANCELLATION_REQUESTED``)."""
        try:
            job = await self._provider._client.batch.jobs.cancel_async(job_id=batch_id)
        except Exception as exc:
            raise self._provider._translate(exc) from None
        return batch_info(job)

    def batch_files(self, batch: BatchInfo) -> list[str]:
        """The job's files at Mistral: its input, output and error files (jobs are not deleted)."""
        ids = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
        return [file_id for file_id in ids if file_id]

    async def delete_file(self, file_id: str) -> bool:
        """Delete one file (``DELETE /v1/files/{id}``); ``False`` when it was gone already."""
        try:
            await self._provider._client.files.delete_async(file_id=file_id)
        except Exception as exc:
            error = self._provider._translate(exc)
            if error.status_code == 404:
                return False
            raise error from None
        return True


class MistralProvider:
    """Mistral through ``mistralai``, as a :class:`providers.protocol.Provider`.

    Args:
        name: the registered provider name.
        api_key: the Mistral API key (never in an error message).
        base_url: the API root (without ``/v1``), e.g. an emulator's ``…/mistral``.
        timeout: seconds per HTTP call.
        connect_timeout: seconds to wait for a connection (at most ``timeout``).
        max_connections: the connection pool size.
        max_batch_requests: requests per job (Mistral's limit: 1,000,000).
        max_batch_bytes: bytes per job input file.
        http_client: an ``httpx2.AsyncClient`` to use instead of a pooled one made here.
        file_grace: seconds an ended job may miss the error file its counts
            imply before its results are read without it.
    """

    def __init__(
        self,
        *,
        name: str = "mistral",
        api_key: str,
        base_url: str | None = None,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
        max_batch_requests: int = 1_000_000,
        max_batch_bytes: int = 512 * 1024 * 1024,
        http_client: httpx2.AsyncClient | None = None,
        file_grace: float = 300.0,
    ) -> None:
        self.name = name
        self._api_key = api_key
        http_client = pooled_client(
            http_client,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
        )
        self._http = http_client
        self.base_url = (base_url or DEFAULT_SERVER_URL).rstrip("/")
        # No retry_config: retrying is the strategies' job.
        self._client = Mistral(
            api_key=api_key,
            server_url=self.base_url,
            async_client=http_client,
            timeout_ms=int(timeout * 1000),
            retry_config=None,
        )
        self._batch = MistralBatchEndpoint(
            self, BatchLimits(max_batch_requests, max_batch_bytes, mixed_models=False), file_grace
        )

    @property
    def batch(self) -> MistralBatchEndpoint:
        """Mistral's batch jobs."""
        return self._batch

    async def complete(self, request: Request) -> Completion:
        """Run ``request`` through ``chat.complete``."""
        body = build_body(request)
        try:
            response = await self._client.chat.complete_async(**body)
        except TypeError as exc:
            # An extra the SDK has no parameter for.
            raise InvalidRequestError(str(exc), provider=self.name) from None
        except Exception as exc:
            raise self._translate(exc) from None
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        usage = response.usage
        return Completion(
            _text(message.content if message is not None else None),
            Usage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)),
            response.model,
            response.id,
            str(choice.finish_reason) if choice is not None else None,
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) >= 4 else text

    def _translate(self, exc: BaseException) -> ProviderError:
        """The :mod:`providers.errors` counterpart of an SDK or transport exception."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, mistral_errors.MistralError):
            try:
                body: Any = orjson.loads(exc.body)
            except (orjson.JSONDecodeError, TypeError):
                body = self._redact(str(exc.body or ""))[:500]
            message, code = _message(body, f"HTTP {exc.status_code}")
            return error_from_status(
                exc.status_code,
                self._redact(message),
                provider=self.name,
                body=body,
                headers=dict(exc.headers),
                code=code,
            )
        if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
            # Never sent: unreachable, not a (billed) slow answer.
            return ProviderConnectionError(
                f"cannot reach {self.base_url}: no connection in time", provider=self.name
            )
        if isinstance(exc, httpx2.TimeoutException):
            return ProviderTimeoutError(
                f"no answer from {self.base_url} in time", provider=self.name
            )
        if isinstance(exc, httpx2.HTTPError | mistral_errors.NoResponseError | OSError):
            return ProviderConnectionError(
                f"cannot reach {self.base_url}: {self._redact(str(exc) or type(exc).__name__)}",
                provider=self.name,
            )
        return ProviderError(self._redact(f"{type(exc).__name__}: {exc}"), provider=self.name)


def _message(body: Any, fallback: str) -> tuple[str, str | None]:
    """Mistral's error message and code from an error body."""
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("detail") or fallback
        if not isinstance(message, str):
            message = orjson.dumps(message).decode()[:500]
        code = body.get("type") or body.get("code")
        return message, (str(code) if code is not None else None)
    if isinstance(body, str) and body.strip():
        return body.strip()[:500], None
    return fallback, None
