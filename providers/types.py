"""Provider-neutral value types: requests, completions, responses, usage, batches.

These are the nouns every layer shares. They are plain frozen dataclasses
(with slots) rather than pydantic models because hundreds of thousands of them
are made per run; validation happens once, where data enters (config files,
request files, provider answers).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, overload

import orjson
from pydantic import BaseModel

from providers.errors import ProviderError
from providers.frozen import fast_init
from providers.ratelimits import RateLimitState
from providers.schema import fixed_schema_part, schema_for
from providers.stop import StopReason, normalize_stop

__all__ = [
    "BatchInfo",
    "BatchLimits",
    "BatchState",
    "Completion",
    "ItemResult",
    "JournaledShard",
    "Message",
    "Mode",
    "Request",
    "Response",
    "Role",
    "Usage",
]

Role = Literal["system", "user", "assistant"]
Mode = Literal["immediate", "batch"]

#: Prefix of every batch ``custom_id`` (and request key) lexibatch makes.
KEY_PREFIX = "lb-"


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        """The ``{"role", "content"}`` form every chat API takes."""
        return {"role": self.role, "content": self.content}


_V = TypeVar("_V")


class _once(Generic[_V]):
    """A lazily computed attribute, stored in the instance ``__dict__`` on first use.

    ``functools.cached_property`` does the same but, before Python 3.12, takes
    one lock shared by every instance on each first access: a measurable cost
    when hundreds of thousands of requests compute their key.
    """

    def __init__(self, func: Callable[[Any], _V]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> _once[_V]: ...

    @overload
    def __get__(self, instance: object, owner: type[Any] | None = None) -> _V: ...

    def __get__(self, instance: object | None, owner: type[Any] | None = None) -> Any:
        if instance is None:
            return self
        value = self.func(instance)
        # A non-data descriptor: the next lookup finds the value in __dict__ first.
        instance.__dict__[self.name] = value
        return value


def _canonical_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


# (response model, schema name) -> the canonical body's "schema" part, serialized.
_SCHEMA_PARTS: dict[tuple[type[BaseModel], str | None], bytes] = {}
_SCHEMA_PARTS_MAX = 1024


def _schema_part(model: type[BaseModel], name: str | None, schema: Mapping[str, Any]) -> bytes:
    """``{"name", "schema"}`` of a response model's schema, serialized with sorted keys once."""
    part = _SCHEMA_PARTS.get((model, name))
    if part is None:
        if len(_SCHEMA_PARTS) >= _SCHEMA_PARTS_MAX:
            _SCHEMA_PARTS.clear()
        body = {"name": name, "schema": schema}
        part = _SCHEMA_PARTS[(model, name)] = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return part


#: What the canonical body's schema is written after, and what its temperature begins with.
_SCHEMA_KEY = b',"schema":'
_TEMPERATURE_KEY = b',"temperature":'


