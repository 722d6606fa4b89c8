"""Prices from LiteLLM's bundled map, and token estimates, all offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import BaseModel

import providers
from providers.pricing import PriceTable, price_map_path
from providers.tokens import count_tokens, estimate_output_tokens, estimate_tokens
from providers.types import Message, Request, Usage

MILLION = Usage(input_tokens=1_000_000, output_tokens=1_000_000)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.load()


@pytest.fixture(scope="module")
def raw() -> dict[str, dict[str, object]]:
    path = price_map_path()
    assert path is not None
    data: dict[str, dict[str, object]] = orjson.loads(path.read_bytes())
    return data


def test_price_map_is_found_without_importing_litellm() -> None:
    code = (
        "import sys; from providers.pricing import PriceTable; t = PriceTable.load(); "
        "assert len(t) > 1000; assert 'litellm' not in sys.modules, 'litellm imported'"
    )
    root = Path(providers.__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_load_is_cached(table: PriceTable) -> None:
    assert PriceTable.load() is table
    assert table.source is not None
    assert table.source.name == "model_prices_and_context_window_backup.json"


def test_gpt_4o_mini_costs_come_from_the_table(
    table: PriceTable, raw: dict[str, dict[str, object]]
) -> None:
    entry = raw["gpt-4o-mini"]
    immediate = table.cost("gpt-4o-mini", MILLION, "immediate")
    batch = table.cost("gpt-4o-mini", MILLION, "batch")
    assert immediate == pytest.approx(
        1e6 * float(entry["input_cost_per_token"]) + 1e6 * float(entry["output_cost_per_token"])
    )
    assert batch == pytest.approx(
        1e6 * float(entry["input_cost_per_token_batches"])
        + 1e6 * float(entry["output_cost_per_token_batches"])
    )
    assert batch is not None and immediate is not None and batch < immediate
    price = table.price("gpt-4o-mini")
    assert price is not None
    assert price.batch_discount_known
    assert table.immediate_equivalent("gpt-4o-mini", MILLION) == immediate


def test_cached_tokens_are_billed_at_the_cache_rate(
    table: PriceTable, raw: dict[str, dict[str, object]]
) -> None:
    entry = raw["gpt-4o-mini"]
    usage = Usage(input_tokens=1000, output_tokens=0, cached_tokens=600)
    expected = 400 * float(entry["input_cost_per_token"]) + 600 * float(
        entry["cache_read_input_token_cost"]
    )
    assert table.cost("gpt-4o-mini", usage, "immediate") == pytest.approx(expected)


def test_batch_discount_follows_the_table_not_a_constant() -> None:
    table = PriceTable.from_mapping(
        {
            "m-70": {
                "litellm_provider": "openai",
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "input_cost_per_token_batches": 0.7e-6,
                "output_cost_per_token_batches": 1.4e-6,
            },
            "m-nobatch": {
                "litellm_provider": "openai",
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
            },
        }
    )
    assert table.cost("m-70", MILLION, "batch") == pytest.approx(2.1)
    no_batch = table.price("m-nobatch")
    assert no_batch is not None
    assert not no_batch.batch_discount_known
    assert table.cost("m-nobatch", MILLION, "batch") == pytest.approx(3.0)


def test_missing_batch_output_price_uses_the_tables_input_ratio() -> None:
    table = PriceTable.from_mapping(
        {
            "half": {
                "input_cost_per_token": 2e-6,
                "output_cost_per_token": 8e-6,
                "input_cost_per_token_batches": 1e-6,
            }
        }
    )
    assert table.cost("half", MILLION, "batch") == pytest.approx(1.0 + 4.0)


def test_unknown_model_is_unpriced_not_free(table: PriceTable) -> None:
    assert table.price("no-such-model-xyz") is None
    assert table.cost("no-such-model-xyz", MILLION, "batch") is None
    assert table.immediate_equivalent("no-such-model-xyz", MILLION) is None
    assert PriceTable.from_mapping({}).cost("gpt-4o-mini", MILLION, "immediate") is None


@pytest.mark.parametrize(
    ("name", "provider", "entry"),
    [
        ("gpt-4o-mini", None, "gpt-4o-mini"),
        ("openai/gpt-4o-mini", None, "gpt-4o-mini"),
        ("gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("gpt-4o-mini", "sandbox", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", None, "gpt-4o-mini-2024-07-18"),
        ("gpt-4o-mini-2031-01-01", None, "gpt-4o-mini"),
        ("gpt-3.5-turbo-0125", None, "gpt-3.5-turbo-0125"),
        ("anthropic/claude-haiku-4-5-20251001", None, "claude-haiku-4-5-20251001"),
        ("claude-haiku-4-5", "anthropic", "claude-haiku-4-5"),
        ("gpt-4o-mini", "azure", "azure/gpt-4o-mini"),
        ("gpt-4o-mini@item-error", "sandbox", "gpt-4o-mini"),
        ("openai/gpt-4o-mini@slow-once", None, "gpt-4o-mini"),
    ],
)
def test_names_resolve_as_users_write_them(
    table: PriceTable, name: str, provider: str | None, entry: str
) -> None:
    price = table.price(name, provider)
    assert price is not None
    assert price.model == entry


def test_anthropic_batch_price_is_read(
    table: PriceTable, raw: dict[str, dict[str, object]]
) -> None:
    price = table.price("anthropic/claude-haiku-4-5")
    assert price is not None
    assert price.provider == "anthropic"
    assert price.batch_input == float(raw["claude-haiku-4-5"]["input_cost_per_token_batches"])


class Entry(BaseModel):
    """A small answer shape."""

    definition: str
    synonyms: list[str]
    level: int


def _request(**kw: object) -> Request:
    base: dict[str, object] = {
        "model": "gpt-4o-mini",
        "messages": (Message("system", "You write dictionaries."), Message("user", "Define: lark")),
    }
    base.update(kw)
    return Request(**base)  # type: ignore[arg-type]


def test_token_counts_use_tiktoken_offline() -> None:
    # "hello world" is two tokens in o200k_base; chars/4 would say three.
    assert count_tokens("hello world", "gpt-4o-mini") == 2


def test_estimate_counts_messages_and_schema() -> None:
    plain_in, plain_out = estimate_tokens(_request())
    schema_in, schema_out = estimate_tokens(_request(response_model=Entry))
    assert 10 < plain_in < 40
    assert schema_in > plain_in + 20
    assert plain_out == 256
    assert 20 < schema_out < 200


def test_output_guess_is_capped_by_max_tokens() -> None:
    assert estimate_output_tokens(_request(response_model=Entry, max_tokens=10)) == 10
    assert estimate_output_tokens(_request(max_tokens=77)) == 77


def test_estimate_for_unpriced_model_is_none(table: PriceTable) -> None:
    request = _request(response_model=Entry)
    assert table.estimate(request.with_model("no-such-model"), "batch") is None
    batch = table.estimate(request, "batch")
    immediate = table.estimate(request, "immediate")
    assert batch is not None and immediate is not None
    assert 0 < batch < immediate


def test_a_declared_batch_share_prices_a_providers_models_the_map_gives_no_batch_price() -> None:
    entries = {
        "mistral-small-latest": {
            "litellm_provider": "mistral",
            "input_cost_per_token": 2e-7,
            "output_cost_per_token": 6e-7,
        },
        "mistral-own-batch": {
            "litellm_provider": "mistral",
            "input_cost_per_token": 2e-7,
            "output_cost_per_token": 6e-7,
            "input_cost_per_token_batches": 1.5e-7,
            "output_cost_per_token_batches": 4.5e-7,
        },
        "other-model": {
            "litellm_provider": "other",
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6,
        },
    }
    plain = PriceTable(entries)
    shared = plain.with_batch_shares({"mistral": 0.5})
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    immediate = plain.cost("mistral-small-latest", usage, "immediate")
    assert immediate == pytest.approx(8e-4)
    # Without the share the map's missing batch price means the immediate one.
    assert plain.cost("mistral-small-latest", usage, "batch") == pytest.approx(immediate)
    assert shared.cost("mistral-small-latest", usage, "batch") == pytest.approx(immediate / 2)
    assert shared.cost("mistral-small-latest", usage, "immediate") == pytest.approx(immediate)
    price = shared.price("mistral-small-latest")
    assert price is not None and price.batch_discount_known
    # An entry's own batch price wins over the share; another provider is untouched.
    assert shared.cost("mistral-own-batch", usage, "batch") == pytest.approx(6e-4)
    assert shared.cost("other-model", usage, "batch") == pytest.approx(3e-3)
    with pytest.raises(ValueError, match="must be in"):
        plain.with_batch_shares({"mistral": 1.5})


def test_an_own_price_wins_over_the_map_and_is_found_by_every_form_of_the_name(
    table: PriceTable,
) -> None:
    from plugins.configprices import ModelPriceSettings, own_prices

    mapped = table.cost("gpt-4o-mini", MILLION, "immediate")
    assert mapped is not None and mapped != pytest.approx(3.0)
    own = own_prices(
        {
            "gpt-4o-mini": ModelPriceSettings(input_per_million=1, output_per_million=2),
            "acme-1": ModelPriceSettings(input_per_million=0.5, output_per_million=1.5),
        }
    )
    priced = table.with_own_prices(own)
    for name, provider in [
        ("gpt-4o-mini", None),
        ("gpt-4o-mini", "openai"),
        ("openai/gpt-4o-mini", None),
        ("gpt-4o-mini@fault", "openai"),
    ]:
        assert priced.cost(name, MILLION, "immediate", provider) == pytest.approx(3.0), name
    assert priced.cost("acme/acme-1", MILLION, "immediate") == pytest.approx(2.0)
    # Another model keeps the map's price; the table it came from is unchanged.
    assert priced.cost("gpt-4o", MILLION, "immediate") == table.cost("gpt-4o", MILLION, "immediate")
    assert table.cost("gpt-4o-mini", MILLION, "immediate") == mapped
    assert table.price("acme-1") is None
    # The share a provider declares for its map entries does not reach an own price.
    shared = priced.with_batch_shares({"openai": 0.5})
    assert shared.cost("gpt-4o-mini", MILLION, "batch") == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("per_million", "batch_usd"),
    [
        # No batch price: a batch call costs what an immediate one does (never underestimated).
        ({"input_per_million": 1, "output_per_million": 2}, 3.0),
        ({"input_per_million": 1, "output_per_million": 2, "batch_input_per_million": 0.5}, 1.5),
        ({"input_per_million": 1, "output_per_million": 2, "batch_output_per_million": 0.5}, 0.75),
        (
            {
                "input_per_million": 1,
                "output_per_million": 2,
                "batch_input_per_million": 0.4,
                "batch_output_per_million": 1.2,
            },
            1.6,
        ),
    ],
)
def test_an_own_batch_price_is_what_it_says_or_follows_the_one_given(
    per_million: dict[str, float], batch_usd: float
) -> None:
    from plugins.configprices import ModelPriceSettings, own_prices

    table = PriceTable.from_mapping({}).with_own_prices(
        own_prices({"acme-1": ModelPriceSettings.model_validate(per_million)})
    )
    assert table.cost("acme-1", MILLION, "immediate") == pytest.approx(3.0)
    assert table.cost("acme-1", MILLION, "batch") == pytest.approx(batch_usd)


def test_an_own_cached_input_price_prices_cache_reads() -> None:
    from plugins.configprices import ModelPriceSettings, own_prices

    settings = ModelPriceSettings(
        input_per_million=1, output_per_million=2, cached_input_per_million=0.1
    )
    table = PriceTable.from_mapping({}).with_own_prices(own_prices({"acme-1": settings}))
    usage = Usage(input_tokens=1_000_000, output_tokens=0, cached_tokens=500_000)
    assert table.cost("acme-1", usage, "immediate") == pytest.approx(0.5 + 0.05)
