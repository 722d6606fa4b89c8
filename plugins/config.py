"""The validated configuration of lexibatch, and where it is read from.

Settings come from three layers, each overriding the one before:

1. ``lexibatch.toml`` in the working directory (or the file given with
   ``--config`` / ``LEXIBATCH_CONFIG``);
2. ``LEXIBATCH_*`` environment variables: ``LEXIBATCH_PROVIDER``,
   ``LEXIBATCH_MODEL``, ``LEXIBATCH_MODE`` and ``LEXIBATCH_DB`` for the
   ``[connector]`` section, ``LEXIBATCH_<SECTION>_<KEY>`` for any other key
   (``LEXIBATCH_BATCH_LINGER=0.5``), ``LEXIBATCH_PROVIDERS_<NAME>_<KEY>`` for a
   provider (``LEXIBATCH_PROVIDERS_SANDBOX_BASE_URL``) and
   ``LEXIBATCH_MODELS_<TASK>`` for per-task routing;
3. command-line flags, passed to :func:`load_settings` as dotted keys.

The key set is closed: an unknown key or a bad value is a
:class:`~providers.errors.ConfigError` whose one-line message names the source
(file or variable), the key and what was expected. Values that could be
secrets are never echoed. A provider's ``[providers.NAME]`` table is
validated by the options model the provider registered
(:class:`~plugins.providerspec.ProviderSpec`), with the same one-line errors.
"""

from __future__ import annotations

import inspect
import logging
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from plugins.configenv import EnvironmentKeys
from plugins.configerrors import (
    ENV_PREFIX,
    KeyedValueError,
    ProviderOptionsError,
    config_error,
    field_at,
    show,
    suggest,
)
from plugins.configprices import ModelName, ModelPriceSettings
from plugins.provideroptions import (
    NonNegFloat,
    PosFloat,
    PositiveInt,
    ProviderSettings,
    Section,
)
from providers.errors import ConfigError

if TYPE_CHECKING:
    from plugins.providerspec import ProviderSpec

__all__ = [
    "CONFIG_FILE",
    "NON_CONFIG_ENV",
    "BatchSettings",
    "ConnectorSettings",
    "ImmediateSettings",
    "ProviderSettings",
    "RetrySettings",
    "Settings",
    "load_settings",
]

#: The config file looked for in the working directory.
CONFIG_FILE = "lexibatch.toml"

#: ``LEXIBATCH_*`` variables that are read elsewhere and are not settings:
#: any of them may be exported in the shell every command runs from.
NON_CONFIG_ENV: frozenset[str] = frozenset(
    {
        "LEXIBATCH_LOAD_PLUGINS",
        "LEXIBATCH_CONFIG",
        # `lexibatch serve --token`
        "LEXIBATCH_SERVE_TOKEN",
        # The test suite's and the benchmarks' own switches (see the README).
        "LEXIBATCH_CASSETTE_TARGET",
        "LEXIBATCH_REAL_CASSETTES",
        "LEXIBATCH_BENCH_PROFILE_LINES",
        "LEXIBATCH_CI_VENV",
    }
)

_ENV_PREFIX = ENV_PREFIX
_CONNECTOR_SHORTCUTS = {
    "LEXIBATCH_PROVIDER": "connector.provider",
    "LEXIBATCH_MODEL": "connector.model",
    "LEXIBATCH_MODE": "connector.mode",
    "LEXIBATCH_DB": "connector.db",
}
_MEMORY_DB = ":memory:"

_Section = Section


class ConnectorSettings(_Section):
    """``[connector]``: which provider, model and mode, and where the store lives.

    Attributes:
        provider: the provider's registered name; ``None`` means the offline sandbox.
        model: the default model (``[models]`` routes tasks elsewhere).
        mode: ``immediate``, ``batch`` or ``auto`` (batch from ``batch.auto_threshold``).
        db: the SQLite store (cache + journal).
    """

    provider: str | None = Field(default=None, min_length=1)
    model: str = "gpt-4o-mini"
    mode: Literal["immediate", "batch", "auto"] = "immediate"
    db: Path = Path(".lexibatch/lexibatch.db")


