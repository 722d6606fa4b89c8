"""The validated configuration of lexibatch, and where it is read from.

Settings come from three layers, each overriding the one before:

1. ``lexibatch.toml`` in the working directory (or the file given with
   ``--config`` / ``LEXIBATCH_CONFIG``);
2. ``LEXIBATCH_*`` environment variables: ``LEXIBATCH_PROVIDER``,
   ``LEXIBATCH_MODEL``, ``LEXIBATCH_MODE`` and ``LEXIBATCH_DB`` for the
   ``[connector]`` section, ``LEXIBATCH_<SECTION>_<KEY>`` for any other key
   (``LEXIBATCH_BATCH_LINGER=0.5``), ``LEXIBATCH_PROVIDERS_<NAME>_<KEY>`` for a
   provider (``LEXIBATCH_PROVIDERS_OPENAI_BASE_URL``) and
   ``LEXIBATCH_MODELS_<TASK>`` for per-task routing;
3. command-line flags, passed to :func:`load_settings` as dotted keys.

The key set is closed: an unknown key or a bad value is a
:class:`~providers.errors.ConfigError` whose one-line message names the source
(file or variable), the key and what was expected. Values that could be
secrets are never echoed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from providers.errors import ConfigError, MissingAPIKeyError

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_API_KEY_ENV",
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

#: The API-key variable each built-in provider reads unless configured otherwise.
#: ``None``: the provider needs no key from lexibatch (LiteLLM reads its own).
DEFAULT_API_KEY_ENV: dict[str, str | None] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "litellm": None,
    "sandbox": None,
}

#: ``LEXIBATCH_*`` variables that are read elsewhere and are not settings.
NON_CONFIG_ENV: frozenset[str] = frozenset({"LEXIBATCH_LOAD_PLUGINS", "LEXIBATCH_CONFIG"})

_ENV_PREFIX = "LEXIBATCH_"
_CONNECTOR_SHORTCUTS = {
    "LEXIBATCH_PROVIDER": "connector.provider",
    "LEXIBATCH_MODEL": "connector.model",
    "LEXIBATCH_MODE": "connector.mode",
    "LEXIBATCH_DB": "connector.db",
}
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Strings shaped like credentials are never repeated back in an error message.
_SECRET_RE = re.compile(r"^(sk|pk|rk|key|api|sess)[-_]|^[A-Za-z0-9_\-+/=.]{32,}$", re.IGNORECASE)
_MEMORY_DB = ":memory:"

PositiveInt = Annotated[int, Field(ge=1)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ConnectorSettings(_Section):
    """``[connector]``: which provider, model and mode, and where the store lives.

    Attributes:
        provider: the provider's registered name; ``None`` means the offline sandbox.
        model: the default model (``[models]`` routes tasks elsewhere).
        mode: ``immediate``, ``batch`` or ``auto`` (batch from ``batch.auto_threshold``).
        db: the SQLite store (cache + journal).
    """

    provider: str | None = None
    model: str = "gpt-4o-mini"
    mode: Literal["immediate", "batch", "auto"] = "immediate"
    db: Path = Path(".lexibatch/lexibatch.db")


class ProviderSettings(_Section):
    """``[providers.NAME]``: how to reach one provider and how hard to push it.

    Attributes:
        base_url: the API's base URL (an OpenAI-compatible service, a proxy,
            the emulator); ``None`` for the vendor's default.
        api_key_env: the environment variable holding the API key (never the
            key itself); defaults per provider (:data:`DEFAULT_API_KEY_ENV`).
            An empty string means the provider needs no key.
        max_concurrency: immediate calls in flight at once.
        rpm: requests per minute, when the account is limited.
        tpm: tokens per minute, when the account is limited.
        timeout: seconds one HTTP call may take.
        connect_timeout: seconds to wait for a connection to the provider (at most
            ``timeout``): a provider that cannot be reached is given up on sooner.
        api: ``chat`` (chat completions) or ``responses`` — OpenAI-style
            providers only; ``None`` for the provider's default.
        structured_output: ``json_schema`` (``output_config.format``) or
            ``tool`` (forced tool use) — Anthropic only; ``None`` for the default.
        max_batch_requests: overrides the provider's requests-per-batch limit.
        max_batch_bytes: overrides the provider's bytes-per-batch limit.
        max_enqueued_tokens: the most tokens (estimated as ``--estimate`` does) one
            model may have in this provider's batches that have not ended; a shard
            that would pass it waits before its batch is created. ``None``: no cap
            is applied ahead (a batch the provider refuses for its queue still
            waits for room and is sent again).
        max_enqueued_tokens_by_model: the same cap for some models by name, over
            ``max_enqueued_tokens``.
        inline_max_bytes: Gemini only: shards up to this size are sent inline
            in the create call, bigger ones uploaded as a file (0: always a file).
    """

    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: PositiveInt = 32
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    timeout: PosFloat = 600.0
    connect_timeout: PosFloat = 5.0
    api: Literal["chat", "responses"] | None = None
    structured_output: Literal["json_schema", "tool"] | None = None
    max_batch_requests: PositiveInt | None = None
    max_batch_bytes: PositiveInt | None = None
    max_enqueued_tokens: PositiveInt | None = None
    max_enqueued_tokens_by_model: dict[str, PositiveInt] = Field(default_factory=dict)
    inline_max_bytes: Annotated[int, Field(ge=0)] | None = None

    @field_validator("api_key_env", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_api_key_env(self) -> ProviderSettings:
        if self.api_key_env and not _ENV_NAME_RE.match(self.api_key_env):
            # The value is deliberately not repeated: it is often a pasted key.
            raise _KeyedValueError(
                "api_key_env",
                "expected the name of an environment variable (e.g. OPENAI_API_KEY), "
                "not the key itself",
            )
        return self

    def enqueued_token_cap(self, model: str) -> int | None:
        """The most tokens ``model`` may have enqueued in batches, or ``None`` (no cap)."""
        return self.max_enqueued_tokens_by_model.get(model, self.max_enqueued_tokens)

    def key_env(self, provider_name: str) -> str | None:
        """The variable this provider's key is read from (``None``: it needs none)."""
        if "api_key_env" in self.model_fields_set:
            return self.api_key_env or None
        return DEFAULT_API_KEY_ENV.get(provider_name)

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
            raise MissingAPIKeyError(provider_name, env_var)
        return value


