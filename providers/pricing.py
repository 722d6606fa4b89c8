"""Prices per token, from LiteLLM's bundled model price map.

The ``litellm`` package ships ``model_prices_and_context_window_backup.json``;
it is located with :func:`importlib.util.find_spec` (importing litellm takes
seconds) and read once, never fetched from the network. It holds immediate
prices and, for many models, batch prices (``input_cost_per_token_batches``,
``output_cost_per_token_batches``, ...): the batch discount is taken from
there. A model that has no batch price in the table is costed at its
immediate price, and says so through :attr:`ModelPrice.batch_discount_known`.
A model missing from the table is *unpriced* (``None``), never free.

Token semantics follow OpenAI: ``Usage.input_tokens`` counts the whole prompt,
including ``cached_tokens`` and ``cache_creation_tokens`` (of which
``cache_creation_1h_tokens`` are hour-long writes), which are billed at their
own rates; ``output_tokens`` includes reasoning tokens. (Anthropic counts
cache reads and writes apart from ``input_tokens``; its adapter adds them in.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from providers.tokens import estimate_tokens, litellm_data_path
from providers.types import Mode, Request, Usage

__all__ = ["ModelPrice", "PriceTable", "Rates", "cost_at", "estimate_tokens", "price_map_path"]

_PRICE_FILE = "model_prices_and_context_window_backup.json"

# Version suffixes users add or drop: -2024-07-18, -20241022, @20241022, -0125, -latest.
_VERSION_SUFFIXES = (
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),
    re.compile(r"[-@]\d{8}$"),
    re.compile(r"-\d{4}$"),
    re.compile(r"-latest$"),
)


def price_map_path() -> Path | None:
    """Where the installed litellm keeps its price map (litellm is not imported)."""
    found = litellm_data_path(_PRICE_FILE)
    return found if found is not None and found.is_file() else None


def _number(entry: Mapping[str, Any], key: str) -> float | None:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per token of one model, immediately and in batch.

    Attributes:
        model: the table entry the name resolved to.
        provider: the entry's provider (``openai``, ``anthropic``, ...).
        input: per uncached input token.
        output: per output token.
        cached_input: per cached input token (the input price when unlisted).
        cache_creation_input: per token written to a prompt cache (5 minutes).
        cache_creation_1h_input: per token written to a prompt cache for an hour.
        batch_input: per input token in batch mode, when the table has it.
        batch_output: per output token in batch mode, when the table has it.
        batch_cached_input: per cached input token in batch mode, when listed.
        batch_cache_creation_input: per cache-write token in batch mode, when listed.
    """

    model: str
    provider: str | None
    input: float
    output: float
    cached_input: float | None = None
    cache_creation_input: float | None = None
    cache_creation_1h_input: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    batch_cached_input: float | None = None
    batch_cache_creation_input: float | None = None

    @property
    def batch_discount_known(self) -> bool:
        """Whether the table gives this model a batch price at all."""
        return self.batch_input is not None or self.batch_output is not None

    def _batch_ratio(self) -> float:
        # The table's own batch/immediate ratio, used for batch prices it leaves out.
        if self.batch_input is not None and self.input:
            return self.batch_input / self.input
        if self.batch_output is not None and self.output:
            return self.batch_output / self.output
        return 1.0

    def rates(self, mode: Mode) -> Rates:
        """USD per token in ``mode``: ``(input, output, cached_input,
        cache_creation_input, cache_creation_1h_input)``.

        A cache-read or cache-write price the table does not list is the
        input price; an hour-long write without its own price costs what a
        five-minute write does.
        """
        cached = self.cached_input if self.cached_input is not None else self.input
        creation = (
            self.cache_creation_input if self.cache_creation_input is not None else self.input
        )
        creation_1h = (
            self.cache_creation_1h_input if self.cache_creation_1h_input is not None else creation
        )
        if mode != "batch" or not self.batch_discount_known:
            return self.input, self.output, cached, creation, creation_1h
        ratio = self._batch_ratio()
        batch_creation = (
            self.batch_cache_creation_input
            if self.batch_cache_creation_input is not None
            else creation * ratio
        )
        return (
            self.batch_input if self.batch_input is not None else self.input * ratio,
            self.batch_output if self.batch_output is not None else self.output * ratio,
            self.batch_cached_input if self.batch_cached_input is not None else cached * ratio,
            batch_creation,
            creation_1h * ratio,
        )

    def cost(self, usage: Usage, mode: Mode) -> float:
        """USD for ``usage`` in ``mode``."""
        return cost_at(self.rates(mode), usage)


