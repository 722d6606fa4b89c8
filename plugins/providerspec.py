"""What a provider declares when it registers: its options, key, prices, limits and abilities.

The core reads everything it needs to know about a provider from its
:class:`ProviderSpec` — the ``[providers.NAME]`` options it takes, the
environment variable its key is read from, the price-map entry that prices
it, how much one of its batches may hold and what its API can do — so no
module outside the provider's own registration names a provider::

    register(
        "acme",
        make_acme,
        description="Acme's chat and batch API",
        spec=ProviderSpec(
            options=AcmeOptions,             # a ProviderSettings subclass
            key_env="ACME_API_KEY",
            batch=BatchSpec(max_requests=10_000, max_bytes=100 * 1024 * 1024),
        ),
    )

The factory is then called as ``factory(name, options)`` with an instance of
``options``; a factory that also accepts a ``context`` parameter gets a
:class:`ProviderContext` (the connector's model, where its store lives).
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plugins.provideroptions import ProviderSettings
from providers.types import BatchLimits

if TYPE_CHECKING:
    from providers.protocol import Provider

__all__ = [
    "PROVIDER_STATE_DIR",
    "BatchSpec",
    "OptionInfo",
    "ProviderContext",
    "ProviderSpec",
    "call_factory",
]

#: The folder beside the store where providers keep local state, one
#: sub-folder per provider name (:meth:`ProviderContext.state_dir`).
PROVIDER_STATE_DIR = "provider-state"

#: What an environment variable's name looks like.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: How a provider takes a batch's requests: an uploaded file, inline in the
#: create call, or either (small batches inline, big ones as a file).
BatchInput = Literal["file", "inline", "file or inline"]


@dataclass(frozen=True)
class BatchSpec:
    """A provider's batch endpoint: its documented limits and how it behaves.

    Attributes:
        max_requests: requests one batch may hold (``[providers.NAME]
            max_batch_requests`` overrides it: lower for smaller batches, or
            higher once the provider raised its limit).
        max_bytes: bytes of input one batch may hold (``max_batch_bytes`` overrides it).
        mixed_models: whether one batch may carry requests for several models.
        input: how the requests reach the provider (``file``, ``inline`` or both).
        idempotent_create: whether sending the same create twice makes one
            batch (shown by ``lexibatch plugins``). A create whose answer was
            lost is looked for through ``find()`` before anything is sent
            again either way: a provider's deduplication lasts a while, a
            shard may wait in doubt across days, and a batch refused for the
            queue must be made anew, not handed back.
        queue_full_as_quota: whether the provider words a full batch queue as
            any exhausted quota (a 429 that does not name the queue, as
            Gemini's ``RESOURCE_EXHAUSTED``): a 429 at create that outlasts the
            retry policy is then taken for a full queue, and the shard waits
            for room instead of stopping.
    """

    max_requests: int
    max_bytes: int
    mixed_models: bool = False
    input: BatchInput = "file"
    idempotent_create: bool = False
    queue_full_as_quota: bool = False

    def __post_init__(self) -> None:
        for name in ("max_requests", "max_bytes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"BatchSpec.{name} must be a positive integer, not {value!r}")

    def describe(self) -> str:
        """One line: the limits and behaviour of the endpoint."""
        return (
            f"{self.max_requests:,} requests / {_size(self.max_bytes)} a batch, "
            f"{'models mixed' if self.mixed_models else 'one model'} per batch, "
            f"{self.input} input, create {'' if self.idempotent_create else 'not '}idempotent"
            + (", a lasting 429 at create is a full queue" if self.queue_full_as_quota else "")
        )

    def limits(self, options: ProviderSettings) -> BatchLimits:
        """The limits of one batch: the documented ones, or the options' where set."""
        return BatchLimits(
            max_requests=options.max_batch_requests or self.max_requests,
            max_bytes=options.max_batch_bytes or self.max_bytes,
            mixed_models=self.mixed_models,
        )


@dataclass(frozen=True)
class ProviderSpec:
    """Everything the core knows about a provider without building it.

    Attributes:
        options: the settings model of its ``[providers.NAME]`` table: a
            :class:`~plugins.provideroptions.ProviderSettings` subclass that adds the
            provider's own keys (validated like the rest of the config).
        key_env: the environment variable its API key is read from unless
            ``api_key_env`` says otherwise; ``None``: it needs none from lexibatch.
        prices: the provider whose entries of the price map (LiteLLM's
            ``litellm_provider``) price its models; ``None``: the model
            string's own prefix decides (``anthropic/claude-...``), as for LiteLLM.
        structured_output: the ways it can be made to answer in a schema,
            the default first; empty when its API takes no schema (its
            adapter then asks in the prompt: :mod:`providers.jsonprompt`).
            Shown by ``lexibatch plugins``; the engine validates every
            answer against its schema either way.
        batch: its batch endpoint, or ``None`` when it has none.
        batch_price_share: its batch price as a share of the immediate one
            (its published discount: ``0.5`` for half price), for the models
            of its ``prices`` provider whose entry in the price map gives no
            batch price; ``None``: such models are priced in batch as
            immediately. It needs ``prices`` (the share is the price-map
            provider's). Two providers declaring different shares for one
            price-map provider: the one registered under that name wins,
            else the larger share (the higher price, so a budget is never
            underestimated), with a warning.
        poll_interval: seconds between status polls that suit it when the
            user has not set ``batch.poll_interval`` (``None``: the config's default).
    """

    options: type[ProviderSettings] = ProviderSettings
    key_env: str | None = None
    prices: str | None = None
    structured_output: tuple[str, ...] = ("json_schema",)
    batch: BatchSpec | None = None
    poll_interval: float | None = None
    batch_price_share: float | None = None

    def __post_init__(self) -> None:
        # Checked as the plugin registers: its mistakes are not the user's config.
        share = self.batch_price_share
        if share is not None and not 0 < share <= 1:
            raise ValueError(f"batch_price_share must be in (0, 1], not {share}")
        if share is not None and self.prices is None:
            raise ValueError(
                "batch_price_share needs prices= (the price-map provider whose models it prices)"
            )
        if not (isinstance(self.options, type) and issubclass(self.options, ProviderSettings)):
            raise TypeError(
                f"ProviderSpec.options must be a ProviderSettings subclass, not {self.options!r}"
            )
        if self.key_env is not None and not _ENV_NAME.fullmatch(str(self.key_env)):
            raise ValueError(
                f"ProviderSpec.key_env must name an environment variable (such as "
                f"ACME_API_KEY), not {str(self.key_env)[:4]}…"
            )
        if self.prices is not None and not isinstance(self.prices, str):
            raise TypeError(f"ProviderSpec.prices must be a provider's name, not {self.prices!r}")
        if self.batch is not None and not isinstance(self.batch, BatchSpec):
            raise TypeError(f"ProviderSpec.batch must be a BatchSpec, not {self.batch!r}")
        required = [k for k, f in self.options.model_fields.items() if f.is_required()]
        if required:
            raise ValueError(
                f"ProviderSpec.options: {', '.join(required)} must have defaults (a user "
                "without a [providers] table for it still builds the provider)"
            )

    def describe(self) -> list[str]:
        """What ``lexibatch plugins`` says of the provider, line by line."""
        key = self.key_env or "none needed"
        structured = ", ".join(self.structured_output) or "none (asked in the prompt)"
        lines = [
            f"key: {key} · prices: {self.prices or 'by the model name'} · "
            f"structured output: {structured}"
        ]
        if self.batch is not None:
            batch = "batch: " + self.batch.describe()
            if self.batch_price_share is not None:
                batch += (
                    f" · priced at {self.batch_price_share:.0%} of immediate where the "
                    "price map has no batch price"
                )
            lines.append(batch)
        options = self.option_infos()
        if options:
            shown = [f"{o.name} ({o.type}, default {o.default!r})" for o in options]
            lines.append("options: " + "; ".join(shown))
        return lines

    def option_infos(self) -> list[OptionInfo]:
        """The provider's own options (those beyond every provider's), for listings."""
        common = ProviderSettings.model_fields
        return [
            OptionInfo(key, _type_name(info.annotation), info.default)
            for key, info in self.options.model_fields.items()
            if key not in common
        ]


@dataclass(frozen=True)
class OptionInfo:
    """One option of a provider: its key, its type in words, its default."""

    name: str
    type: str
    default: Any


@dataclass(frozen=True)
class ProviderContext:
    """What the connector being built tells a provider factory that asks for it.

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


def call_factory(
    factory: Callable[..., Provider],
    name: str,
    options: ProviderSettings,
    context: ProviderContext,
) -> Provider:
    """Build a provider: ``factory(name, options)``, plus ``context=`` when it takes one."""
    if _takes_context(factory):
        return factory(name, options, context=context)
    return factory(name, options)


def _takes_context(factory: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "context" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _type_name(annotation: Any) -> str:
    """A field's type as a reader would write it: ``int | None``, ``'chat' | 'responses'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if args and origin is not None and origin not in (dict, list, tuple, set):
        # A union (typing.Union or X | Y).
        return " | ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _size(count: int) -> str:
    for unit, scale in (("GB", 1_000_000_000), ("MB", 1024 * 1024)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count:,} bytes"
