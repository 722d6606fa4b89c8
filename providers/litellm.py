"""The LiteLLM provider: any model LiteLLM reaches, and its batch API where it has one.

Immediate calls go through ``litellm.acompletion`` with a strict
``json_schema`` response format, which LiteLLM translates for each vendor.
Batches go through LiteLLM's files and batches functions (``acreate_file``,
``acreate_batch``, ``aretrieve_batch``, ``afile_content``, ``acancel_batch``)
in the OpenAI line format, for the vendors where LiteLLM has them
(:data:`BATCH_PROVIDERS`); for any other vendor :attr:`LiteLLMProvider.batch`
is ``None``, which is how a strategy tells that batch mode is not available.

``litellm`` is imported on first use only (it takes seconds), and before that
every switch that would make it reach the network on its own is set: the model
cost map, Anthropic beta-header config, autorouter presets, blog posts and
policy templates are read from the copies bundled in the package
(``LITELLM_LOCAL_*``), its callbacks are emptied and its debug banners off.
Its retries are off: retrying is the strategies' job.
"""

from __future__ import annotations

import asyncio
import functools
import os
import warnings
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson

from providers.errors import (
    InvalidRequestError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    UnsupportedError,
    error_from_status,
)
from providers.jsonl import line_batches, result_items, split_lines
from providers.listing import Page, find_listed
from providers.openai_wire import BodyBuilder, batch_info, parse_result_line
from providers.sdkerrors import redact
from providers.transport import transport_error
from providers.types import (
    BatchInfo,
    BatchLimits,
    Completion,
    ItemResult,
    JournaledShard,
    Request,
    Usage,
)

__all__ = [
    "BATCH_PROVIDERS",
    "LiteLLMBatchEndpoint",
    "LiteLLMProvider",
    "batch_provider_for",
    "completion_from_response",
    "load_litellm",
    "translate_error",
]

#: LiteLLM vendors whose files + batches functions take OpenAI-format lines.
BATCH_PROVIDERS = frozenset(
    {"openai", "hosted_vllm", "litellm_proxy", "azure", "vertex_ai", "bedrock"}
)

# Environment switches that keep litellm from fetching its config files at
# import or first use; each has a bundled copy in the package.
_OFFLINE_ENV = (
    "LITELLM_LOCAL_MODEL_COST_MAP",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS",
    "LITELLM_LOCAL_BLOG_POSTS",
    "LITELLM_LOCAL_POLICY_TEMPLATES",
)

_CHAT_URL = "/v1/chat/completions"
_FIND_PAGE = 100


def load_litellm() -> ModuleType:
    """``litellm``, imported with its network-reaching features off."""
    for var in _OFFLINE_ENV:
        os.environ.setdefault(var, "True")
    # LiteLLM's types include TypedDicts with ReadOnly items; pydantic warns
    # once for each as it builds their schemas, lazily, on LiteLLM's first use
    # of each. Those warnings say nothing to a lexibatch user: this one form,
    # raised from that one pydantic module, is ignored (pyproject.toml's pytest
    # filters name the same).
    warnings.filterwarnings(
        "ignore",
        message=r".* using the `ReadOnly` qualifier",
        category=UserWarning,
        module=r"pydantic\._internal\._generate_schema",
    )
    import litellm

    litellm.suppress_debug_info = True
    litellm.success_callback = []
    litellm.failure_callback = []
    litellm.callbacks = []
    return litellm


# --------------------------------------------------------------------------- bodies


def _split_provider(model: str) -> tuple[str | None, str]:
    prefix, sep, rest = model.partition("/")
    if sep and prefix and rest:
        return prefix, rest
    return None, model


# LiteLLM speaks OpenAI's chat-completions format, in batch lines and calls alike.
_CHAT = BodyBuilder("chat")


def batch_provider_for(
    model: str | None, *, base_url: str | None = None, explicit: str | None = None
) -> str | None:
    """The LiteLLM vendor whose batch API serves ``model``, or ``None`` when it has none.

    An explicit vendor wins; otherwise the model's ``vendor/`` prefix; a model
    without one is asked of LiteLLM (``gpt-4o`` is OpenAI's); with no model at
    all, a ``base_url`` means an OpenAI-compatible service.
    """
    vendor = explicit
    if vendor is None and model:
        vendor, _ = _split_provider(model)
        if vendor is None:
            try:
                vendor = load_litellm().get_llm_provider(model=model, api_base=base_url)[1]
            except Exception:
                vendor = None
    if vendor is None and not model and base_url:
        vendor = "openai"
    return vendor if vendor in BATCH_PROVIDERS else None


