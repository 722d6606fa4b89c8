"""The built-in providers, registered through the same hook as third-party ones.

Each factory imports its vendor SDK only when called, so listing providers
(``lexibatch plugins``) costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.hookspecs import hookimpl

# The providers' documented per-batch limits (DESIGN section 9).
OPENAI_MAX_REQUESTS = 50_000
OPENAI_MAX_BYTES = 200 * 1024 * 1024
ANTHROPIC_MAX_REQUESTS = 100_000
ANTHROPIC_MAX_BYTES = 256 * 1024 * 1024

if TYPE_CHECKING:
    from plugins.config import ProviderSettings
    from plugins.registry import RegisterProvider
    from providers.protocol import Provider


def make_openai(name: str, settings: ProviderSettings) -> Provider:
    """The ``openai`` provider (also any OpenAI-compatible service via ``base_url``)."""
    from providers.openai import OpenAIProvider

    return OpenAIProvider(
        name=name,
        api_key=settings.api_key(name),
        base_url=settings.base_url,
        api=settings.api or "chat",
        timeout=settings.timeout,
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
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=settings.max_batch_requests or ANTHROPIC_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or ANTHROPIC_MAX_BYTES,
    )


def make_litellm(name: str, settings: ProviderSettings) -> Provider:
    """The ``litellm`` provider: any model string LiteLLM accepts."""
    from providers.litellm import LiteLLMProvider

    provider: Provider = LiteLLMProvider(
        name=name,
        api_key=settings.api_key(name) or None,
        base_url=settings.base_url,
        timeout=settings.timeout,
    )
    return provider


def make_sandbox(name: str, settings: ProviderSettings) -> Provider:
    """The offline ``sandbox``: the OpenAI provider against an emulator this process starts."""
    from plugins.sandbox import start_sandbox_emulator
    from providers.openai import OpenAIProvider

    base_url = start_sandbox_emulator(settings)
    return OpenAIProvider(
        name=name,
        api_key="sandbox",
        base_url=base_url + "/v1",
        api=settings.api or "chat",
        timeout=settings.timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=settings.max_batch_requests or OPENAI_MAX_REQUESTS,
        max_batch_bytes=settings.max_batch_bytes or OPENAI_MAX_BYTES,
    )


@hookimpl
def register_providers(register: RegisterProvider) -> None:
    """Register openai, anthropic, litellm and sandbox."""
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
        "sandbox",
        make_sandbox,
        description="Offline: the openai provider against a local emulator (no key, no cost)",
        has_batch=True,
    )