class BatchSettings(_Section):
    """``[batch]``: how requests are gathered into provider batches and followed.

    Attributes:
        linger: seconds without a new request after which pending requests are sent.
        first_poll: seconds from creating a batch to its first status poll; the
            wait then grows by a quarter at each poll up to ``poll_interval``.
        poll_interval: the wait between polls the schedule reaches quickly.
        max_poll_interval: the longest wait between polls (the backoff's cap).
        delete_files: delete a batch's input, output and error files at the
            provider once its results are stored.
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
            raise _KeyedValueError(
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
            raise _KeyedValueError(
                "backoff_max",
                f"expected a number ≥ retry.backoff_initial ({self.backoff_initial:g}), "
                f"got {self.backoff_max:g}",
            )
        return self


# Which provider-specific keys each built-in provider rejects. Third-party
# providers may take either.
_FOREIGN_OPTIONS: dict[str, tuple[str, ...]] = {
    "openai": ("structured_output", "inline_max_bytes"),
    "sandbox": ("structured_output", "inline_max_bytes"),
    "anthropic": ("api", "inline_max_bytes"),
    "litellm": ("api", "structured_output", "inline_max_bytes"),
    "gemini": ("api", "structured_output"),
    "mistral": ("api", "structured_output", "inline_max_bytes"),
}
_OPTION_OWNER = {
    "api": "OpenAI-style providers",
    "structured_output": "the anthropic provider",
    "inline_max_bytes": "the gemini provider",
}


class Settings(_Section):
    """The whole validated configuration.

    Attributes:
        connector: ``[connector]``.
        providers: ``[providers.NAME]`` by provider name.
        batch: ``[batch]``.
        immediate: ``[immediate]``.
        retry: ``[retry]``.
        models: ``[models]``: task name → model.
    """

    connector: ConnectorSettings = ConnectorSettings()
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    batch: BatchSettings = BatchSettings()
    immediate: ImmediateSettings = ImmediateSettings()
    retry: RetrySettings = RetrySettings()
    models: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_providers(self) -> Settings:
        for name, provider in list(self.providers.items()):
            if "api_key_env" not in provider.model_fields_set:
                self.providers[name] = provider.model_copy(
                    update={"api_key_env": DEFAULT_API_KEY_ENV.get(name)}
                )
            for option in _FOREIGN_OPTIONS.get(name, ()):
                if getattr(provider, option) is not None:
                    raise _KeyedValueError(
                        f"providers.{name}.{option}",
                        f"this key is for {_OPTION_OWNER[option]} only",
                    )
        return self

    def model_for(self, task: str | None) -> str:
        """The model a task is routed to: ``[models]``, else ``connector.model``."""
        if task is not None:
            model = self.models.get(task)
            if model is not None:
                return model
        return self.connector.model

    def provider_settings(self, name: str) -> ProviderSettings:
        """The settings of provider ``name``: as configured, or the defaults.

        ``api_key_env`` is filled in with the provider's default variable
        when the config does not name one.
        """
        configured = self.providers.get(name, ProviderSettings())
        if "api_key_env" in configured.model_fields_set:
            return configured
        return configured.model_copy(update={"api_key_env": DEFAULT_API_KEY_ENV.get(name)})

    @property
    def spool_path(self) -> Path:
        """Where batch input files are spooled: ``batch.spool_dir`` or next to the db."""
        if self.batch.spool_dir is not None:
            return self.batch.spool_dir
        if str(self.connector.db) == _MEMORY_DB:
            return Path(".lexibatch") / "spool"
        return self.connector.db.parent / "spool"


class _KeyedValueError(ValueError):
    """A validation failure that knows the (relative) key at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


