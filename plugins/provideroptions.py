"""What every provider's ``[providers.NAME]`` table holds: :class:`ProviderSettings`.

A provider that takes more keys registers a subclass
(:attr:`plugins.providerspec.ProviderSpec.options`); the configuration
(:mod:`plugins.config`) validates each table with it.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from plugins.configerrors import KeyedValueError
from plugins.sandbox import stands_in_for
from providers.errors import MissingAPIKeyError

__all__ = ["NonNegFloat", "PosFloat", "PositiveInt", "ProviderSettings", "Section"]

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PositiveInt = Annotated[int, Field(ge=1)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Section(BaseModel):
    """A table of the configuration: a closed key set, frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ProviderSettings(Section):
    """``[providers.NAME]``: how to reach one provider and how hard to push it.

    These keys are every provider's; a provider that takes more registers a
    subclass that adds them (its ``ProviderSpec.options``).

    Attributes:
        base_url: the API's base URL (an OpenAI-compatible service, a proxy,
            the emulator); ``None`` for the vendor's default.
        api_key_env: the environment variable holding the API key (never the
            key itself); defaults to the variable the provider registered
            (``ProviderSpec.key_env``). An empty string means the provider needs no key.
        max_concurrency: immediate calls in flight at once.
        rpm: requests per minute, when the account is limited.
        tpm: tokens per minute, when the account is limited.
        timeout: seconds one HTTP call may take.
        connect_timeout: seconds to wait for a connection to the provider (at most
            ``timeout``): a provider that cannot be reached is given up on sooner.
        max_batch_requests: overrides the provider's requests-per-batch limit.
        max_batch_bytes: overrides the provider's bytes-per-batch limit.
        max_enqueued_tokens: the most tokens (estimated as ``--estimate`` does) one
            model may have in this provider's batches that have not ended; a shard
            that would pass it waits before its batch is created. ``None``: no cap
            is applied ahead (a batch the provider refuses for its queue still
            waits for room and is sent again).
        max_enqueued_tokens_by_model: the same cap for some models by name, over
            ``max_enqueued_tokens``.
    """

    #: How an error message names the providers that take this model's own
    #: keys (``this key is for ... only``); ``None``: by their names.
    owner_label: ClassVar[str | None] = None

    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: PositiveInt = 32
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    timeout: PosFloat = 600.0
    connect_timeout: PosFloat = 5.0
    max_batch_requests: PositiveInt | None = None
    max_batch_bytes: PositiveInt | None = None
    max_enqueued_tokens: PositiveInt | None = None
    max_enqueued_tokens_by_model: dict[str, PositiveInt] = Field(default_factory=dict)

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_base_url(self) -> ProviderSettings:
        url = self.base_url
        if url is None:
            return self
        scheme, sep, rest = url.strip().partition("://")
        host = rest.split("/", 1)[0]
        if not sep or scheme.lower() not in ("http", "https") or not host:
            raise KeyedValueError(
                "base_url",
                f"expected an http:// or https:// URL (e.g. https://api.example.com/v1), "
                f"got {url!r}",
            )
        return self

    @model_validator(mode="after")
    def _check_api_key_env(self) -> ProviderSettings:
        if self.api_key_env and not _ENV_NAME_RE.match(self.api_key_env):
            # The value is deliberately not repeated: it is often a pasted key.
            raise KeyedValueError(
                "api_key_env",
                "expected the name of an environment variable (e.g. OPENAI_API_KEY), "
                "not the key itself",
            )
        return self

    def enqueued_token_cap(self, model: str) -> int | None:
        """The most tokens ``model`` may have enqueued in batches, or ``None`` (no cap)."""
        return self.max_enqueued_tokens_by_model.get(model, self.max_enqueued_tokens)

    def key_env(self, provider_name: str) -> str | None:
        """The variable this provider's key is read from (``None``: it needs none).

        Options the configuration made (:meth:`plugins.config.Settings.provider_settings`)
        carry the variable the provider registered unless ``api_key_env`` was
        set; options made by hand name theirs in ``api_key_env``.
        """
        del provider_name  # every provider reads the variable its options name
        return self.api_key_env or None

    def api_key(self, provider_name: str) -> str:
        """The API key, read from the configured environment variable.

        Returns an empty string when the provider needs no key.

        Raises:
            MissingAPIKeyError: the variable is unset or empty (names it).
        """
        env_var = self.key_env(provider_name)
        if env_var is None:
            return ""
        value = os.environ.get(env_var, "").strip()
        if not value:
            raise MissingAPIKeyError(provider_name, env_var, offline=stands_in_for(provider_name))
        return value