#: Decimals a call's cost keeps: far finer than one token at any price
#: (gpt-4o-mini's batch input is 7.5e-8 USD a token), far coarser than the
#: noise of adding its parts in floating point.
COST_PLACES = 12

#: USD per token: input, output, cached input, cache write (5 min), cache write (1 h).
Rates = tuple[float, float, float, float, float]


def cost_at(rates: Rates, usage: Usage) -> float:
    """USD for ``usage`` at ``rates`` (as :meth:`ModelPrice.rates` gives them).

    For callers that price many calls of one model: the rates are looked up
    once, the tokens of each call multiplied here. Cache reads and both
    kinds of cache writes are parts of ``input_tokens``, each at its own rate.
    The sum is rounded to :data:`COST_PLACES` decimals, so a cost reads as
    what was billed (``4.875e-05``, not ``4.874999999999999e-05``).
    """
    rate_in, rate_out, rate_cached, rate_creation, rate_creation_1h = rates
    cached = usage.cached_tokens
    creation = usage.cache_creation_tokens
    creation_1h = min(usage.cache_creation_1h_tokens, creation)
    uncached = max(0, usage.input_tokens - cached - creation)
    return round(
        uncached * rate_in
        + cached * rate_cached
        + (creation - creation_1h) * rate_creation
        + creation_1h * rate_creation_1h
        + usage.output_tokens * rate_out,
        COST_PLACES,
    )


def _model_price(key: str, entry: Mapping[str, Any]) -> ModelPrice | None:
    rate_in = _number(entry, "input_cost_per_token")
    rate_out = _number(entry, "output_cost_per_token")
    if rate_in is None and rate_out is None:
        return None
    provider = entry.get("litellm_provider")
    return ModelPrice(
        model=key,
        provider=provider if isinstance(provider, str) else None,
        input=rate_in or 0.0,
        output=rate_out or 0.0,
        cached_input=_number(entry, "cache_read_input_token_cost"),
        cache_creation_input=_number(entry, "cache_creation_input_token_cost"),
        cache_creation_1h_input=_number(entry, "cache_creation_input_token_cost_above_1hr"),
        batch_input=_number(entry, "input_cost_per_token_batches"),
        batch_output=_number(entry, "output_cost_per_token_batches"),
        batch_cached_input=_number(entry, "cache_read_input_token_cost_batches"),
        batch_cache_creation_input=_number(entry, "cache_creation_input_token_cost_batches"),
    )


