"""``[prices]``: what a model costs, for a model the price map lacks or prices otherwise.

LiteLLM's price map, pinned by the lock, knows the models of its release; a
model published since, a fine-tuned one or a plugin provider's own has no
price there, so its calls are ledgered unpriced and a budget cannot bound
them. A ``[prices."MODEL"]`` table gives it one, in USD per million tokens::

    [prices."gpt-5-nano"]
    input_per_million = 0.05
    output_per_million = 0.40
    batch_input_per_million = 0.025    # optional
    batch_output_per_million = 0.20    # optional
    cached_input_per_million = 0.005   # optional

The table wins over the price map for the model it names (a request's model
string; ``openai/gpt-5-nano`` and ``gpt-5-nano@v2`` find ``gpt-5-nano`` too).
Without a batch price a batch call is priced as an immediate one, so a
budget is never underestimated; with one of the two, the other follows the
same discount. Every cost lexibatch computes (the ledger, ``--estimate``,
``--budget``, the dashboard) uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from pydantic import StringConstraints

from plugins.provideroptions import NonNegFloat, Section
from providers.pricing import ModelPrice

__all__ = ["ModelName", "ModelPriceSettings", "own_prices"]

#: A model's name as ``[prices]`` takes it: not blank, spaces around it dropped.
ModelName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

#: Tokens a configured price is given for.
PER = 1_000_000


class ModelPriceSettings(Section):
    """``[prices."MODEL"]``: one model's price in USD per million tokens.

    Attributes:
        input_per_million: per million input tokens (uncached).
        output_per_million: per million output tokens.
        cached_input_per_million: per million input tokens read from the
            provider's prompt cache (unset: the input price).
        batch_input_per_million: per million input tokens in a batch (unset:
            the discount of ``batch_output_per_million``, or none).
        batch_output_per_million: per million output tokens in a batch (unset:
            the discount of ``batch_input_per_million``, or none).
    """

    input_per_million: NonNegFloat
    output_per_million: NonNegFloat
    cached_input_per_million: NonNegFloat | None = None
    batch_input_per_million: NonNegFloat | None = None
    batch_output_per_million: NonNegFloat | None = None

    def model_price(self, model: str) -> ModelPrice:
        """The price per token of ``model`` these settings give."""
        return ModelPrice(
            model=model,
            provider=None,
            input=self.input_per_million / PER,
            output=self.output_per_million / PER,
            cached_input=_per_token(self.cached_input_per_million),
            batch_input=_per_token(self.batch_input_per_million),
            batch_output=_per_token(self.batch_output_per_million),
        )


def own_prices(prices: Mapping[str, ModelPriceSettings]) -> dict[str, ModelPrice]:
    """The configured ``[prices]`` as prices per token, by model name."""
    return {model: settings.model_price(model) for model, settings in prices.items()}


def _per_token(per_million: float | None) -> float | None:
    return None if per_million is None else per_million / PER
