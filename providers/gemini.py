"""The Gemini provider: ``generateContent`` and batch mode of the Gemini Developer API.

Immediate calls go to ``models/{model}:generateContent`` with
``generationConfig.responseMimeType: application/json`` and
``responseJsonSchema``. Batches go to ``models/{model}:batchGenerateContent``:
a shard up to ``inline_max_bytes`` is sent inline (its requests in the create
call, its answers in the finished batch object, in order, each carrying its
key as ``metadata``); a bigger one is uploaded first (the Files API's
resumable upload) as JSONL lines ``{"key", "request"}``, and its answers are
the lines ``{"response" | "error", "key"}`` of the results file the batch names.

The official ``google-genai`` SDK does the resumable upload and the download
and reads every error answer (``errors.APIError.raise_for_async_response``).
Request and batch bodies are sent and read as plain JSON over the documented
REST API, through the same HTTP client: the SDK's typed ``BatchJob`` leaves
out the Gemini API's ``batchStats`` counts, the SDK has no public call for a
raw request, and one body builder then serves the immediate call, the inline
entry and the file line alike.

**Creating a batch is not idempotent.** A batch is created with the display
name ``lexibatch-<shard id>``; :meth:`GeminiBatchEndpoint.find` lists batches
newest first (back to when the shard was journaled) and recognises it by
that name, so a run killed between sending ``create`` and journaling its
answer re-attaches instead of paying twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
import orjson
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from providers.errors import (
    KEY_REFUSED,
    AuthenticationError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    error_from_status,
)
from providers.gemini_wire import (
    DISPLAY_PREFIX,
    batch_info,
    build_body,
    completion_from_response,
    item_result,
    shard_of,
    take_inline,
    timestamp,
)
from providers.jsonl import line_batches
from providers.listing import Page, find_listed
from providers.scratch import scratch_file
from providers.transport import pooled_client
from providers.types import (
    BatchInfo,
    BatchLimits,
    Completion,
    ItemResult,
    JournaledShard,
    Request,
)

log = logging.getLogger(__name__)

__all__ = [
    "DISPLAY_PREFIX",
    "GeminiBatchEndpoint",
    "GeminiProvider",
    "batch_info",
    "build_body",
    "completion_from_response",
    "item_result",
]

_CHUNK = 1 << 20
_BATCHES = "batches/"
# Gemini's words for a file it does not have (a 403, not a 404).
_MAY_NOT_EXIST = "or it may not exist"


class GeminiBatchEndpoint:
    """Gemini's batch mode as a :class:`providers.protocol.BatchEndpoint`."""

    def __init__(
        self, provider: GeminiProvider, limits: BatchLimits, inline_max_bytes: int
    ) -> None:
        self._provider = provider
        self._limits = limits
        self._inline_max_bytes = inline_max_bytes
        # batch id -> the inline answers of its last poll, until results() reads them
        self._inline: dict[str, list[Any]] = {}

    @property
    def limits(self) -> BatchLimits:
        """Requests and bytes per batch; one model per batch (the model is in the URL)."""
        return self._limits

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One JSONL line ``{"key", "request"}``."""
        return b"".join(
            (
                b'{"key":',
                orjson.dumps(custom_id),
                b',"request":',
                orjson.dumps(build_body(request)),
                b"}",
            )
        )

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Upload a shard bigger than ``inline_max_bytes`` (resumable upload); ``None`` inlines it.

        Returns:
            The file's name (``files/…``), or ``None`` when the shard goes inline.
        """
        size = await asyncio.to_thread(os.path.getsize, path)
        if size <= self._inline_max_bytes:
            return None
        config = genai_types.UploadFileConfig(
            display_name=f"{DISPLAY_PREFIX}{shard_id}", mime_type="jsonl"
        )
        try:
            uploaded = await self._provider._client.aio.files.upload(file=str(path), config=config)
        except Exception as exc:
            raise self._provider._translate(exc) from None
        return str(uploaded.name)

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create the batch, named ``lexibatch-<shard_id>``, from the file or inline."""
        if input_file_id is not None:
            source: dict[str, Any] = {"fileName": input_file_id}
        else:
            source = {"requests": {"requests": await asyncio.to_thread(_inline_entries, path)}}
        body = {"batch": {"displayName": f"{DISPLAY_PREFIX}{shard_id}", "inputConfig": source}}
        raw = await self._provider._call("post", f"{_model_path(model)}:batchGenerateContent", body)
        return batch_info(raw)

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """The newest batch named for the shard, created since it was journaled, if any."""

        async def fetch(token: str | None) -> Page:
            query: dict[str, Any] = {"pageSize": 100}
            if token:
                query["pageToken"] = token
            page = await self._provider._call("get", f"batches?{urlencode(query)}")
            listed = [
                {
                    "id": op.get("name"),
                    "metadata": {
                        "lexibatch_shard": shard_of((op.get("metadata") or {}).get("displayName"))
                    },
                    "created_at": timestamp((op.get("metadata") or {}).get("createTime")),
                }
                for op in page.get("operations") or ()
                if isinstance(op, Mapping)
            ]
            token = page.get("nextPageToken") or None
            return listed, token is not None, token

        found = await find_listed(fetch, shard.shard_id, shard.journaled_at)
        return None if found is None else await self.poll(str(found["id"]))

    async def poll(self, batch_id: str) -> BatchInfo:
        """The batch's state and counts.

        Inline answers are kept aside for :meth:`results`, out of the
        ``raw`` object: the journal stores that with the shard, and it
        should not hold megabytes of answers.
        """
        raw = await self._provider._call("get", batch_id)
        inline = take_inline(raw)
        if inline is not None:
            self._inline[batch_id] = inline
        return batch_info(raw)

    async def results(self, batch: BatchInfo) -> AsyncIterator[ItemResult]:
        """Every answer of an ended batch: the results file's lines, or the inline answers."""
        name = self._provider.name
        inline = self._inline.pop(batch.id, None)
        if inline is None and batch.raw.get("inlinedResponseCount") is not None:
            # Read by another process (or before a restart): ask for the batch again.
            inline = take_inline(await self._provider._call("get", batch.id))
        if isinstance(inline, list):
            for i, item in enumerate(inline):
                key = (item.get("metadata") or {}).get("key") if isinstance(item, Mapping) else None
                yield item_result(str(key if key is not None else i), item, provider=name)
            return
        if not batch.output_file_id:
            return
        async for lines in self._download(batch.output_file_id):
            for line in lines:
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError:
                    data = None
                if isinstance(data, dict) and data.get("key") is not None:
                    yield item_result(str(data["key"]), data, provider=name)
                else:
                    # No key to end its request with: reconciliation finds it missing.
                    log.warning("skipping a malformed line in %s", batch.output_file_id)

    async def _download(self, file_name: str) -> AsyncIterator[list[bytes]]:
        """The results file, streamed to a scratch file, then read back in chunks."""
        async with scratch_file("gemini", ".jsonl") as tmp:
            try:
                files = self._provider._client.aio.files
                await files.download(file=file_name, destination=str(tmp))
            except Exception as exc:
                error = self._provider._translate(exc)
                if type(error) is ProviderConnectionError:
                    error = ProviderConnectionError(
                        f"download of {file_name} broke off: {type(exc).__name__}",
                        provider=self._provider.name,
                    )
                raise error from None
            async for lines in line_batches(_chunks(tmp)):
                yield lines

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask Gemini to cancel the batch, then read its state."""
        await self._provider._call("post", f"{batch_id}:cancel", {})
        return await self.poll(batch_id)

    def batch_files(self, batch: BatchInfo) -> list[str]:
        """What ``batch`` leaves at Gemini: its uploaded input, its results file, and itself.

        Names, as Gemini gives them: ``files/…`` (kept 48 hours, counted
        against the project's 20 GB of files) and ``batches/…`` (the batch,
        holding an inline batch's answers until it is deleted).
        """
        names = (batch.input_file_id, batch.output_file_id, batch.id)
        return [name for name in names if name]

    async def delete_file(self, file_id: str) -> bool:
        """Delete a file (``files/…``) or a batch (``batches/…``); ``False`` when it was gone.

        Gemini answers for a file it does not have with a 403 that says the
        file "may not exist" (it will not tell a missing file from another
        project's): that is a file gone, not an error.
        """
        try:
            if file_id.startswith(_BATCHES):
                await self._provider._call("delete", file_id)
            else:
                await self._provider._client.aio.files.delete(name=file_id)
        except Exception as exc:
            error = self._provider._translate(exc)
            if error.status_code == 404 or (
                error.status_code == 403 and _MAY_NOT_EXIST in error.message
            ):
                return False
            raise error from None
        return True


def _model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def _inline_entries(path: Path) -> list[Any]:
    """The inline requests of a shard: each line's request, its key as metadata."""
    entries = []
    for line in path.read_bytes().splitlines():
        if line.strip():
            item = orjson.loads(line)
            entries.append({"request": item["request"], "metadata": {"key": item["key"]}})
    return entries


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, _CHUNK):
            yield chunk


# -------------------------------------------------------------- provider


class GeminiProvider:
    """The Gemini Developer API through ``google-genai``, as a :class:`providers.protocol.Provider`.

    Args:
        name: the registered provider name.
        api_key: the Gemini API key (sent as ``x-goog-api-key``; never in an error).
        base_url: the API root (without the version), e.g. an emulator's.
        api_version: the REST version (``v1beta``: where batch mode lives).
        timeout: seconds per HTTP call.
        connect_timeout: seconds to wait for a connection (at most ``timeout``).
        max_connections: the connection pool size.
        max_batch_requests: requests per batch.
        max_batch_bytes: bytes per batch input file (Gemini takes files up to 2 GB).
        inline_max_bytes: shards up to this size go inline (Gemini caps inline
            batches at 20 MB); 0 uploads every shard.
        http_client: an ``httpx2.AsyncClient`` to use instead of a pooled one made here.
    """

    def __init__(
        self,
        *,
        name: str = "gemini",
        api_key: str,
        base_url: str | None = None,
        api_version: str = "v1beta",
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        max_connections: int = 100,
        max_batch_requests: int = 100_000,
        max_batch_bytes: int = 2_000_000_000,
        inline_max_bytes: int = 4 * 1024 * 1024,
        http_client: httpx2.AsyncClient | None = None,
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
        # With its own httpx client the SDK neither retries nor sleeps on a
        # failed connection: retrying is the strategies' job.
        options = genai_types.HttpOptions(
            base_url=base_url,
            api_version=api_version,
            timeout=int(timeout * 1000),
            httpx_async_client=http_client,
        )
        self._client = genai.Client(api_key=api_key, http_options=options)
        self.base_url = (base_url or "https://generativelanguage.googleapis.com").rstrip("/")
        self._api_root = f"{self.base_url}/{api_version}/"
        self._batch = GeminiBatchEndpoint(
            self,
            BatchLimits(max_batch_requests, max_batch_bytes, mixed_models=False),
            inline_max_bytes,
        )

    @property
    def batch(self) -> GeminiBatchEndpoint:
        """Gemini's batch mode."""
        return self._batch

    async def complete(self, request: Request) -> Completion:
        """Run ``request`` through ``generateContent``."""
        path = f"{_model_path(request.model)}:generateContent"
        return completion_from_response(
            await self._call("post", path, build_body(request)), provider=self.name
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """One JSON call to the REST API, errors translated."""
        headers = {"x-goog-api-key": self._api_key, "content-type": "application/json"}
        content = orjson.dumps(body) if body is not None else None
        try:
            response = await self._http.request(
                method.upper(), self._api_root + path, content=content, headers=headers
            )
            await genai_errors.APIError.raise_for_async_response(response)
        except Exception as exc:
            raise self._translate(exc) from None
        try:
            data = orjson.loads(response.content or b"{}")
        except orjson.JSONDecodeError:
            raise ProviderError(
                f"{self.base_url} answered with something that is not JSON", provider=self.name
            ) from None
        if not isinstance(data, dict):
            raise ProviderError("expected a JSON object", provider=self.name)
        return data

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if len(self._api_key) >= 4 else text

    def _translate(self, exc: BaseException) -> ProviderError:
        """The :mod:`providers.errors` counterpart of an SDK or transport exception."""
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, genai_errors.APIError):
            details = exc.details if isinstance(exc.details, Mapping) else {}
            inner = details.get("error") if isinstance(details.get("error"), Mapping) else details
            headers = getattr(exc.response, "headers", None)
            message = self._redact(str(exc.message or exc.status or exc))
            code = exc.status
            if exc.code == 400 and "payload size exceeds the limit" in message:
                # Gemini's refusal of a batch for its size (inline batches: 20 MB).
                code = "request_too_large"
            if exc.code == 400 and _key_invalid(inner, message):
                # Gemini refuses a key with a 400, not a 401: held back the same.
                return AuthenticationError(
                    message,
                    provider=self.name,
                    status_code=400,
                    body=details,
                    headers=dict(headers) if headers is not None else None,
                    code=KEY_REFUSED,
                )
            error = error_from_status(
                int(exc.code or 500),
                message,
                provider=self.name,
                body=details,
                headers=dict(headers) if headers is not None else None,
                code=code,
            )
            if error.retry_after is None and isinstance(inner, Mapping):
                error.retry_after = _retry_delay(inner)
            return error
        if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
            # Never sent: unreachable, not a (billed) slow answer.
            return ProviderConnectionError(
                f"cannot reach {self.base_url}: no connection in time", provider=self.name
            )
        if isinstance(exc, httpx2.TimeoutException):
            return ProviderTimeoutError(
                f"no answer from {self.base_url} in time", provider=self.name
            )
        if isinstance(exc, httpx2.HTTPError | OSError):
            return ProviderConnectionError(
                f"cannot reach {self.base_url}: {self._redact(str(exc) or type(exc).__name__)}",
                provider=self.name,
            )
        return ProviderError(self._redact(f"{type(exc).__name__}: {exc}"), provider=self.name)


def _key_invalid(error: Any, message: str) -> bool:
    """Whether a 400 says the API key is not valid (``ErrorInfo.reason`` ``API_KEY_INVALID``)."""
    if message.startswith("API key not valid"):
        return True
    details = error.get("details") if isinstance(error, Mapping) else None
    return any(
        isinstance(detail, Mapping) and detail.get("reason") == "API_KEY_INVALID"
        for detail in details or ()
    )


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    """The ``RetryInfo.retryDelay`` (``"5s"``) a 429 carries in its details, in seconds."""
    for detail in error.get("details") or ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay") or "")
            with contextlib.suppress(ValueError):
                return float(delay.rstrip("s"))
    return None
