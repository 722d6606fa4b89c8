"""``[prices."MODEL"]``: a model's own price, read and refused like every other key."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugins.config import load_settings
from plugins.configprices import ModelPriceSettings
from providers.errors import ConfigError


def _load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> object:
    (tmp_path / "lexibatch.toml").write_text(toml, encoding="utf-8")
    return load_settings(None, env=env or {}, cwd=tmp_path)


def test_prices_are_read_by_model_name(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        '[prices."gpt-5-nano"]\ninput_per_million = 0.05\noutput_per_million = 0.4\n'
        "batch_input_per_million = 0.025\n"
        '[prices." acme-1 "]\ninput_per_million = 1\noutput_per_million = 2\n',
    )
    prices = settings.prices  # type: ignore[attr-defined]
    assert set(prices) == {"gpt-5-nano", "acme-1"}  # spaces around a name are dropped
    nano = prices["gpt-5-nano"]
    assert nano == ModelPriceSettings(
        input_per_million=0.05, output_per_million=0.4, batch_input_per_million=0.025
    )
    price = nano.model_price("gpt-5-nano")
    assert (price.input, price.output, price.batch_input) == pytest.approx((5e-8, 4e-7, 2.5e-8))
    assert price.batch_output is None and price.cached_input is None
    assert _load(tmp_path, "").prices == {}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("toml", "key", "message"),
    [
        (
            '[prices."acme-1"]\ninput_per_million = 1\n',
            "prices.acme-1.output_per_million",
            "lexibatch.toml: prices.acme-1.output_per_million: missing — expected a number ≥ 0",
        ),
        (
            # Misspelt, it is missing too: the misspelling is what is said.
            '[prices."acme-1"]\ninput_per_milion = 1\noutput_per_million = 2\n',
            "prices.acme-1.input_per_milion",
            "lexibatch.toml: unknown key prices.acme-1.input_per_milion "
            "(did you mean input_per_million?)",
        ),
        (
            '[prices."acme-1"]\ninput_per_million = -1\noutput_per_million = 2\n',
            "prices.acme-1.input_per_million",
            "lexibatch.toml: prices.acme-1.input_per_million: expected a number ≥ 0, got -1",
        ),
        (
            '[prices."acme-1"]\ninput_per_million = "cheap"\noutput_per_million = 2\n',
            "prices.acme-1.input_per_million",
            "lexibatch.toml: prices.acme-1.input_per_million: expected a number ≥ 0, got 'cheap'",
        ),
        (
            "[prices]\nacme = 3\n",
            "prices.acme",
            "lexibatch.toml: prices.acme: expected a table, got 3",
        ),
        (
            '[prices." "]\ninput_per_million = 1\noutput_per_million = 2\n',
            "prices",
            "lexibatch.toml: prices: ' ' is not a name it takes "
            "(String should have at least 1 character)",
        ),
    ],
)
def test_a_bad_price_is_one_line_naming_its_key(
    tmp_path: Path, toml: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, toml)
    assert str(info.value) == message
    assert info.value.key == key


def test_prices_are_not_read_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="LEXIBATCH_PRICES_ACME_INPUT_PER_MILLION: unknown"):
        _load(tmp_path, "", env={"LEXIBATCH_PRICES_ACME_INPUT_PER_MILLION": "1"})