class BatchSettings(_Section):
    """``[batch]``: how requests are gathered into provider batches and followed.

    Attributes:
        linger: seconds without a new request after which pending requests are sent.
        first_poll: seconds from creating a batch to its first status poll; the
            wait then grows by a quarter at each poll up to ``poll_interval``.
        poll_interval: the wait between polls the schedule reaches quickly.
        max_poll_interval: the longest wait between polls (the backoff's cap).
        delete_files: delete a batch's input, output and error files at the
            provider once its results are stored (Gemini: the batch too).
        max_requests: requests per batch (``None``: the provider's limit).
        max_bytes: bytes per batch (``None``: the provider's limit).
        max_retry_rounds: how many times a retryable item failure is sent again.
        retry_via: re-send retryable failures in a new ``batch`` or ``immediate``-ly.
        budget_usd: refuse to submit past this estimated cost.
        auto_threshold: in ``auto`` mode, the workload size from which batch is used.
        spool_dir: where pending requests and batch input files are written
            (``None``: a ``spool`` folder next to the db).
        retry_cancelled: send again the requests of batches the user cancelled
            (by default they end as cancelled, and stay so).
    """

    linger: NonNegFloat = 1.0
    first_poll: PosFloat = 2.0
    poll_interval: PosFloat = 30.0
    max_poll_interval: PosFloat = 300.0
    max_requests: PositiveInt | None = None
    max_bytes: PositiveInt | None = None
    max_retry_rounds: Annotated[int, Field(ge=0)] = 3
    retry_via: Literal["batch", "immediate"] = "batch"
    budget_usd: NonNegFloat | None = None
    auto_threshold: PositiveInt = 100
    spool_dir: Path | None = None
    delete_files: bool = True
    retry_cancelled: bool = False

    @model_validator(mode="after")
    def _check_poll_bounds(self) -> BatchSettings:
        if self.max_poll_interval < self.poll_interval:
            raise KeyedValueError(
                "max_poll_interval",
                f"expected a number ≥ batch.poll_interval ({self.poll_interval:g}), "
                f"got {self.max_poll_interval:g}",
            )
        return self


class ImmediateSettings(_Section):
    """``[immediate]``: answers of immediate calls.

    Attributes:
        reask: how many times content that fails schema validation is asked again.
    """

    reask: Annotated[int, Field(ge=0)] = 1


class RetrySettings(_Section):
    """``[retry]``: the one retry policy of every provider call, immediate or batch step.

    A call that fails in a way worth trying again (a dropped connection, a
    429, a 5xx) is tried again after a jittered, doubling wait — at least
    what the provider's ``retry-after`` asked for — until it has been tried
    ``max_attempts`` times or the next try would start after ``give_up_after``
    seconds. So an unreachable provider is given up on in the same bounded
    time whatever the mode.

    Attributes:
        max_attempts: tries per call, the first included.
        backoff_initial: seconds before the first retry (doubled each time, with jitter).
        backoff_max: the longest wait between two tries (a ``retry-after`` may ask for more).
        give_up_after: seconds after the first try from which no new try is started
            (a pause the provider asked for with ``retry-after`` is still waited for).
        timeout_retries: how many times a paid call that timed out is tried again
            (the provider may bill every timed-out try).
    """

    max_attempts: PositiveInt = 6
    backoff_initial: NonNegFloat = 0.5
    backoff_max: NonNegFloat = 8.0
    give_up_after: PosFloat = 30.0
    timeout_retries: Annotated[int, Field(ge=0)] = 1

    @model_validator(mode="after")
    def _check_backoff_bounds(self) -> RetrySettings:
        if self.backoff_max < self.backoff_initial:
            raise KeyedValueError(
                "backoff_max",
                f"expected a number ≥ retry.backoff_initial ({self.backoff_initial:g}), "
                f"got {self.backoff_max:g}",
            )
        return self


class _UnregisteredProvider(ProviderSettings):
    """The table of a provider no plugin of this process registers.

    Its own keys cannot be checked here; they are, by the provider's options
    model, when a connector is built with a plugin manager that knows it.
    """

    model_config = ConfigDict(extra="allow")