# --------------------------------------------------------------------------- answers


def _get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def completion_from_response(response: Any) -> Completion:
    """A :class:`Completion` from LiteLLM's ``ModelResponse`` (or its dict form)."""
    choices = _get(response, "choices") or []
    choice = choices[0] if choices else None
    message = _get(choice, "message")
    usage = _get(response, "usage")
    prompt_details = _get(usage, "prompt_tokens_details")
    completion_details = _get(usage, "completion_tokens_details")
    refusal = _get(message, "refusal") or _get(_get(message, "provider_specific_fields"), "refusal")
    headers = _get(response, "_response_headers") or {}
    request_id = None
    if isinstance(headers, Mapping):
        request_id = headers.get("x-request-id") or headers.get("request-id")
    return Completion(
        content=_get(message, "content") or "",
        usage=Usage(
            input_tokens=_get(usage, "prompt_tokens") or 0,
            output_tokens=_get(usage, "completion_tokens") or 0,
            cached_tokens=_get(prompt_details, "cached_tokens")
            or _get(usage, "cache_read_input_tokens")
            or 0,
            reasoning_tokens=_get(completion_details, "reasoning_tokens") or 0,
            cache_creation_tokens=_get(usage, "cache_creation_input_tokens") or 0,
        ),
        model=_get(response, "model") or "",
        request_id=request_id or _get(response, "id"),
        finish_reason=_get(choice, "finish_reason"),
        refusal=refusal or None,
    )


# --------------------------------------------------------------------------- errors


def _headers_of(exc: BaseException) -> dict[str, str]:
    headers: dict[str, str] = {}
    response = getattr(exc, "response", None)
    raw = getattr(response, "headers", None)
    if raw is not None:
        headers.update({str(k): str(v) for k, v in raw.items()})
    for attr in ("litellm_response_headers", "headers"):
        extra = getattr(exc, attr, None)
        if isinstance(extra, Mapping):
            headers.update({str(k): str(v) for k, v in extra.items()})
    return headers


def translate_error(
    exc: BaseException, *, provider: str = "litellm", api_key: str | None = None
) -> ProviderError:
    """Translate a LiteLLM (or OpenAI SDK) exception into the project's error tree.

    LiteLLM's exceptions subclass the OpenAI SDK's and carry ``status_code``;
    its ``APIConnectionError`` says 500 but is a connection failure, and its
    ``Timeout`` says 408.
    """
    import openai

    message = redact(str(getattr(exc, "message", None) or exc) or type(exc).__name__, api_key)
    if isinstance(exc, ProviderError):
        return exc
    # LiteLLM re-raises some connection failures as a 500 whose cause is the
    # SDK's connection error; the cause tells what really happened.
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, openai.APITimeoutError | TimeoutError):
            return ProviderTimeoutError(message, provider=provider)
        if isinstance(cause, openai.APIConnectionError):
            return ProviderConnectionError(message, provider=provider)
        transport = transport_error(cause, provider=provider, doing="the call", redact=api_key)
        if transport is not None:
            return transport
        cause = cause.__cause__ or cause.__context__
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.OpenAIError) or isinstance(status, int):
        body = getattr(exc, "body", None)
        code = _get(body, "code") or _get(body, "type") or getattr(exc, "code", None)
        return error_from_status(
            status if isinstance(status, int) else None,
            message,
            provider=provider,
            body=body,
            headers=_headers_of(exc),
            code=str(code) if code is not None else None,
        )
    return ProviderError(f"{type(exc).__name__}: {message}", provider=provider)


# --------------------------------------------------------------------------- batches