@dataclass(frozen=True)
class Request:
    """One provider-neutral LLM call.

    Attributes:
        model: the provider's model name.
        messages: system / user / assistant messages, in order.
        response_model: a pydantic model class the answer must validate
            against; it is sent as a strict JSON schema.
        json_schema: a raw JSON schema, when there is no model class (for
            example requests read from a JSONL file). Derived from
            ``response_model`` when that is given.
        schema_name: the schema's name as sent to the provider.
        max_tokens: maximum output tokens.
        temperature: sampling temperature.
        task: a tag for per-task model routing and cost reporting.
        extras: provider-specific body fields, passed through unchanged.
    """

    model: str
    messages: tuple[Message, ...]
    response_model: type[BaseModel] | None = None
    json_schema: Mapping[str, Any] | None = None
    schema_name: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    task: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        model: str,
        messages: tuple[Message, ...],
        response_model: type[BaseModel] | None = None,
        json_schema: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        task: str | None = None,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        # Written out rather than generated: a frozen dataclass's __init__ sets
        # each field through object.__setattr__, several times the cost of a
        # store into the instance's dict, and requests are made by the hundred
        # thousand. The fields are those declared above, in order.
        if response_model is not None and json_schema is None:
            json_schema = schema_for(response_model)
        if json_schema is not None and schema_name is None:
            schema_name = response_model.__name__ if response_model else "response"
        fields = self.__dict__
        fields["model"] = model
        fields["messages"] = messages
        fields["response_model"] = response_model
        fields["json_schema"] = json_schema
        fields["schema_name"] = schema_name
        fields["max_tokens"] = max_tokens
        fields["temperature"] = temperature
        fields["task"] = task
        fields["extras"] = {} if extras is None else extras

    def canonical(self, *, schema: bool = True) -> dict[str, Any]:
        """The canonical, provider-neutral body the key is computed from.

        ``schema=False`` leaves the schema out (and does not build it): the
        journal stores a schema once and refers to it from each body.
        """
        body: dict[str, Any] = {
            "model": self.model,
            "messages": _canonical_messages(self.messages),
        }
        if schema and self.json_schema is not None:
            body["schema"] = {"name": self.schema_name, "schema": self.json_schema}
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.extras:
            body["extras"] = dict(self.extras)
        return body

    @property
    def canonical_json(self) -> bytes:
        """:meth:`canonical` serialized with sorted keys: what :attr:`key` hashes.

        Not kept: the bytes ``orjson`` returns keep a buffer of at least
        4 KiB whatever their length, which a hundred thousand requests
        awaiting a batch would hold for nothing once :attr:`key` is known.
        """
        body = self._sorted_canonical()
        if self.json_schema is not None:
            body["schema"] = orjson.Fragment(self._schema_json())
            if self.temperature is not None:
                body["temperature"] = body.pop("temperature")  # the last key, sorted
        return orjson.dumps(body)

    def canonical_json_without_schema(self) -> bytes:
        """:meth:`canonical` without the schema (``schema=False``), serialized with sorted keys.

        The same bytes as ``orjson.dumps(self.canonical(schema=False),
        option=orjson.OPT_SORT_KEYS)``; not kept (see :attr:`canonical_json`).
        The first call also computes :attr:`key` from them: the body the key
        hashes is these bytes with the schema spliced in, so a request that
        is journaled (see ``plugins.batch.journal``) is serialized once.
        """
        bare = orjson.dumps(self._sorted_canonical())
        fields = self.__dict__
        if "key" not in fields:
            digest = self._digest(bare)
            fields["key_bytes"] = digest
            fields["key"] = KEY_PREFIX + digest.hex()
        return bare

    def _sorted_canonical(self) -> dict[str, Any]:
        """``canonical(schema=False)`` with its keys inserted in sorted order and its
        nested objects sorted already: ``orjson.dumps`` of it without
        ``OPT_SORT_KEYS`` writes the bytes ``orjson.dumps(self.canonical(schema=False),
        option=orjson.OPT_SORT_KEYS)`` writes.

        Built in that order rather than sorted by ``orjson``: this runs once per
        request, and sorting each object it writes is a third of its cost.
        The top-level keys, sorted: extras, max_tokens, messages, model,
        (schema,) temperature. A message's: content, role.
        """
        body: dict[str, Any] = {}
        if self.extras:
            body["extras"] = orjson.Fragment(
                orjson.dumps(dict(self.extras), option=orjson.OPT_SORT_KEYS)
            )
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        body["messages"] = [{"content": m.content, "role": m.role} for m in self.messages]
        body["model"] = self.model
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body

    def _schema_json(self) -> bytes:
        """The canonical body's ``{"name", "schema"}`` part, serialized with sorted keys."""
        model, schema = self.response_model, self.json_schema
        assert schema is not None, "a request without a schema has no schema part"
        if model is not None and schema is schema_for(model):
            # A model's schema is made once per class (schema_for): its part
            # of the body is serialized once too.
            return _schema_part(model, self.schema_name, schema)
        part = fixed_schema_part(schema, self.schema_name)
        if part is not None:
            return part
        body = {"name": self.schema_name, "schema": schema}
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    def _digest(self, bare: bytes) -> bytes:
        """The first 24 bytes of the SHA-256 of :attr:`canonical_json`, hashed from ``bare``
        (:meth:`canonical_json_without_schema`'s bytes) with the schema spliced in."""
        if self.json_schema is None:
            return hashlib.sha256(bare).digest()[:24]
        # Sorted, "schema" follows "model" and precedes "temperature", the last key if any.
        cut = -1
        if self.temperature is not None:
            cut -= len(_TEMPERATURE_KEY) + len(orjson.dumps(self.temperature))
        digest = hashlib.sha256(bare[:cut])
        digest.update(_SCHEMA_KEY)
        digest.update(self._schema_json())
        digest.update(bare[cut:])
        return digest.digest()[:24]

    @_once
    def key(self) -> str:
        """A stable hash of the canonical body.

        It is the cache key, the dedup key and the batch ``custom_id``: 51
        characters of ``[A-Za-z0-9_-]``, within the 64 that OpenAI and
        Anthropic accept: ``lb-`` and the first 48 hex digits of the SHA-256
        of :attr:`canonical_json`. The ``task`` tag is not part of it: the
        same body asked for by two tasks is one request.
        """
        self.canonical_json_without_schema()  # computes the key (and its bytes) on the way
        key: str = self.__dict__["key"]
        return key

    @_once
    def key_bytes(self) -> bytes:
        """The 24 bytes :attr:`key`'s 48 hex digits spell (computed with it, once).

        What the store keeps for the key: handed along with the key, it need
        not be read back from the digits at every write.
        """
        key = self.key
        # Computing the key stored its bytes; a key copied in without them is read back.
        digest: bytes | None = self.__dict__.get("key_bytes")
        return digest if digest is not None else bytes.fromhex(key[len(KEY_PREFIX) :])

    def with_model(self, model: str) -> Request:
        """A copy of this request sent to another model."""
        return dataclasses.replace(self, model=model)

    def with_messages(self, messages: Sequence[Message]) -> Request:
        """A copy of this request with other messages (used for re-asking)."""
        return dataclasses.replace(self, messages=tuple(messages))