class Settings(_Section):
    """The whole validated configuration.

    Attributes:
        connector: ``[connector]``.
        providers: ``[providers.NAME]`` by provider name.
        batch: ``[batch]``.
        immediate: ``[immediate]``.
        retry: ``[retry]``.
        models: ``[models]``: task name → model.
        prices: ``[prices."MODEL"]``: a model's price, winning over the price map's
            (see :mod:`plugins.configprices`).
    """

    connector: ConnectorSettings = ConnectorSettings()
    providers: dict[str, SerializeAsAny[ProviderSettings]] = Field(default_factory=dict)
    batch: BatchSettings = BatchSettings()
    immediate: ImmediateSettings = ImmediateSettings()
    retry: RetrySettings = RetrySettings()
    models: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    prices: dict[ModelName, ModelPriceSettings] = Field(default_factory=dict)

    @field_validator("providers", mode="before")
    @classmethod
    def _validate_provider_options(cls, value: Any) -> Any:
        # Each table by the options model its provider registered; the
        # default key variable is filled in as if it had been written.
        if not isinstance(value, Mapping):
            return value
        tables = {}
        for name, table in value.items():
            spec = registered_spec(str(name))
            if spec is None:
                _unknown_provider_table(str(name))
            tables[name] = _provider_options(str(name), table, spec)
        return tables

    def model_for(self, task: str | None) -> str:
        """The model a task is routed to: ``[models]``, else ``connector.model``."""
        if task is not None:
            model = self.models.get(task)
            if model is not None:
                return model
        return self.connector.model

    def provider_settings(self, name: str, spec: ProviderSpec | None = None) -> ProviderSettings:
        """The settings of provider ``name``: as configured, or the defaults.

        They are an instance of the options model ``spec`` (by default the
        spec registered as ``name``) declares; ``api_key_env`` is filled in
        with its default variable when the config does not name one.

        Raises:
            ConfigError: the table does not suit the options model of ``spec``
                (a provider registered only in another plugin manager).
        """
        spec = spec or registered_spec(name)
        configured = self.providers.get(name)
        options = spec.options if spec is not None else _UnregisteredProvider
        if configured is not None and type(configured) is options:
            return configured
        try:
            return _provider_options(name, configured or {}, spec)
        except ProviderOptionsError as exc:
            raise _config_error(exc.error, {}, "config", spec, provider=name) from None

    @property
    def spool_path(self) -> Path:
        """Where batch input files are spooled: ``batch.spool_dir`` or next to the db."""
        if self.batch.spool_dir is not None:
            return self.batch.spool_dir
        if str(self.connector.db) == _MEMORY_DB:
            return Path(".lexibatch") / "spool"
        return self.connector.db.parent / "spool"


# The [providers.NAME] tables of no registered provider, said once each.
_told_unknown: set[str] = set()


def _unknown_provider_table(name: str) -> None:
    """Say once that ``[providers.NAME]`` is used by no provider this process knows.

    Not an error when no registered name is close: the table may be for a
    plugin installed elsewhere (or in another plugin manager). One a slip
    away from a registered name is an error: its settings (a proxy's
    ``base_url``, say) meant for that provider would be silently unused, and
    its calls sent and paid for elsewhere.

    Raises:
        KeyedValueError: ``name`` looks like a misspelt registered name.
    """
    hint = suggest(name, sorted(_registered()))
    if hint:
        raise KeyedValueError(
            name,
            f"names no registered provider{hint}: its settings would not be used — correct "
            "the name, or install the plugin that registers it (`lexibatch plugins` lists "
            "the providers)",
        )
    if name in _told_unknown:
        return
    _told_unknown.add(name)
    logging.getLogger("lexibatch.config").warning(
        "[providers.%s] names no registered provider: its settings are not used "
        "(`lexibatch plugins` lists the providers)",
        name,
    )


def registered_spec(name: str) -> ProviderSpec | None:
    """What provider ``name`` declared when it registered (``None``: nothing registers it)."""
    entry = _registered().get(name)
    return entry.spec if entry is not None else None


def registered_specs() -> dict[str, ProviderSpec]:
    """What each registered provider declared, by name."""
    return {name: entry.spec for name, entry in _registered().items()}


def _registered() -> dict[str, Any]:
    from plugins.manager import get_plugin_manager

    return get_plugin_manager().registry().providers


def _provider_options(name: str, table: Any, spec: ProviderSpec | None) -> ProviderSettings:
    """``[providers.NAME]`` validated by its provider's options model, key variable filled in.

    Raises:
        ProviderOptionsError: the model refuses the table.
    """
    if isinstance(table, ProviderSettings):
        table = table.model_dump(exclude_unset=True)
    options = spec.options if spec is not None else _UnregisteredProvider
    try:
        validated = options.model_validate(table)
    except ValidationError as exc:
        raise ProviderOptionsError(name, exc) from None
    if "api_key_env" in validated.model_fields_set:
        return validated
    key_env = spec.key_env if spec is not None else None
    return validated.model_copy(update={"api_key_env": key_env})


def _options_of(name: str) -> type[BaseModel]:
    spec = registered_spec(name)
    return spec.options if spec is not None else ProviderSettings


def _owners_of(name: str, key: str) -> str | None:
    """Who takes ``key`` when provider ``name`` does not: the registered providers that do.

    Providers whose options inherit the key from one model are named as that
    model's owners (its ``owner_label``).
    """
    owners: dict[type[ProviderSettings], list[str]] = {}
    for entry in _registered().values():
        if entry.name != name and key in entry.spec.options.model_fields:
            declared = next(
                model
                for model in reversed(entry.spec.options.__mro__)
                if key in inspect.get_annotations(model) and issubclass(model, ProviderSettings)
            )
            owners.setdefault(declared, []).append(entry.name)
    labels = [
        model.owner_label or " and ".join(f"the {n} provider" for n in names)
        for model, names in owners.items()
    ]
    return " or ".join(labels) or None


