"""The built-in providers, registered through the same hook as third-party ones.

Each registration declares what the provider is (:class:`ProviderSpec`): its
own ``[providers.NAME]`` options, its key variable, its price-map entry, its
batch limits and abilities. Each factory imports its vendor SDK only when
called, so listing providers (``lexibatch plugins``) costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from plugins.hookspecs import hookimpl
from plugins.provideroptions import ProviderSettings
from plugins.providerspec import BatchSpec, ProviderContext, ProviderSpec
from plugins.sandbox import Spoken

if TYPE_CHECKING:
    from plugins.registry import RegisterProvider
    from providers.protocol import Provider
    from providers.types import BatchLimits

_MB = 1024 * 1024


class OpenAIOptions(ProviderSettings):
    """``[providers.openai]`` (and the sandbox's): every provider's keys, plus ``api``.

    Attributes:
        api: ``chat`` (chat completions) or ``responses`` (the Responses API);
            ``None`` for chat.
    """

    owner_label: ClassVar[str | None] = "OpenAI-style providers"

    api: Literal["chat", "responses"] | None = None


class AnthropicOptions(ProviderSettings):
    """``[providers.anthropic]``: every provider's keys, plus ``structured_output``.

    Attributes:
        structured_output: ``json_schema`` (``output_config.format``) or
            ``tool`` (forced tool use); ``None`` for ``json_schema``.
    """

    owner_label: ClassVar[str | None] = "the anthropic provider"

    structured_output: Literal["json_schema", "tool"] | None = None


class GeminiOptions(ProviderSettings):
    """``[providers.gemini]``: every provider's keys, plus ``inline_max_bytes``.

    Attributes:
        inline_max_bytes: shards up to this size are sent inline in the create
            call, bigger ones uploaded as a file (0: always a file; ``None``: 4 MB).
    """

    inline_max_bytes: Annotated[int, Field(ge=0)] | None = None


class SandboxOptions(OpenAIOptions):
    """``[providers.sandbox]``: the OpenAI-style keys, plus which API the sandbox speaks.

    Attributes:
        speaks: the API of the emulator the sandbox talks to — ``openai``
            (the default), ``anthropic``, ``gemini`` or ``mistral`` — through
            that provider's own adapter, so any of them can be tried offline.
    """

    owner_label: ClassVar[str | None] = "the sandbox"

    speaks: Spoken = "openai"


# The providers' documented per-batch limits (DESIGN section 9). Gemini takes
# input files up to 2 GB (inline batches up to 20 MB); Mistral jobs up to
# 1,000,000 requests.
OPENAI = ProviderSpec(
    options=OpenAIOptions,
    key_env="OPENAI_API_KEY",
    prices="openai",
    batch=BatchSpec(max_requests=50_000, max_bytes=200 * _MB),
)
ANTHROPIC = ProviderSpec(
    options=AnthropicOptions,
    key_env="ANTHROPIC_API_KEY",
    prices="anthropic",
    structured_output=("json_schema", "tool"),
    batch=BatchSpec(max_requests=100_000, max_bytes=256 * _MB, mixed_models=True, input="inline"),
)
# LiteLLM reads its vendors' keys itself; its model strings carry their vendor.
LITELLM = ProviderSpec(batch=BatchSpec(max_requests=50_000, max_bytes=200 * _MB))
GEMINI = ProviderSpec(
    options=GeminiOptions,
    key_env="GEMINI_API_KEY",
    prices="gemini",
    # Gemini words a full batch queue as any exhausted quota.
    batch=BatchSpec(
        max_requests=100_000,
        max_bytes=2_000_000_000,
        input="file or inline",
        queue_full_as_quota=True,
    ),
)
GEMINI_INLINE_MAX_BYTES = 4 * _MB
# Mistral's batch jobs cost half the immediate price; LiteLLM's price map
# lists no batch prices for its chat models.
MISTRAL = ProviderSpec(
    key_env="MISTRAL_API_KEY",
    prices="mistral",
    batch=BatchSpec(max_requests=1_000_000, max_bytes=512 * _MB),
    batch_price_share=0.5,
)


@dataclass(frozen=True)
class _SpokenBatchSpec(BatchSpec):
    """OpenAI's batch limits, or those of the API the sandbox speaks (``speaks``)."""

    def limits(self, options: ProviderSettings) -> BatchLimits:
        """One batch's limits in the API ``options.speaks`` names (the options' own win)."""
        spoken = _SPOKEN.get(getattr(options, "speaks", "openai"))
        if spoken is None or spoken.batch is None:
            return super().limits(options)
        return spoken.batch.limits(options)


_SPOKEN: dict[str, ProviderSpec] = {
    "openai": OPENAI,
    "anthropic": ANTHROPIC,
    "gemini": GEMINI,
    "mistral": MISTRAL,
}
# The sandbox stands in for OpenAI, priced like it; polling a local emulator
# every 30 s (the right pace for a real provider) would make it crawl.
SANDBOX = ProviderSpec(
    options=SandboxOptions,
    prices="openai",
    batch=_SpokenBatchSpec(max_requests=50_000, max_bytes=200 * _MB),
    poll_interval=0.25,
)


# What an SDK is given for a service that needs no key (``api_key_env = ""``,
# a local vLLM, a proxy that adds its own): the SDKs refuse an empty key, or
# send a header no HTTP client accepts; such a service ignores this one.
_NO_KEY = "no-key"


def _sdk_key(settings: ProviderSettings, name: str) -> str:
    """The provider's API key, or :data:`_NO_KEY` when it is configured to need none."""
    return settings.api_key(name) or _NO_KEY


def make_openai(name: str, settings: ProviderSettings) -> Provider:
    """The ``openai`` provider (also any OpenAI-compatible service via ``base_url``)."""
    return _openai(name, settings, api_key=_sdk_key(settings, name), base_url=settings.base_url)


def _openai(
    name: str, settings: ProviderSettings, *, api_key: str, base_url: str | None
) -> Provider:
    from providers.openai import OpenAIProvider

    assert OPENAI.batch is not None
    limits = OPENAI.batch.limits(settings)
    return OpenAIProvider(
        name=name,
        api_key=api_key,
        base_url=base_url,
        api=getattr(settings, "api", None) or "chat",
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=limits.max_requests,
        max_batch_bytes=limits.max_bytes,
    )


def make_anthropic(
    name: str, settings: ProviderSettings, context: ProviderContext | None = None
) -> Provider:
    """The ``anthropic`` provider."""
    return _anthropic(name, settings, context, api_key=_sdk_key(settings, name))


def _anthropic(
    name: str, settings: ProviderSettings, context: ProviderContext | None, *, api_key: str
) -> Provider:
    from providers.anthropic import AnthropicProvider

    assert ANTHROPIC.batch is not None
    limits = ANTHROPIC.batch.limits(settings)
    return AnthropicProvider(
        name=name,
        api_key=api_key,
        base_url=settings.base_url,
        structured_output=getattr(settings, "structured_output", None) or "json_schema",
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=limits.max_requests,
        max_batch_bytes=limits.max_bytes,
        state_dir=(context or ProviderContext()).state_dir(name),
    )


def make_litellm(
    name: str, settings: ProviderSettings, context: ProviderContext | None = None
) -> Provider:
    """The ``litellm`` provider: any model string LiteLLM accepts.

    Its batch API is the one LiteLLM has for the connector's default model's
    vendor (``providers.litellm.BATCH_PROVIDERS``); for any other vendor it
    has none, and without a context it is picked from ``base_url`` alone.
    Models routed to another vendor than the default one are refused by the
    batch endpoint, one shard at a time, with a clear error.
    """
    from providers.litellm import LiteLLMProvider

    assert LITELLM.batch is not None
    limits = LITELLM.batch.limits(settings)
    provider: Provider = LiteLLMProvider(
        name=name,
        api_key=settings.api_key(name) or None,
        base_url=settings.base_url,
        timeout=settings.timeout,
        model=(context or ProviderContext()).model,
        max_batch_requests=limits.max_requests,
        max_batch_bytes=limits.max_bytes,
    )
    return provider


def make_gemini(name: str, settings: ProviderSettings) -> Provider:
    """The ``gemini`` provider (Gemini Developer API, batch mode included)."""
    return _gemini(name, settings, api_key=_sdk_key(settings, name))


def _gemini(name: str, settings: ProviderSettings, *, api_key: str) -> Provider:
    from providers.gemini import GeminiProvider

    assert GEMINI.batch is not None
    limits = GEMINI.batch.limits(settings)
    inline = getattr(settings, "inline_max_bytes", None)
    return GeminiProvider(
        name=name,
        api_key=api_key,
        base_url=settings.base_url,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=limits.max_requests,
        max_batch_bytes=limits.max_bytes,
        inline_max_bytes=GEMINI_INLINE_MAX_BYTES if inline is None else inline,
    )


def make_mistral(name: str, settings: ProviderSettings) -> Provider:
    """The ``mistral`` provider (chat completions and batch jobs)."""
    return _mistral(name, settings, api_key=_sdk_key(settings, name))


def _mistral(name: str, settings: ProviderSettings, *, api_key: str) -> Provider:
    from providers.mistral import MistralProvider

    assert MISTRAL.batch is not None
    limits = MISTRAL.batch.limits(settings)
    return MistralProvider(
        name=name,
        api_key=api_key,
        base_url=settings.base_url,
        timeout=settings.timeout,
        connect_timeout=settings.connect_timeout,
        max_connections=max(settings.max_concurrency, 1) * 2,
        max_batch_requests=limits.max_requests,
        max_batch_bytes=limits.max_bytes,
    )


def make_sandbox(
    name: str, settings: ProviderSettings, context: ProviderContext | None = None
) -> Provider:
    """The offline ``sandbox``: a provider's adapter against an emulator this process starts.

    It speaks OpenAI's API unless ``speaks`` names another. The emulator keeps
    its files and batches beside the store, so a killed sandbox batch run
    re-attaches to its batches like a real one.
    """
    from plugins.sandbox import start_sandbox_emulator

    root = start_sandbox_emulator((context or ProviderContext()).state_dir(name))
    speaks = getattr(settings, "speaks", "openai")
    if speaks == "openai":
        return _openai(name, settings, api_key="sandbox", base_url=root + "/v1")
    path = "/mistral" if speaks == "mistral" else ""
    local = settings.model_copy(update={"base_url": root + path})
    if speaks == "anthropic":
        return _anthropic(name, local, context, api_key="sandbox")
    if speaks == "gemini":
        return _gemini(name, local, api_key="sandbox")
    return _mistral(name, local, api_key="sandbox")


@hookimpl
def register_providers(register: RegisterProvider) -> None:
    """Register openai, anthropic, litellm, gemini, mistral and sandbox."""
    register(
        "openai",
        make_openai,
        description="OpenAI chat completions / Responses API and the Batch API "
        "(also any OpenAI-compatible service through base_url)",
        spec=OPENAI,
    )
    register(
        "anthropic",
        make_anthropic,
        description="Anthropic Messages API and Message Batches API",
        spec=ANTHROPIC,
    )
    register(
        "litellm",
        make_litellm,
        description="Any model LiteLLM reaches; batch where LiteLLM has a batch API",
        spec=LITELLM,
    )
    register(
        "gemini",
        make_gemini,
        description="Gemini Developer API generateContent and batch mode (google-genai)",
        spec=GEMINI,
    )
    register(
        "mistral",
        make_mistral,
        description="Mistral chat completions and batch jobs (mistralai)",
        spec=MISTRAL,
    )
    register(
        "sandbox",
        make_sandbox,
        description="Offline: the openai provider against a local emulator (no key, no cost)",
        spec=SANDBOX,
    )
