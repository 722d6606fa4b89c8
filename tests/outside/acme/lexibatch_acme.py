"""A lexibatch provider from outside: Acme's OpenAI-shaped chat and batch API.

It uses only the public names of lexibatch (``plugins`` and ``providers``):
its own options, its own key variable, its own batch endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx2
import orjson

from plugins import BatchSpec, ProviderSettings, ProviderSpec, hookimpl
from providers import (
    BatchExpiredError,
    BatchInfo,
    BatchLimits,
    BatchState,
    Completion,
    ItemResult,
    JournaledShard,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    Request,
    Usage,
)
from providers.errors import BatchCancelledError, error_from_status


class AcmeOptions(ProviderSettings):
    """``[providers.acme]``: every provider's keys, plus Acme's own."""

    #: How long Acme may take over a batch.
    completion_window: Literal["24h", "48h"] = "24h"
    #: The organization billed, sent as ``OpenAI-Organization``.
    organization: str | None = None


SPEC = ProviderSpec(
    options=AcmeOptions,
    key_env="ACME_API_KEY",
    prices="openai",  # Acme resells OpenAI's models at OpenAI's prices
    batch=BatchSpec(max_requests=50_000, max_bytes=200 * 1024 * 1024),
)


@hookimpl
def register_providers(register: Any) -> None:
    """Register ``acme``."""
    register("acme", AcmeProvider, description="Acme's chat and batch API", spec=SPEC)


class AcmeProvider:
    """Immediate calls through ``/chat/completions``, batches through ``/files`` + ``/batches``."""

    def __init__(self, name: str, options: AcmeOptions) -> None:
        self.name = name
        self.base_url = (options.base_url or "https://api.acme.example/v1").rstrip("/")
        headers = {"Authorization": f"Bearer {options.api_key(name)}"}
        if options.organization:
            headers["OpenAI-Organization"] = options.organization
        timeout = httpx2.Timeout(options.timeout, connect=options.connect_timeout)
        self.http = httpx2.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout)
        self._batch = AcmeBatches(self, options.completion_window, SPEC.batch.limits(options))

    @property
    def batch(self) -> AcmeBatches:
        """Acme's batch endpoint."""
        return self._batch

    def body(self, request: Request) -> dict[str, Any]:
        """The chat-completions body of ``request``."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [m.to_dict() for m in request.messages],
        }
        if request.json_schema is not None:
            schema = {"name": request.schema_name, "schema": request.json_schema, "strict": True}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return {**body, **request.extras}

    async def complete(self, request: Request) -> Completion:
        """One immediate call."""
        return completion(await self.call("POST", "/chat/completions", json=self.body(request)))

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One API call; its failure as the provider error it means."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx2.ConnectTimeout:
            raise ProviderConnectionError(
                f"cannot reach {self.base_url}", provider=self.name
            ) from None
        except httpx2.TimeoutException:
            raise ProviderTimeoutError(
                f"no answer from {self.base_url}", provider=self.name
            ) from None
        except httpx2.RequestError as exc:
            raise ProviderConnectionError(f"{type(exc).__name__}", provider=self.name) from None
        body = orjson.loads(response.content or b"{}")
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, dict) else {}
            raise error_from_status(
                response.status_code,
                str(error.get("message") or f"HTTP {response.status_code}"),
                provider=self.name,
                body=body,
                headers=dict(response.headers),
                code=error.get("code") or error.get("type"),
            )
        return dict(body)

    async def aclose(self) -> None:
        """Close the connections."""
        await self.http.aclose()


def completion(body: Mapping[str, Any]) -> Completion:
    """A chat-completions answer as a :class:`Completion`."""
    choice = body["choices"][0]
    usage = body.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return Completion(
        content=choice["message"].get("content") or "",
        usage=Usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0), cached),
        model=str(body.get("model")),
        request_id=body.get("id"),
        finish_reason=choice.get("finish_reason"),
        refusal=choice["message"].get("refusal"),
    )


_STATES = {state.value: state for state in BatchState}
_ITEM_ERRORS: dict[str, type[ProviderError]] = {
    "batch_expired": BatchExpiredError,
    "batch_cancelled": BatchCancelledError,
    "request_timeout": ProviderTimeoutError,
}


class AcmeBatches:
    """Acme's batches: a JSONL file uploaded, a batch created from it, result files read."""

    def __init__(self, provider: AcmeProvider, window: str, limits: BatchLimits) -> None:
        self.provider = provider
        self.window = window
        self._limits = limits

    @property
    def limits(self) -> BatchLimits:
        """Requests and bytes one batch may hold."""
        return self._limits

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One input line."""
        line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
        return orjson.dumps({**line, "body": self.provider.body(request)})

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Upload the input file; its id."""
        files = {
            "file": (
                f"{shard_id}.jsonl",
                await asyncio.to_thread(path.read_bytes),
                "application/jsonl",
            )
        }
        uploaded = await self.provider.call(
            "POST", "/files", files=files, data={"purpose": "batch"}
        )
        return str(uploaded["id"])

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create the batch, the shard's id in its metadata (what :meth:`find` looks for)."""
        body = {
            "input_file_id": input_file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": self.window,
            "metadata": {"lexibatch_shard": shard_id},
        }
        return batch_info(await self.provider.call("POST", "/batches", json=body))

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """The newest batch made for the shard, paging back to when it was journaled."""
        horizon = None if shard.journaled_at is None else shard.journaled_at - 600
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = await self.provider.call("GET", "/batches", params=params)
            data = page.get("data") or []
            for raw in data:
                if (raw.get("metadata") or {}).get("lexibatch_shard") == shard.shard_id:
                    return batch_info(raw)
            old = horizon is not None and any(raw["created_at"] < horizon for raw in data)
            if not data or not page.get("has_more") or old:
                return None
            params = {"limit": 100, "after": page.get("last_id") or data[-1]["id"]}

    async def poll(self, batch_id: str) -> BatchInfo:
        """The batch's state and counts."""
        return batch_info(await self.provider.call("GET", f"/batches/{batch_id}"))

    async def results(self, batch: BatchInfo) -> AsyncIterator[ItemResult]:
        """Every line of the output and error files."""
        for file_id in (batch.output_file_id, batch.error_file_id):
            if file_id:
                async for line in self._lines(file_id):
                    yield item_result(orjson.loads(line), self.provider.name)

    async def _lines(self, file_id: str) -> AsyncIterator[str]:
        provider = self.provider
        try:
            async with provider.http.stream("GET", f"/files/{file_id}/content") as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_from_status(
                        response.status_code, f"file {file_id}", provider=provider.name
                    )
                async for line in response.aiter_lines():
                    if line.strip():
                        yield line
        except httpx2.RequestError as exc:
            raise ProviderConnectionError(
                f"download of {file_id} broke off ({type(exc).__name__})", provider=provider.name
            ) from None

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask Acme to cancel the batch."""
        return batch_info(await self.provider.call("POST", f"/batches/{batch_id}/cancel"))


def batch_info(raw: Mapping[str, Any]) -> BatchInfo:
    """An Acme batch object as a :class:`BatchInfo`; ready once its files are there."""
    state = _STATES.get(str(raw.get("status")), BatchState.IN_PROGRESS)
    counts = raw.get("request_counts") or {}
    done, failed = counts.get("completed") or 0, counts.get("failed") or 0
    output, errors = raw.get("output_file_id"), raw.get("error_file_id")
    ready = state.terminal and (not done or bool(output)) and (not failed or bool(errors))
    reasons = ((raw.get("errors") or {}).get("data")) or []
    return BatchInfo(
        id=str(raw["id"]),
        state=state,
        total=counts.get("total") or 0,
        succeeded=done,
        failed=failed,
        input_file_id=raw.get("input_file_id"),
        output_file_id=output,
        error_file_id=errors,
        results_ready=ready,
        errors=tuple(f"{e.get('code')}: {e.get('message')}" for e in reasons),
        raw=dict(raw),
        model=raw.get("model"),
    )


def item_result(line: Mapping[str, Any], provider: str) -> ItemResult:
    """One result line: an answer, or the error it ended in."""
    custom_id = str(line["custom_id"])
    response = line.get("response") or {}
    body = response.get("body") or {}
    if response.get("status_code") == 200:
        return ItemResult(custom_id, completion=completion(body))
    error = line.get("error") or body.get("error") or {}
    message = str(error.get("message") or "the request failed")
    code = error.get("code")
    if code in _ITEM_ERRORS:
        return ItemResult(
            custom_id, error=_ITEM_ERRORS[code](message, provider=provider, code=code)
        )
    status = response.get("status_code")
    if isinstance(status, int):
        return ItemResult(
            custom_id, error=error_from_status(status, message, provider=provider, code=code)
        )
    return ItemResult(custom_id, error=ProviderError(message, provider=provider, code=code))