def _config_error(
    exc: ValidationError,
    sources: Mapping[str, str],
    file_label: str,
    spec: ProviderSpec | None = None,
    provider: str | None = None,
) -> ConfigError:
    """One line for the first error of ``exc`` (of ``provider``'s table by ``spec``, when given)."""
    options_of = _options_of
    if provider is not None:
        wrapped = ProviderOptionsError(provider, exc)
        exc = ValidationError.from_exception_data(
            "Settings",
            [
                {
                    "type": "value_error",
                    "loc": ("providers",),
                    "input": None,
                    "ctx": {"error": wrapped},
                }
            ],
        )
        if spec is not None:
            given = spec.options

            def options_of(name: str) -> type[BaseModel]:
                return given if name == provider else _options_of(name)

    return config_error(
        exc, sources, file_label, root=Settings, options_of=options_of, owners_of=_owners_of
    )


# ---------------------------------------------------------------------------
# loading


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration.

    Args:
        config_path: the config file; ``None`` reads ``lexibatch.toml`` from
            ``cwd`` when there is one (or the file ``LEXIBATCH_CONFIG`` names).
            A path given explicitly must exist.
        env: the environment (default: ``os.environ``).
        overrides: dotted keys from command-line flags, e.g.
            ``{"connector.model": "gpt-4o", "batch.budget_usd": 5}``;
            ``None`` values (a flag not given) are skipped.
        cwd: the working directory (default: the process's); relative paths
            (``connector.db``, ``batch.spool_dir``, the config file) are
            resolved against it.

    Raises:
        ConfigError: a missing explicit file, a TOML syntax error, an unknown
            key or a bad value — one line naming the source and the key.
    """
    env = os.environ if env is None else env
    base = Path.cwd() if cwd is None else Path(cwd)
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}

    file_label = CONFIG_FILE
    explicit = None if config_path is None else Path(config_path)
    if explicit is None and env.get("LEXIBATCH_CONFIG"):
        explicit = Path(env["LEXIBATCH_CONFIG"])
    if explicit is not None:
        path = explicit if explicit.is_absolute() else base / explicit
        file_label = str(explicit)
        if not path.is_file():
            raise ConfigError(f"{file_label}: config file not found", key=None)
        merged = _read_toml(path, file_label)
    elif (base / CONFIG_FILE).is_file():
        merged = _read_toml(base / CONFIG_FILE, file_label)

    for dotted, (value, label) in _env_layer(env).items():
        _set_dotted(merged, dotted, value, label, file_label)
        sources[dotted] = label
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(merged, dotted, value, "command line", file_label)
        sources[dotted] = "command line"

    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        raise _config_error(exc, sources, file_label) from None
    return _resolve_paths(settings, base)


def _read_toml(path: Path, label: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the config file: {exc.strerror}") from None
    try:
        # A byte-order mark (as some editors save) is not TOML, but harmless.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{label}: not a TOML text file (byte {exc.start} is not UTF-8) — "
            "give --config the lexibatch.toml file",
            key=None,
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}", key=None) from None


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    update: dict[str, Any] = {}
    db = settings.connector.db
    if str(db) != _MEMORY_DB and not db.is_absolute():
        update["connector"] = settings.connector.model_copy(update={"db": base / db})
    spool = settings.batch.spool_dir
    if spool is not None and not spool.is_absolute():
        update["batch"] = settings.batch.model_copy(update={"spool_dir": base / spool})
    return settings.model_copy(update=update) if update else settings


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, label: str, file_label: str) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(
                f"{file_label}: {where}: expected a table, got {show(child, where)}", key=where
            )
        node = child
    node[parts[-1]] = value


def _env_layer(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    sections: dict[str, type[BaseModel]] = {
        "connector": ConnectorSettings,
        "batch": BatchSettings,
        "immediate": ImmediateSettings,
        "retry": RetrySettings,
    }
    providers = {name: entry.spec.options for name, entry in _registered().items()}
    return EnvironmentKeys(_CONNECTOR_SHORTCUTS, sections, ProviderSettings, providers).read(
        env, skip=NON_CONFIG_ENV, nullable=_nullable
    )


def _nullable(dotted: str) -> bool:
    annotation, _ = field_at(Settings, tuple(dotted.split(".")), _options_of)
    return annotation is not None and type(None) in typing.get_args(annotation)
