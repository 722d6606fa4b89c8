"""Reading settings from ``LEXIBATCH_*`` environment variables.

``LEXIBATCH_PROVIDER``, ``LEXIBATCH_MODEL``, ``LEXIBATCH_MODE`` and
``LEXIBATCH_DB`` set the ``[connector]`` section; ``LEXIBATCH_<SECTION>_<KEY>``
any other key; ``LEXIBATCH_PROVIDERS_<NAME>_<KEY>`` a key of a provider's
table, whichever provider's options model declares it; and
``LEXIBATCH_MODELS_<TASK>`` a per-task model. An unknown variable is a
one-line :class:`~providers.errors.ConfigError` that suggests the closest
known one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from plugins.configerrors import ENV_PREFIX, suggest
from providers.errors import ConfigError

__all__ = ["EnvironmentKeys"]


@dataclass(frozen=True)
class EnvironmentKeys:
    """The variables that name settings, and the dotted keys they set.

    Attributes:
        shortcuts: variable → dotted key, for the few read without a section.
        sections: section name → its settings model.
        common: the model of the keys every provider's table takes.
        providers: registered provider name → its options model.
    """

    shortcuts: Mapping[str, str]
    sections: Mapping[str, type[BaseModel]]
    common: type[BaseModel]
    providers: Mapping[str, type[BaseModel]]

    def read(
        self, env: Mapping[str, str], *, skip: Collection[str], nullable: Callable[[str], bool]
    ) -> dict[str, tuple[Any, str]]:
        """Dotted key → (value, variable name) for every ``LEXIBATCH_*`` setting in ``env``.

        Args:
            env: the environment.
            skip: ``LEXIBATCH_*`` variables that are read elsewhere, not settings.
            nullable: whether a dotted key may be unset (an empty variable unsets it).

        Raises:
            ConfigError: a ``LEXIBATCH_*`` variable that names no setting.
        """
        found: dict[str, tuple[Any, str]] = {}
        for var in sorted(env):
            if not var.startswith(ENV_PREFIX) or var in skip:
                continue
            dotted = self.key_of(var)
            if dotted is None:
                hint = suggest(var, self.known_names())
                raise ConfigError(f"{var}: unknown lexibatch setting{hint}", key=self._guess(var))
            raw = env[var].strip()
            # An empty string unsets a key that may be unset (e.g. ``LEXIBATCH_PROVIDER=``);
            # any other string is coerced to the key's type by pydantic.
            found[dotted] = (None if raw == "" and nullable(dotted) else raw, var)
        return found

    def key_of(self, var: str) -> str | None:
        """The dotted key ``var`` sets, or ``None`` when it names none."""
        if var in self.shortcuts:
            return self.shortcuts[var]
        rest = var[len(ENV_PREFIX) :]
        for section, model in self.sections.items():
            head = section.upper() + "_"
            if rest.startswith(head):
                key = rest[len(head) :].lower()
                return f"{section}.{key}" if key in model.model_fields else None
        if rest.startswith("PROVIDERS_"):
            tail = rest[len("PROVIDERS_") :]
            # Longest key first, so ..._MAX_BATCH_BYTES is not read as a provider "..._MAX_BATCH".
            for key in sorted(self._provider_keys(), key=len, reverse=True):
                suffix = "_" + key.upper()
                if tail.endswith(suffix) and len(tail) > len(suffix):
                    return f"providers.{tail[: -len(suffix)].lower()}.{key}"
            return None
        if rest.startswith("MODELS_") and len(rest) > len("MODELS_"):
            return f"models.{rest[len('MODELS_') :].lower()}"
        return None

    def known_names(self) -> list[str]:
        """Every variable that names a setting of a section or a registered provider."""
        names = list(self.shortcuts)
        for section, model in self.sections.items():
            names += [f"{ENV_PREFIX}{section.upper()}_{f.upper()}" for f in model.model_fields]
        for name, options in self.providers.items():
            names += [
                f"{ENV_PREFIX}PROVIDERS_{name.upper()}_{f.upper()}" for f in options.model_fields
            ]
        return names

    def _provider_keys(self) -> set[str]:
        keys = set(self.common.model_fields)
        for options in self.providers.values():
            keys |= set(options.model_fields)
        return keys

    def _guess(self, var: str) -> str:
        """The dotted key an unknown variable was probably meant to set, for ``ConfigError.key``."""
        rest = var[len(ENV_PREFIX) :].lower()
        for section in (*self.sections, "providers", "models"):
            if rest.startswith(section + "_"):
                return f"{section}.{rest[len(section) + 1 :]}"
        return rest
