"""Turning a provider's completion into a validated :class:`Response`.

Both strategies and the cache go through here, so an answer is validated the
same way whether it came immediately, from a batch, or from the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import SchemaValidator

from providers.errors import (
    InputError,
    InvalidRequestError,
    SchemaValidationError,
    TruncatedError,
    UnusableAnswerError,
)
from providers.stop import StopReason
from providers.types import Completion, Mode, Request, Response, Usage
from providers.validation import schema_validator

if TYPE_CHECKING:
    from plugins.store import StoredResult

__all__ = [
    "build_response",
    "cached_response",
    "model_validator",
    "more_tokens",
    "storable",
    "unusable",
    "validate_content",
]


def validate_content(request: Request, content: str, *, provider: str = "") -> Any:
    """The request's answer parsed from ``content``.

    A pydantic model class validates itself; a raw JSON schema is checked
    with ``jsonschema``; a request without a schema gets the text back.

    Raises:
        SchemaValidationError: the content is not valid JSON or does not fit.
        UnusableAnswerError: the answer cannot be checked at all: the
            request's schema is broken, or its model's validator crashed.
    """
    model = request.response_model
    if model is not None:
        try:
            return _json_validator(model)(content)
        except ValidationError as exc:
            raise SchemaValidationError(
                f"answer does not fit {model.__name__}: {_summarize(exc)}",
                content=content,
                provider=provider,
            ) from None
        except Exception as exc:
            # A validator of the model raised something pydantic does not wrap.
            raise UnusableAnswerError(
                f"the answer could not be validated against {model.__name__}: {_brief(exc)}",
                content=content,
                provider=provider,
                code="unusable_answer",
            ) from None
    if request.json_schema is not None:
        try:
            value = orjson.loads(content)
        except orjson.JSONDecodeError as exc:
            raise SchemaValidationError(
                f"answer is not JSON: {exc}", content=content, provider=provider
            ) from None
        error = _first_schema_error(request.json_schema, value, content, provider)
        if error is not None:
            raise SchemaValidationError(
                f"answer does not fit the schema: {error}", content=content, provider=provider
            )
        return value
    return content


# The JSON validator of each response model: its compiled validator's
# ``validate_json``, which is what ``model_validate_json`` calls after checking
# its keyword arguments (once per answer, a hundred thousand times a batch).
_MODEL_VALIDATE_JSON = BaseModel.model_validate_json.__func__  # type: ignore[attr-defined]
_VALIDATORS: dict[type[BaseModel], tuple[SchemaValidator, Callable[[str], Any]]] = {}
_VALIDATORS_MAX = 1024


def _json_validator(model: type[BaseModel]) -> Callable[[str], Any]:
    """What validates JSON text against ``model``, as ``model.model_validate_json`` does."""
    validator = model.__pydantic_validator__
    known = _VALIDATORS.get(model)
    # Checked each time: a model rebuilt since has another validator.
    if known is not None and known[0] is validator:
        return known[1]
    own = getattr(model.model_validate_json, "__func__", None)
    if not isinstance(validator, SchemaValidator) or own is not _MODEL_VALIDATE_JSON:
        # Not built yet (pydantic builds it on first use), or the model
        # validates JSON its own way: asked each time.
        return model.model_validate_json
    if len(_VALIDATORS) >= _VALIDATORS_MAX:
        _VALIDATORS.clear()
    _VALIDATORS[model] = (validator, validator.validate_json)
    return validator.validate_json


def model_validator(model: type[BaseModel]) -> Callable[[str], Any]:
    """What validates an answer's JSON text against response model ``model``.

    The model's compiled validator (as :func:`validate_content` uses it),
    for callers that validate answers by the thousand; it raises what
    ``model.model_validate_json`` raises.
    """
    return _json_validator(model)


def build_response(
    request: Request,
    completion: Completion,
    *,
    provider: str,
    mode: Mode,
    cost_usd: float | None,
    batch_id: str | None = None,
    usage: Usage | None = None,
    cached: bool = False,
    sent_max_tokens: int | None = None,
) -> Response:
    """Validate ``completion`` against ``request`` and wrap it as a :class:`Response`.

    A structured answer cut at the output-token limit that does not fit its
    schema is a :class:`TruncatedError` (to be retried with more tokens),
    not a schema failure; a text answer cut there is returned, its
    ``stop_reason`` saying so. ``sent_max_tokens`` is the limit the answer
    was asked with when a re-ask raised it above ``request``'s own: the
    error names the limit the answer hit, and offers only a larger one.

    Raises:
        InvalidRequestError: the model refused (code ``refusal``) or the
            provider's content filter withheld the answer (``content_filter``);
            not retried.
        TruncatedError: the structured answer was cut at ``max_tokens``.
        SchemaValidationError: the content does not fit the request's schema.
        UnusableAnswerError: the content cannot be checked (a broken schema
            or validator); not retried.
    """
    if completion.refusal:
        raise InvalidRequestError(
            f"the model refused: {completion.refusal}", provider=provider, code="refusal"
        )
    stop = completion.stop_reason
    try:
        output = validate_content(request, completion.content, provider=provider)
    except SchemaValidationError:
        if stop is not None and stop.truncated:
            limit = (
                sent_max_tokens
                or getattr(request, "max_tokens", None)
                or completion.usage.output_tokens
            )
            raise TruncatedError(
                f"the answer was cut at the output-token limit ({limit or 'unknown'} tokens, "
                f"stop reason {completion.finish_reason!r}) before it was complete",
                content=completion.content,
                max_tokens=limit or None,
                raw_stop_reason=completion.finish_reason,
                provider=provider,
            ) from None
        if stop is StopReason.CONTENT_FILTER:
            raise InvalidRequestError(
                "the provider's content filter withheld the answer",
                provider=provider,
                code="content_filter",
            ) from None
        raise
    except UnusableAnswerError:
        raise
    except Exception as exc:
        # Content of an unexpected shape (not text): this answer alone is unusable.
        raise unusable(exc, str(completion.content), provider) from None
    return Response(
        output=output,
        text=completion.content,
        usage=usage if usage is not None else completion.usage,
        cost_usd=cost_usd,
        provider=provider,
        model=completion.model or request.model,
        mode=mode,
        key=request.key,
        request_id=completion.request_id,
        batch_id=batch_id,
        cached=cached,
        stop_reason=stop,
        raw_stop_reason=completion.finish_reason,
    )


def cached_response(request: Request, stored: StoredResult, *, provider: str) -> Response:
    """The :class:`Response` of a stored answer: free, as it was paid for where it was made.

    Raises:
        SchemaValidationError: the answer no longer fits the request's response model.
    """
    completion = Completion(
        content=stored.text,
        usage=stored.usage,
        model=stored.model,
        request_id=stored.request_id,
    )
    return build_response(
        request,
        completion,
        provider=provider,
        mode=stored.mode,  # type: ignore[arg-type]
        cost_usd=0.0,
        batch_id=stored.batch_id,
        cached=True,
    )


def more_tokens(request: Request, error: BaseException | None) -> Request:
    """``request`` again with twice the output limit, when ``error`` says it was cut.

    Twice the larger of the request's own limit and the one the cut answer
    hit (a retry round may already have raised it), up to
    :attr:`TruncatedError.CEILING`; otherwise ``request`` unchanged.
    """
    if not isinstance(error, TruncatedError) or error.retry_max_tokens is None:
        return request
    base = max(request.max_tokens or 0, error.max_tokens or 0)
    if base >= TruncatedError.CEILING:
        return request
    return dataclasses.replace(request, max_tokens=min(2 * base, TruncatedError.CEILING))


def _summarize(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', '')}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _first_schema_error(
    schema: Mapping[str, Any], value: Any, content: str, provider: str
) -> str | None:
    try:
        error = schema_validator(schema).first_error(value)
    except InputError as exc:
        # Sent before schemas were checked up front (an older run's journal).
        raise UnusableAnswerError(
            f"the answer cannot be validated: the request's {exc.message}",
            content=content,
            provider=provider,
            code="invalid_schema",
        ) from None
    except Exception as exc:
        # jsonschema.UnknownType, re.error, an unresolvable $ref, ...
        raise UnusableAnswerError(
            f"the answer cannot be validated against the request's schema: {_brief(exc)}",
            content=content,
            provider=provider,
            code="invalid_schema",
        ) from None
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"


def _brief(exc: BaseException) -> str:
    """``Type: message`` of an unexpected exception, on one line and not too long."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def storable(text: str) -> None:
    """Check that the store can write an answer's ``text``, so one answer cannot sink its
    whole chunk.

    Raises:
        UnusableAnswerError: it cannot be stored (e.g. a lone surrogate that
            SQLite refuses to encode).
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnusableAnswerError(
            f"the answer cannot be stored: {_brief(exc)}",
            content=text,
            code="unstorable_answer",
        ) from None


def unusable(exc: BaseException, content: str, provider: str) -> UnusableAnswerError:
    """An unexpected failure to validate or store one answer, as that request's typed error."""
    return UnusableAnswerError(
        f"the answer could not be validated or stored: {_brief(exc)}",
        content=content,
        provider=provider,
        code="unusable_answer",
    )
