"""The built-in providers, registered through the same hook as third-party ones.

Each factory imports its vendor SDK only when called, so listing providers
(``lexibatch plugins``) costs nothing.

A factory is called as ``factory(name, settings)`` (the hook contract), and
:class:`~plugins.config.ProviderSettings` says how to reach a provider, not
what the connector around it will do. Two built-ins need a little of the
latter, which the composition root supplies for the duration of the factory
call with :func:`provider_context`:

* ``litellm`` decides its batch API from the connector's default model
  (``openai/gpt-4o-mini`` → OpenAI's; ``anthropic/...`` → none, so batch mode
  is refused in one line and ``auto`` falls back to immediate);
* ``anthropic`` keeps its shard records (what lets a crashed run find a batch
  it created) in ``provider-state/anthropic`` beside the store, not in the
  user's cache folder.

Outside a :func:`provider_context` (a factory called directly) LiteLLM picks
its batch API from ``base_url`` alone and Anthropic keeps its records under
``~/.cache/lexibatch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plugins.hookspecs import hookimpl

# The providers' documented per-batch limits (DESIGN section 9).
OPENAI_MAX_REQUESTS = 50_000
OPENAI_MAX_BYTES = 200 * 1024 * 1024
ANTHROPIC_MAX_REQUESTS = 100_000
ANTHROPIC_MAX_BYTES = 256 * 1024 * 1024
# Gemini takes input files up to 2 GB (inline batches up to 20 MB); Mistral
# jobs up to 1,000,000 requests.
GEMINI_MAX_REQUESTS = 100_000
GEMINI_MAX_BYTES = 2_000_000_000
GEMINI_INLINE_MAX_BYTES = 4 * 1024 * 1024
MISTRAL_MAX_REQUESTS = 1_000_000
MISTRAL_MAX_BYTES = 512 * 1024 * 1024

#: The folder beside the store where built-in providers keep local state,
#: one sub-folder per provider name.
PROVIDER_STATE_DIR = "provider-state"

if TYPE_CHECKING:
    from plugins.config import ProviderSettings
    from plugins.registry import RegisterProvider
    from providers.protocol import Provider


@dataclass(frozen=True)
class ProviderContext:
    """What the connector being built tells the built-in factories.

    Attributes:
        model: the connector's default model (``[connector] model``).
        db: the store's path (``[connector] db``); ``None`` or ``:memory:``
            for none on disk.
    """

    model: str | None = None
    db: Path | None = None

    def state_dir(self, name: str) -> Path | None:
        """Where provider ``name`` keeps local state beside the store (``None``: no store)."""
        if self.db is None or str(self.db) == ":memory:":
            return None
        return self.db.parent / PROVIDER_STATE_DIR / name


_EMPTY = ProviderContext()
_CONTEXT: ContextVar[ProviderContext | None] = ContextVar(
    "lexibatch_provider_context", default=None
)


@contextmanager
def provider_context(*, model: str | None = None, db: Path | None = None) -> Iterator[None]:
    """Tell the built-in factories called inside the block about the connector being built.

    ``plugins.factory.open_connector`` wraps its factory call in this; code
    that calls a built-in factory itself may do the same.
    """
    token = _CONTEXT.set(ProviderContext(model=model, db=db))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_provider_context() -> ProviderContext:
    """The context of the factory call in progress (empty outside :func:`provider_context`)."""
    return _CONTEXT.get() or _EMPTY


def make_openai(name: str, settings: ProviderSettings) -> Provider:
    """The ``openai`` provider (also any OpenAI-compatible service via ``base_url``)."""
    return _openai(name, settings, api_key=settings.api_key(name), base_url=settings.base_url)


def _openai(
    name: str, settings: ProviderSettings, *, api_key: str, base_url: str | None
) -> Provider:
    from providers.openai import OpenAIProvider

    return OpenAIProvider(
        name=name,
        api_key=api_key,
        base_url=base_url,
        api=settings.api or "chat",
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=settings.max_batch_requests or OPENAI_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or OPENAI_MAX_BYTES,
    )


def make_anthropic(name: str, settings: ProviderSettings) -> Provider:
    """The ``anthropic`` provider."""
    from providers.anthropic import AnthropicProvider

    return AnthropicProvider(
        name=name,
        api_key=settings.api_key(name),
        base_url=settings.base_url,
        structured_output=settings.structured_output or "json_schema",
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=settings.max_batch_requests or ANTHROPIC_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or ANTHROPIC_MAX_BYTES,
        state_dir=current_provider_context().state_dir(name),
    )


def make_litellm(name: str, settings: ProviderSettings) -> Provider:
    """The ``litellm`` provider: any model string LiteLLM accepts.

    Its batch API is the one LiteLLM has for the connector's default model's
    vendor (``providers.litellm.BATCH_PROVIDERS``); for any other vendor it
    has none. Models routed to another vendor than the default one are
    refused by the batch endpoint, one shard at a time, with a clear error.
    """
    from providers.litellm import LiteLLMProvider

    provider: Provider = LiteLLMProvider(
        name=name,
        api_key=settings.api_key(name) or None,
        base_url=settings.base_url,
        timeout=settings.timeout,
        model=current_provider_context().model,
        max_batch_requests=settings.max_batch_requests or OPENAI_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or OPENAI_MAX_BYTES,
    )
    return provider


def make_gemini(name: str, settings: ProviderSettings) -> Provider:
    """The ``gemini`` provider (Gemini Developer API, batch mode included)."""
    from providers.gemini import GeminiProvider

    inline = settings.inline_max_bytes
    return GeminiProvider(
        name=name,
        api_key=settings.api_key(name),
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=settings.max_batch_requests or GEMINI_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or GEMINI_MAX_BYTES,
        inline_max_bytes=GEMINI_INLINE_MAX_BYTES if inline is None else inline,
    )


def make_mistral(name: str, settings: ProviderSettings) -> Provider:
    """The ``mistral`` provider (chat completions and batch jobs)."""
    from providers.mistral import MistralProvider

    return MistralProvider(
        name=name,
        api_key=settings.api_key(name),
        base_url=settings.base_url,
        timeout=settings.timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=settings.max_batch_requests or MISTRAL_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or MISTRAL_MAX_BYTES,
    )


def make_sandbox(name: str, settings: ProviderSettings) -> Provider:
    """The offline ``sandbox``: the OpenAI provider against an emulator this process starts.

    The emulator keeps its files and batches beside the store, so a killed
    sandbox batch run re-attaches to its batches like a real one.
    """
    from plugins.sandbox import start_sandbox_emulator

    base_url = start_sandbox_emulator(current_provider_context().state_dir(name))
    return _openai(name, settings, api_key="sandbox", base_url=base_url + "/v1")


@hookimpl
def register_providers(register: RegisterProvider) -> None:
    """Register openai, anthropic, litellm, gemini, mistral and sandbox."""
    register(
        "openai",
        make_openai,
        description="OpenAI chat completions / Responses API and the Batch API "
        "(also any OpenAI-compatible service through base_url)",
        has_batch=True,
    )
    register(
        "anthropic",
        make_anthropic,
        description="Anthropic Messages API and Message Batches API",
        has_batch=True,
    )
    register(
        "litellm",
        make_litellm,
        description="Any model LiteLLM reaches; batch where LiteLLM has a batch API",
        has_batch=True,
    )
    register(
        "gemini",
        make_gemini,
        description="Gemini Developer API generateContent and batch mode (google-genai)",
        has_batch=True,
    )
    register(
        "mistral",
        make_mistral,
        description="Mistral chat completions and batch jobs (mistralai)",
        has_batch=True,
    )
    register(
        "sandbox",
        make_sandbox,
        description="Offline: the openai provider against a local emulator (no key, no cost)",
        has_batch=True,
    )