class PriceTable:
    """Model prices, looked up by the names users write.

    ``gpt-4o-mini``, ``openai/gpt-4o-mini``, ``gpt-4o-mini-2024-07-18`` and
    ``anthropic/claude-haiku-4-5-20251001`` all resolve; a provider prefix or
    the ``provider`` argument picks among entries of the same name.
    """

    def __init__(
        self,
        entries: Mapping[str, Mapping[str, Any]],
        source: Path | None = None,
        *,
        batch_shares: Mapping[str, float] | None = None,
        own: Mapping[str, ModelPrice] | None = None,
    ):
        self.source = source
        self._entries = entries
        # Prices the user configured, by model name: they win over the map's.
        self._own: dict[str, ModelPrice] = dict(own or {})
        # Price-map provider -> its batch price as a share of the immediate one,
        # for its models whose entries give no batch price (see with_batch_shares).
        self._batch_shares: dict[str, float] = dict(batch_shares or {})
        self._providers = frozenset(
            p for e in entries.values() if isinstance(p := e.get("litellm_provider"), str)
        )
        self._resolved: dict[tuple[str, str | None], ModelPrice | None] = {}

    @classmethod
    def load(cls, path: Path | None = None) -> PriceTable:
        """The table from ``path`` or the installed litellm's price map (cached).

        With no litellm installed the table is empty: every model is unpriced.
        """
        return _load(path or price_map_path())

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PriceTable:
        """A table from an already parsed price map."""
        return cls({k: v for k, v in data.items() if isinstance(v, Mapping)})

    def with_batch_shares(self, shares: Mapping[str, float]) -> PriceTable:
        """This table, with batch prices for the providers in ``shares`` the map leaves out.

        ``shares`` maps a price-map provider (``mistral``) to its published
        batch price as a share of the immediate one (``0.5``). A model of
        that provider whose entry has no batch price is priced in batch at
        that share of each immediate rate; an entry's own batch prices win.
        """
        if not shares:
            return self
        for provider, share in shares.items():
            if not 0 < share <= 1:
                raise ValueError(
                    f"batch price share of {provider!r} must be in (0, 1], not {share}"
                )
        return PriceTable(
            self._entries,
            source=self.source,
            batch_shares={**self._batch_shares, **shares},
            own=self._own,
        )

    def with_own_prices(self, own: Mapping[str, ModelPrice]) -> PriceTable:
        """This table, with ``own`` prices (by model name) winning over the map's.

        A request's model finds its own price by its name, by the name
        before an ``@`` (a version or marker), or by the name after a
        ``provider/`` prefix. An own price takes no provider's batch share:
        without batch prices of its own, a batch call costs what an
        immediate one does.
        """
        if not own:
            return self
        return PriceTable(
            self._entries,
            source=self.source,
            batch_shares=self._batch_shares,
            own={**self._own, **own},
        )

    def __len__(self) -> int:
        return len(self._entries)

    def knows_provider(self, name: str) -> bool:
        """Whether the table has entries of the provider ``name`` (their ``litellm_provider``)."""
        return name in self._providers

    def price(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``model``, or ``None`` when the table does not know it."""
        key = (model, provider)
        if key not in self._resolved:
            own = self._own_price(model) if self._own else None
            self._resolved[key] = own or self._with_share(self._resolve(model, provider))
        return self._resolved[key]

    def _own_price(self, model: str) -> ModelPrice | None:
        """The price the user gave ``model`` (see :meth:`with_own_prices`), if any."""
        name = model.strip()
        base = name.partition("@")[0] or name
        for candidate in (name, base):
            price = self._own.get(candidate)
            if price is None and "/" in candidate:
                price = self._own.get(candidate.partition("/")[2])
            if price is not None:
                return price
        return None

    def _with_share(self, price: ModelPrice | None) -> ModelPrice | None:
        """``price`` with the batch prices its provider's declared share gives, if it has none."""
        if price is None or price.batch_discount_known or price.provider is None:
            return price
        share = self._batch_shares.get(price.provider)
        if share is None:
            return price
        return replace(
            price,
            batch_input=price.input * share,
            batch_output=price.output * share,
        )

    def cost(
        self, model: str, usage: Usage, mode: Mode, provider: str | None = None
    ) -> float | None:
        """USD for ``usage`` of ``model`` in ``mode``; ``None`` when unpriced."""
        price = self.price(model, provider)
        return None if price is None else price.cost(usage, mode)

    def immediate_equivalent(
        self, model: str, usage: Usage, provider: str | None = None
    ) -> float | None:
        """What ``usage`` would have cost as immediate calls (for savings reports)."""
        return self.cost(model, usage, "immediate", provider)

    def estimate(self, request: Request, mode: Mode, provider: str | None = None) -> float | None:
        """Expected USD of ``request`` before sending it; ``None`` when unpriced."""
        price = self.price(request.model, provider)
        if price is None:
            return None
        input_tokens, output_tokens = estimate_tokens(request)
        return price.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens), mode)

    # -- name resolution

    def _entry(self, name: str, provider: str | None) -> ModelPrice | None:
        if provider is not None:
            prefixed = self._entries.get(f"{provider}/{name}")
            if prefixed is not None and (price := _model_price(f"{provider}/{name}", prefixed)):
                return price
        entry = self._entries.get(name)
        if entry is None:
            return None
        if provider is not None and entry.get("litellm_provider") not in (provider, None):
            return None
        return _model_price(name, entry)

    def _resolve(self, model: str, provider: str | None) -> ModelPrice | None:
        name = model.strip()
        if provider is not None and provider not in self._providers:
            # A registered name the table does not know (sandbox, a plugin): no preference.
            provider = None
        candidates = [name]
        base, at, _ = name.partition("@")
        if at and base:
            # model@version (Vertex) or model@marker (the emulator's fault markers).
            candidates.append(base)
            name = base
        head, sep, tail = name.partition("/")
        if sep and head in self._providers:
            provider = provider or head
            candidates.append(tail)
        names: list[str] = []
        for candidate in candidates:
            names.append(candidate)
            for suffix in _VERSION_SUFFIXES:
                stripped = suffix.sub("", candidate)
                if stripped != candidate and stripped not in names:
                    names.append(stripped)
        for wanted in (provider, None) if provider is not None else (None,):
            for candidate in names:
                price = self._entry(candidate, wanted)
                if price is not None:
                    return price
        return None


@cache
def _load(path: Path | None) -> PriceTable:
    if path is None:
        return PriceTable({})
    data = orjson.loads(path.read_bytes())
    entries = {k: v for k, v in data.items() if isinstance(v, dict) and k != "sample_spec"}
    return PriceTable(entries, source=path)