# ---------------------------------------------------------------------------
# loading


def load_settings(
    config_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read, merge and validate the configuration.

    Args:
        config_path: the config file; ``None`` reads ``lexibatch.toml`` from
            ``cwd`` when there is one (or the file ``LEXIBATCH_CONFIG`` names).
            A path given explicitly must exist.
        env: the environment (default: ``os.environ``).
        overrides: dotted keys from command-line flags, e.g.
            ``{"connector.provider": "openai", "batch.budget_usd": 5}``;
            ``None`` values (a flag not given) are skipped.
        cwd: the working directory (default: the process's); relative paths
            (``connector.db``, ``batch.spool_dir``, the config file) are
            resolved against it.

    Raises:
        ConfigError: a missing explicit file, a TOML syntax error, an unknown
            key or a bad value — one line naming the source and the key.
    """
    env = os.environ if env is None else env
    base = Path.cwd() if cwd is None else cwd
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}

    file_label = CONFIG_FILE
    explicit = config_path
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
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}", key=None) from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the config file: {exc.strerror}") from None


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
                f"{file_label}: {where}: expected a table, got {_show(child, where)}", key=where
            )
        node = child
    node[parts[-1]] = value


# --- environment -----------------------------------------------------------


def _section_fields() -> dict[str, type[BaseModel]]:
    return {
        "connector": ConnectorSettings,
        "batch": BatchSettings,
        "immediate": ImmediateSettings,
        "retry": RetrySettings,
    }


def _known_env_names() -> list[str]:
    names = list(_CONNECTOR_SHORTCUTS)
    for section, model in _section_fields().items():
        names += [f"{_ENV_PREFIX}{section.upper()}_{f.upper()}" for f in model.model_fields]
    for name in DEFAULT_API_KEY_ENV:
        names += [
            f"{_ENV_PREFIX}PROVIDERS_{name.upper()}_{f.upper()}"
            for f in ProviderSettings.model_fields
        ]
    return names


def _env_layer(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """Dotted key → (value, variable name) for every ``LEXIBATCH_*`` setting in ``env``."""
    found: dict[str, tuple[Any, str]] = {}
    for var in sorted(env):
        if not var.startswith(_ENV_PREFIX) or var in NON_CONFIG_ENV:
            continue
        dotted = _env_key(var)
        if dotted is None:
            hint = _suggest(var, _known_env_names())
            raise ConfigError(f"{var}: unknown lexibatch setting{hint}", key=_guess_key(var))
        found[dotted] = (_env_value(env[var], dotted), var)
    return found


def _env_key(var: str) -> str | None:
    if var in _CONNECTOR_SHORTCUTS:
        return _CONNECTOR_SHORTCUTS[var]
    rest = var[len(_ENV_PREFIX) :]
    for section, model in _section_fields().items():
        head = section.upper() + "_"
        if rest.startswith(head):
            key = rest[len(head) :].lower()
            return f"{section}.{key}" if key in model.model_fields else None
    if rest.startswith("PROVIDERS_"):
        tail = rest[len("PROVIDERS_") :]
        # Longest field first, so ..._MAX_BATCH_BYTES is not read as a provider "..._MAX_BATCH".
        for field in sorted(ProviderSettings.model_fields, key=len, reverse=True):
            suffix = "_" + field.upper()
            if tail.endswith(suffix) and len(tail) > len(suffix):
                return f"providers.{tail[: -len(suffix)].lower()}.{field}"
        return None
    if rest.startswith("MODELS_") and len(rest) > len("MODELS_"):
        return f"models.{rest[len('MODELS_') :].lower()}"
    return None


def _guess_key(var: str) -> str:
    """The dotted key an unknown variable was probably meant to set, for ``ConfigError.key``."""
    rest = var[len(_ENV_PREFIX) :].lower()
    for section in (*_section_fields(), "providers", "models"):
        if rest.startswith(section + "_"):
            return f"{section}.{rest[len(section) + 1 :]}"
    return rest


def _env_value(raw: str, dotted: str) -> Any:
    """A variable's string as a setting value; pydantic then coerces it to the field's type.

    An empty string unsets a key that may be unset (e.g. ``LEXIBATCH_PROVIDER=``).
    """
    if raw.strip() == "" and _nullable(dotted):
        return None
    return raw.strip()


def _nullable(dotted: str) -> bool:
    annotation, _ = _field_at(tuple(dotted.split(".")))
    return annotation is not None and type(None) in typing.get_args(annotation)


# --- error messages --------------------------------------------------------


def _config_error(exc: ValidationError, sources: Mapping[str, str], file_label: str) -> ConfigError:
    """The first validation error as one line naming source, key and expectation."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(str(part) for part in error["loc"])
    ctx = error.get("ctx") or {}
    inner = ctx.get("error")
    if isinstance(inner, _KeyedValueError):
        loc = loc + tuple(inner.key.split("."))
    key = ".".join(loc)
    source = _source_of(key, sources, file_label)
    prefix = source if source.startswith(_ENV_PREFIX) else f"{source}: {key}"
    if isinstance(inner, _KeyedValueError):
        return ConfigError(f"{prefix}: {inner.message}", key=key)
    if error["type"] == "extra_forbidden":
        hint = _suggest(loc[-1], _siblings(loc))
        return ConfigError(f"{source}: unknown key {key}{hint}", key=key)
    annotation, info = _field_at(loc)
    expected = _describe(annotation, info) if annotation is not None else "a valid value"
    got = _show(error.get("input"), key)
    return ConfigError(f"{prefix}: expected {expected}, got {got}", key=key)


def _source_of(key: str, sources: Mapping[str, str], file_label: str) -> str:
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        label = sources.get(".".join(parts[:end]))
        if label is not None:
            return label
    return file_label


def _siblings(loc: tuple[str, ...]) -> list[str]:
    parent, _ = _field_at(loc[:-1]) if loc[:-1] else (Settings, None)
    model = _model_in(parent)
    return list(model.model_fields) if model is not None else []


def _suggest(word: str, candidates: list[str]) -> str:
    """`` (did you mean X?)`` for the closest candidate, or nothing when none is close.

    Edit distance with transpositions ranks first, so ``modle`` suggests
    ``model`` rather than the shorter ``mode``; difflib's ratio breaks ties
    and catches longer words with several slips.
    """
    if not candidates:
        return ""
    lowered = word.lower()

    def rank(candidate: str) -> tuple[int, int, float]:
        distance = _edit_distance(lowered, candidate.lower())
        ratio = difflib.SequenceMatcher(None, lowered, candidate.lower()).ratio()
        return distance, abs(len(candidate) - len(word)), -ratio

    best = min(candidates, key=rank)
    distance, _, neg_ratio = rank(best)
    if distance <= max(1, len(word) // 3) or -neg_ratio >= 0.75:
        return f" (did you mean {best}?)"
    return ""


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions, swaps."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            current[j] = min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (ca != cb),
            )
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _field_at(loc: tuple[str, ...]) -> tuple[Any, FieldInfo | None]:
    """The annotation and field info at a validation location (``None`` when unknown)."""
    annotation: Any = Settings
    info: FieldInfo | None = None
    for part in loc:
        model = _model_in(annotation)
        if model is not None and part in model.model_fields:
            info = model.model_fields[part]
            annotation = info.annotation
            continue
        origin = typing.get_origin(annotation)
        if origin is dict:
            annotation = typing.get_args(annotation)[1]
            info = None
            continue
        return None, None
    return annotation, info


def _describe(annotation: Any, info: FieldInfo | None) -> str:
    """What a field takes, in words: ``a number ≥ 0``, ``one of 'chat', 'responses'``."""
    metadata: list[Any] = list(info.metadata) if info is not None else []
    if typing.get_origin(annotation) is Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        for extra in args[1:]:
            metadata += getattr(extra, "metadata", [extra])
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return _describe(options[0], info)
        return " or ".join(_describe(a, None) for a in options)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin is dict or _model_in(annotation) is not None:
        return "a table"
    words = {
        float: "a number",
        int: "an integer",
        str: "a string",
        bool: "true or false",
        Path: "a path",
    }
    text = words.get(annotation, "a valid value")
    if annotation is str and any(getattr(m, "min_length", None) for m in metadata):
        return "a non-empty string"
    for m in metadata:
        if isinstance(m, Ge):
            text += f" ≥ {m.ge:g}" if isinstance(m.ge, (int, float)) else f" ≥ {m.ge}"
        elif isinstance(m, Gt):
            text += f" > {m.gt:g}" if isinstance(m.gt, (int, float)) else f" > {m.gt}"
    return text


def _show(value: Any, key: str) -> str:
    """``repr`` of an offending value, unless it may be a secret."""
    if "key" in key.rsplit(".", 1)[-1].lower():
        return "<hidden>"
    if isinstance(value, str) and _SECRET_RE.search(value.strip()):
        return "<hidden>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