class LiteLLMBatchEndpoint:
    """LiteLLM's files + batches functions as a :class:`providers.protocol.BatchEndpoint`.

    Lines are OpenAI chat-completions lines; the model in each body is the
    vendor's own name (the ``vendor/`` prefix removed). The shard id is kept in
    the batch's metadata, so :meth:`find` reads it back from the batch list.
    """

    def __init__(self, provider: LiteLLMProvider, vendor: str, limits: BatchLimits) -> None:
        self._provider = provider
        self.vendor = vendor
        self._limits = limits

    @property
    def limits(self) -> BatchLimits:
        """Requests and bytes per batch (OpenAI's: 50,000 / 200 MB); one model each."""
        return self._limits

    def encode(self, request: Request, custom_id: str) -> bytes:
        """One JSONL input line: ``{"custom_id", "method", "url", "body"}``."""
        _, model = _split_provider(request.model)
        return b"".join(
            (
                b'{"custom_id":',
                orjson.dumps(custom_id),
                b',"method":"POST","url":"/v1/chat/completions","body":',
                orjson.dumps(_CHAT.build(request, model=model)),
                b"}",
            )
        )

    def _kwargs(self) -> dict[str, Any]:
        return self._provider._connection_kwargs(custom_llm_provider=self.vendor)

    async def upload(self, path: Path, *, shard_id: str) -> str | None:
        """Upload the JSONL file (``purpose=batch``) and return its file id."""
        litellm = load_litellm()
        data = await asyncio.to_thread(path.read_bytes)
        try:
            created = await litellm.acreate_file(
                file=(f"{shard_id}.jsonl", data, "application/jsonl"),
                purpose="batch",
                **self._kwargs(),
            )
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        return str(created.id)

    async def create(
        self, path: Path, input_file_id: str | None, *, shard_id: str, model: str
    ) -> BatchInfo:
        """Create the batch over the uploaded file, with the shard id in its metadata."""
        if input_file_id is None:
            raise UnsupportedError(f"{self._provider.name}: a batch needs an uploaded input file")
        vendor, _ = _split_provider(model)
        if vendor is not None and vendor != self.vendor and vendor in BATCH_PROVIDERS:
            raise UnsupportedError(
                f"{self._provider.name}: model {model!r} is not served by the {self.vendor} "
                f"batch API this provider was configured for"
            )
        litellm = load_litellm()
        try:
            batch = await litellm.acreate_batch(
                completion_window="24h",
                endpoint=_CHAT_URL,
                input_file_id=input_file_id,
                metadata={"lexibatch_shard": shard_id, "lexibatch_model": model[:512]},
                **self._kwargs(),
            )
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        return batch_info(_as_dict(batch))

    async def find(self, shard: JournaledShard) -> BatchInfo | None:
        """The newest batch, created since the shard was journaled, whose metadata names it.

        A service without the list endpoint (404, 405) has none to find.
        """
        litellm = load_litellm()

        async def fetch(after: str | None) -> Page:
            page = await litellm.alist_batches(after=after, limit=_FIND_PAGE, **self._kwargs())
            data = [_as_dict(raw) for raw in _get(page, "data") or []]
            return data, bool(_get(page, "has_more")), _get(page, "last_id")

        try:
            raw = await find_listed(fetch, shard.shard_id, shard.journaled_at)
        except Exception as exc:
            error = self._provider._translate(exc)
            if error.status_code in (404, 405):
                return None
            raise error from exc
        return None if raw is None else batch_info(raw)

    async def poll(self, batch_id: str) -> BatchInfo:
        """The batch's state and counts."""
        litellm = load_litellm()
        try:
            # Without the flag, LiteLLM downloads the whole output file of a
            # completed batch on every poll to log its cost.
            batch = await litellm.aretrieve_batch(
                batch_id=batch_id,
                litellm_metadata={"batch_ignore_default_logging": True},
                **self._kwargs(),
            )
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        return batch_info(_as_dict(batch))

    async def results(self, batch: BatchInfo) -> AsyncIterator[ItemResult]:
        """Every line of the output file, then every line of the error file, streamed."""
        name = self._provider.name
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            parse = functools.partial(parse_result_line, provider=name)
            where = f"batch file {file_id}"
            async for lines in self._line_batches(file_id):
                for item in result_items(lines, parse, provider=name, where=where):
                    yield item

    async def _line_batches(self, file_id: str) -> AsyncIterator[list[bytes]]:
        litellm = load_litellm()
        try:
            result = await litellm.afile_content(file_id=file_id, stream=True, **self._kwargs())
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        chunks = getattr(result, "stream_iterator", None)
        try:
            if chunks is None:
                # Vendors without streaming answer with the whole file.
                yield split_lines([bytes(getattr(result, "content", b""))])
            elif hasattr(chunks, "__aiter__"):
                async for lines in line_batches(chunks):
                    yield lines
            else:
                yield split_lines(chunks)
        except Exception as exc:
            # Raised while the body streams, after LiteLLM has handed it over.
            error = transport_error(
                exc,
                provider=self._provider.name,
                doing=f"download of {file_id}",
                redact=self._provider._api_key,
            )
            raise (error or self._provider._translate(exc)) from exc

    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask the vendor to cancel the batch."""
        litellm = load_litellm()
        try:
            batch = await litellm.acancel_batch(batch_id=batch_id, **self._kwargs())
        except Exception as exc:
            raise self._provider._translate(exc) from exc
        return batch_info(_as_dict(batch))

    def batch_files(self, batch: BatchInfo) -> list[str]:
        """The vendor's files of ``batch``: its input, output and error files."""
        ids = (batch.input_file_id, batch.output_file_id, batch.error_file_id)
        return [file_id for file_id in ids if file_id]

    async def delete_file(self, file_id: str) -> bool:
        """Delete one file (``afile_delete``); ``False`` when it was gone already."""
        litellm = load_litellm()
        try:
            # The synchronous call, in a thread: LiteLLM's afile_delete leaves a
            # second, never-awaited coroutine behind on OpenAI-compatible vendors.
            await asyncio.to_thread(litellm.file_delete, file_id=file_id, **self._kwargs())
        except Exception as exc:
            error = self._provider._translate(exc)
            if error.status_code == 404:
                return False
            raise error from exc
        return True


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if dump is not None:
        result = dump()
        if isinstance(result, dict):
            return result
    raise ProviderError(f"unexpected batch object {type(obj).__name__}", provider="litellm")