@fast_init
@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call.

    ``input_tokens`` counts the whole prompt, the cached part
    (``cached_tokens``, read from a prompt cache) and the part written to a
    prompt cache (``cache_creation_tokens``) included: each is billed at its
    own rate. ``cache_creation_1h_tokens`` is the share of the writes kept
    for an hour (Anthropic's ``ttl: 1h``), dearer than five-minute writes.
    ``output_tokens`` includes ``reasoning_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cache_creation_tokens + other.cache_creation_tokens,
            self.cache_creation_1h_tokens + other.cache_creation_1h_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready form."""
        data = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cache_creation_tokens": self.cache_creation_tokens,
        }
        if self.cache_creation_1h_tokens:
            data["cache_creation_1h_tokens"] = self.cache_creation_1h_tokens
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Rebuild from :meth:`to_dict`."""
        return cls(
            int(data.get("input_tokens", 0)),
            int(data.get("output_tokens", 0)),
            int(data.get("cached_tokens", 0)),
            int(data.get("reasoning_tokens", 0)),
            int(data.get("cache_creation_tokens", 0)),
            int(data.get("cache_creation_1h_tokens", 0)),
        )


@fast_init
@dataclass(frozen=True, slots=True)
class Completion:
    """What a provider returns for one successful call, before validation.

    Attributes:
        content: the model's text (JSON text for a structured request).
        usage: token counts.
        model: the model that answered, as the provider names it.
        request_id: the provider's id of this call.
        finish_reason: why generation stopped, as the provider said it
            (``stop``, ``length``, ``end_turn``, ``max_output_tokens``, ...).
        refusal: the model's refusal text, when it refused.
        rate_limit: what the provider's rate-limit headers said was left.
    """

    content: str
    usage: Usage
    model: str
    request_id: str | None = None
    finish_reason: str | None = None
    refusal: str | None = None
    rate_limit: RateLimitState | None = None

    @property
    def stop_reason(self) -> StopReason | None:
        """:attr:`finish_reason` in the provider-neutral vocabulary."""
        return normalize_stop(self.finish_reason)


@fast_init
@dataclass(frozen=True, slots=True)
class Response:
    """The result of one request, in either mode.

    Attributes:
        output: the validated pydantic instance, the parsed JSON (raw schema),
            or the text (no schema).
        text: the raw content.
        usage: token counts.
        cost_usd: the price of this call; ``None`` when the model is unpriced.
        provider: the provider's registered name.
        model: the model that answered.
        mode: ``immediate`` or ``batch``.
        key: the request key.
        request_id: the provider's id of this call.
        batch_id: the provider's batch id, when batched.
        cached: whether this came from the store rather than the provider.
        stop_reason: why the model stopped, provider-neutral (``None`` when
            the provider did not say, or for an answer from the store).
        raw_stop_reason: the same as the provider said it.
    """

    output: Any
    text: str
    usage: Usage
    cost_usd: float | None
    provider: str
    model: str
    mode: Mode
    key: str
    request_id: str | None = None
    batch_id: str | None = None
    cached: bool = False
    stop_reason: StopReason | None = None
    raw_stop_reason: str | None = None


@dataclass(frozen=True, slots=True)
class JournaledShard:
    """What the journal knows of a shard whose batch may already exist at the provider.

    ``BatchEndpoint.find`` gets it after a crash between sending ``create``
    and journaling its answer, to recognise the batch that create made.

    Attributes:
        shard_id: lexibatch's id of the shard (what ``create`` attached).
        requests: how many requests it holds.
        keys: the ``custom_id`` of each of its requests.
        journaled_at: when the shard was journaled (epoch seconds): its batch
            cannot be older; ``None``: unknown (look at every batch).
        sent_at: when its create was last journaled as being sent; ``None``
            when that is unknown.
        taken: the batch ids the journal gives to other shards of the
            provider: none of them is this shard's.
    """

    shard_id: str
    requests: int = 0
    keys: tuple[str, ...] = ()
    journaled_at: float | None = None
    sent_at: float | None = None
    taken: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How much one batch of a provider may hold."""

    max_requests: int
    max_bytes: int
    #: Whether one batch may mix models (OpenAI: no).
    mixed_models: bool = False


class BatchState(enum.StrEnum):
    """Provider-neutral state of a batch."""

    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the provider will change this batch no more."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {BatchState.COMPLETED, BatchState.FAILED, BatchState.EXPIRED, BatchState.CANCELLED}
)


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A snapshot of one provider batch.

    Attributes:
        id: the provider's batch id.
        state: provider-neutral state.
        total: requests in the batch (0 while the provider has not counted).
        succeeded: requests that ran to an answer.
        failed: requests that ended in an error (errored, expired, cancelled).
        input_file_id: the uploaded input file, where the provider has files.
        output_file_id: the output file, once there is one.
        error_file_id: the error file, once there is one.
        results_ready: whether :meth:`BatchEndpoint.results` can be read now.
        errors: batch-level errors (e.g. why validation failed).
        raw: the provider's object as it came.
        model: the batch's model, where the provider says it (OpenAI:
            ``null`` while validating).
        usage: the provider's token totals for the whole batch, where it
            gives them (OpenAI), to check the ledger against.
        retry_after: seconds the provider asked to wait before asking
            about this batch again (Anthropic's ``retry-after``).
    """

    id: str
    state: BatchState
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_ready: bool = False
    errors: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    usage: Usage | None = None
    retry_after: float | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class ItemResult:
    """One line of a batch's results: a completion or an error for a custom_id."""

    custom_id: str
    completion: Completion | None = None
    error: ProviderError | None = None
