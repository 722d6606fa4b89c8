"""The output lines of a batch's chat items with a JSON schema, rendered straight to bytes.

A batch's ``/v1/chat/completions`` requests nearly always share their
``response_format``: what it implies (the schema, its length in the prompt,
its compiled generator) is worked out once per distinct format, and each
item's line is filled into a byte template instead of being built as nested
dicts and serialized. The bytes are exactly those of the general path
(:func:`~providers.emulator.answers.chat_completion` wrapped in the batch
line and ``orjson.dumps``): every value placed in the template is serialized
by ``orjson`` as it would be inside the whole line. Items of any other shape
(tools, ``n``, JSON mode, a schema written in the prompt) are left to the
general path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from providers.emulator.answers import count_tokens, messages_len
from providers.emulator.ids import Stem
from providers.emulator.rng import Rng
from providers.emulator.schemagen import Generator, generator_for, invalidate

__all__ = ["ChatLines", "Rendered"]

# ``%%`` survives the first formatting, which bakes in a batch's id stems and ``created``.
_LINE = (
    b'{"id":"%b%%08x","custom_id":%%b,"response":{"status_code":200,"request_id":"%b%%08x",'
    b'"body":{"id":"%b%%08x","object":"chat.completion","created":%d,"model":%%b,'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":%%b,"refusal":null,'
    b'"annotations":[]},"logprobs":null,"finish_reason":"%%b"}],'
    b'"usage":{"prompt_tokens":%%d,"completion_tokens":%%d,"total_tokens":%%d,'
    b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
    b'"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,'
    b'"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},'
    b'"service_tier":"default","system_fingerprint":null}},"error":null}'
)


class Rendered(NamedTuple):
    """An item's output line and what it bills."""

    line: bytes
    input_tokens: int
    output_tokens: int


class _Plan(NamedTuple):
    """What a ``response_format`` implies for every item that sends it."""

    schema: Mapping[str, Any]  # the schema values are drawn from (``{}`` if not an object)
    schema_chars: int  # its share of the prompt, in characters
    gen: Generator


class ChatLines:
    """Renders the output lines of one batch's chat items (see the module docstring)."""

    __slots__ = ("_line", "_model", "_model_json", "_plans")

    def __init__(self, stem: Stem, created: int) -> None:
        batch_req, request_hex, chatcmpl = (
            part.encode().replace(b"%", b"%%") for part in stem.chat_line_stems()
        )
        # The batch's template: its ids' stems and its ``created`` filled in once.
        self._line = _LINE % (batch_req, request_hex, chatcmpl, created)
        self._model = ""
        self._model_json = b'""'
        # By the format's exact bytes: equal bytes mean equal values of equal types.
        self._plans: dict[bytes, _Plan | None] = {}

    def _plan(self, fmt: Any) -> _Plan | None:
        key = orjson.dumps(fmt)
        if key not in self._plans:
            self._plans[key] = _plan_of(fmt)
        return self._plans[key]

    def render(
        self, cid: str, body: Mapping[str, Any], seed: int, *, invalid: bool, index: int
    ) -> Rendered | None:
        """The line of item ``index`` (``None``: not this shape; use the general path)."""
        if "tools" in body or "n" in body:
            return None
        plan = self._plan(body.get("response_format"))
        if plan is None:
            return None
        model = str(body.get("model", ""))
        if model != self._model:  # a batch's items name one model, as a rule
            self._model, self._model_json = model, orjson.dumps(model)
        rng = Rng(seed)
        value = plan.gen(rng, 0)
        if invalid:
            value = invalidate(value, plan.schema)
        text = orjson.dumps(value).decode()
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = b"stop"
        if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(len(text)) > max_tokens:
            text = text[: max_tokens * 4]
            finish = b"length"
        out_tokens = count_tokens(len(text))
        in_tokens = count_tokens(messages_len(body.get("messages")) + plan.schema_chars)
        line = self._line % (
            index,
            orjson.dumps(cid),
            index,
            index,
            self._model_json,
            orjson.dumps(text),
            finish,
            in_tokens,
            out_tokens,
            in_tokens + out_tokens,
        )
        return Rendered(line, in_tokens, out_tokens)


def _plan_of(fmt: Any) -> _Plan | None:
    """The plan of a chat ``response_format`` naming a JSON schema (else ``None``)."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    holder = fmt.get("json_schema")
    schema = holder.get("schema", {}) if isinstance(holder, dict) else {}
    if schema is None:
        return None  # the general path looks for a schema in the prompt
    drawn = schema if isinstance(schema, dict) else {}
    return _Plan(drawn, len(orjson.dumps(schema)), generator_for(drawn))