# --------------------------------------------------------------------------- provider


class LiteLLMProvider:
    """Any model LiteLLM accepts, immediately; batches where LiteLLM has a batch API.

    Args:
        name: the registered provider name.
        api_key: passed to LiteLLM (``None``: LiteLLM reads the vendor's own variable).
        base_url: the vendor's API base (``api_base``), e.g. an OpenAI-compatible
            service or an emulator's ``/v1`` root.
        timeout: seconds per call.
        model: the model batches will carry; its ``vendor/`` prefix decides
            which batch API is used.
        batch_provider: the LiteLLM vendor of the batch API, instead of deriving
            it from ``model``.
        max_batch_requests: requests per batch.
        max_batch_bytes: bytes per batch.
        extra_params: further keyword arguments for every LiteLLM call (e.g.
            ``api_version`` for Azure, ``vertex_project``).
    """

    def __init__(
        self,
        *,
        name: str = "litellm",
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 600.0,
        model: str | None = None,
        batch_provider: str | None = None,
        max_batch_requests: int = 50_000,
        max_batch_bytes: int = 200 * 1024 * 1024,
        extra_params: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.timeout = timeout
        self._api_key = api_key
        self._extra = dict(extra_params or {})
        self._model = model
        self._batch_provider = batch_provider
        self._limits = BatchLimits(max_batch_requests, max_batch_bytes, mixed_models=False)
        self._batch: LiteLLMBatchEndpoint | None = None
        self._batch_resolved = False

    def _connection_kwargs(self, **more: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"timeout": self.timeout, **self._extra, **more}
        if self.base_url:
            kwargs["api_base"] = self.base_url
        if self._api_key:
            kwargs["api_key"] = self._api_key
        return kwargs

    def completion_kwargs(self, request: Request) -> dict[str, Any]:
        """The keyword arguments of the ``litellm.acompletion`` call for ``request``."""
        kwargs = self._connection_kwargs(
            model=request.model,
            messages=[{"role": m.role, "content": m.content} for m in request.messages],
            num_retries=0,
            max_retries=0,
        )
        fmt = _CHAT.response_format(request)
        if fmt is not None:
            # A copy: the builder shares one per schema, and LiteLLM's vendor
            # adapters may rewrite what they are given.
            kwargs["response_format"] = orjson.loads(orjson.dumps(fmt))
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.extras:
            kwargs.update(request.extras)
        return kwargs

    async def complete(self, request: Request) -> Completion:
        """Run ``request`` through ``litellm.acompletion``.

        Raises:
            ProviderError: LiteLLM's failure translated; ``InvalidRequestError``
                with code ``refusal`` when the model refused.
        """
        litellm = load_litellm()
        try:
            response = await litellm.acompletion(**self.completion_kwargs(request))
        except Exception as exc:
            raise self._translate(exc) from exc
        completion = completion_from_response(response)
        if completion.refusal:
            raise InvalidRequestError(
                f"the model refused: {completion.refusal}", provider=self.name, code="refusal"
            )
        return completion

    @property
    def batch(self) -> LiteLLMBatchEndpoint | None:
        """LiteLLM's batch API for this provider's vendor, or ``None`` where it has none."""
        if not self._batch_resolved:
            vendor = batch_provider_for(
                self._model, base_url=self.base_url, explicit=self._batch_provider
            )
            if vendor is not None:
                self._batch = LiteLLMBatchEndpoint(self, vendor, self._limits)
            self._batch_resolved = True
        return self._batch

    async def aclose(self) -> None:
        """Nothing to release: LiteLLM keeps its own shared HTTP clients."""

    def _translate(self, exc: BaseException) -> ProviderError:
        return translate_error(exc, provider=self.name, api_key=self._api_key)
