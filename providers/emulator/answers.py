"""Answer bodies shaped like the real ones, for OpenAI and Anthropic requests.

Each builder takes a parsed request body and returns the response body with
its token counts. The content is synthetic: schema-valid JSON drawn from the
request's schema (or a short text saying it is synthetic), seeded by the
request so the same body always gets the same content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from providers.emulator.ids import Stem
from providers.emulator.promptschema import schema_in_prompt, texts_of
from providers.emulator.rng import Rng
from providers.emulator.schemagen import generator_for, invalidate

__all__ = [
    "Answer",
    "anthropic_message",
    "canonical",
    "chat_completion",
    "count_tokens",
    "messages_len",
    "prompt_chars",
    "responses_answer",
]


class Answer(NamedTuple):
    """A response body and what it costs."""

    body: dict[str, Any]
    input_tokens: int
    output_tokens: int


def canonical(body: Any) -> bytes:
    """The canonical bytes of a request body (sorted keys), the base of its seed."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def count_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters of text: about one per four, at least one."""
    return max(1, (chars + 3) // 4)


def _text_len(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict):
                for key in ("text", "content", "input_text"):
                    value = part.get(key)
                    if isinstance(value, str):
                        total += len(value)
                    elif isinstance(value, list):
                        total += _text_len(value)
            elif isinstance(part, str):
                total += len(part)
        return total
    return 0


def messages_len(messages: Any) -> int:
    """Characters of the text of chat ``messages`` (or of a bare content)."""
    if not isinstance(messages, list):
        return _text_len(messages)
    total = 0
    for m in messages:
        if isinstance(m, dict):
            content = m.get("content")
            total += len(content) if isinstance(content, str) else _text_len(content)
    return total


def prompt_chars(body: Mapping[str, Any]) -> int:
    """Characters of a request's prompt, whichever API's body it is."""
    chars = messages_len(body.get("messages")) + _text_len(body.get("system"))
    inp = body.get("input")
    if inp is not None:
        chars += _text_len(inp) if isinstance(inp, str) else messages_len(inp)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        chars += len(instructions)
    return chars


def _schema_len(schema: Any) -> int:
    return len(orjson.dumps(schema)) if schema is not None else 0


def _synthetic_text(rng: Rng, model: str) -> str:
    return (
        f"Synthetic answer {rng.hex4()}{rng.hex4()} from the lexibatch emulator "
        f"for {model}; no language model wrote this text."
    )


def _json_content(schema: Any, rng: Rng, invalid: bool) -> Any:
    if not isinstance(schema, dict):
        schema = {}
    value = generator_for(schema)(rng, 0)
    if invalid:
        value = invalidate(value, schema)
    return value


def _truncate(text: str, max_tokens: Any) -> tuple[str, bool]:
    if isinstance(max_tokens, int) and max_tokens > 0 and count_tokens(len(text)) > max_tokens:
        return text[: max_tokens * 4], True
    return text, False


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# ---------------------------------------------------------------- OpenAI chat


def chat_completion(
    body: Mapping[str, Any],
    seed: int,
    *,
    invalid: bool,
    ids: Stem,
    index: int,
    created: int,
    batch: bool,
) -> Answer:
    """A ``chat.completion`` for a ``/v1/chat/completions`` body."""
    model = str(body.get("model", ""))
    rng = Rng(seed)
    in_chars = messages_len(body.get("messages"))
    schema = _format_schema(body.get("response_format"), nested=True)
    tool = _forced_openai_tool(body)
    if tool is None and (schema is None or _json_mode(body.get("response_format"))):
        schema = schema_in_prompt(texts_of(body)) or schema
    in_chars += _schema_len(schema) + (_schema_len(tool[1]) if tool else 0)
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    n = body.get("n", 1)
    if not isinstance(n, int) or n < 1:
        n = 1
    choices = []
    out_tokens = 0
    for k in range(n):
        message: dict[str, Any]
        if tool is not None:
            name, params, named = tool
            args = _dumps(_json_content(params, rng, invalid))
            out_tokens += count_tokens(len(args))
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_" + ids.chatcmpl(index)[-24:],
                        "type": "function",
                        "function": {"name": name, "arguments": args},
                    }
                ],
                "refusal": None,
                "annotations": [],
            }
            finish = "stop" if named else "tool_calls"
        else:
            if schema is not None:
                text = _dumps(_json_content(schema, rng, invalid))
            else:
                text = _synthetic_text(rng, model)
            text, cut = _truncate(text, max_tokens)
            out_tokens += count_tokens(len(text))
            message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
            finish = "length" if cut else "stop"
        choices.append({"index": k, "message": message, "logprobs": None, "finish_reason": finish})
    in_tokens = count_tokens(in_chars)
    return Answer(
        {
            "id": ids.chatcmpl(index),
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": choices,
            "usage": _openai_usage(in_tokens, out_tokens),
            "service_tier": "default",
            "system_fingerprint": None if batch else "fp_" + f"{seed & 0xFFFFFFFFFF:010x}",
        },
        in_tokens,
        out_tokens,
    )


def _format_schema(fmt: Any, *, nested: bool) -> Any:
    """The schema an OpenAI structured-output format asks for; ``None`` for plain text.

    Chat nests it (``{"type": "json_schema", "json_schema": {"schema": ...}}``),
    the Responses API does not (``{"type": "json_schema", "schema": ...}``).
    ``json_object`` gets a one-field object.
    """
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_schema":
        holder = fmt.get("json_schema") if nested else fmt
        return holder.get("schema", {}) if isinstance(holder, dict) else {}
    if fmt.get("type") == "json_object":
        return {"type": "object", "properties": {"answer": {"type": "string"}}}
    return None


def _json_mode(fmt: Any) -> bool:
    """Whether a format asks for JSON without saying which (``json_object``)."""
    return isinstance(fmt, dict) and fmt.get("type") == "json_object"


def _openai_usage(in_tokens: int, out_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": in_tokens,
        "completion_tokens": out_tokens,
        "total_tokens": in_tokens + out_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _forced_openai_tool(body: Mapping[str, Any]) -> tuple[str, Any, bool] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools:
        return None
    by_name = {}
    for t in tools:
        fn = t.get("function") if isinstance(t, dict) else None
        if isinstance(fn, dict) and "name" in fn:
            by_name[str(fn["name"])] = fn.get("parameters") or {}
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str) and name in by_name:
            return name, by_name[name], True
    if choice == "required" and by_name:
        name = next(iter(by_name))
        return name, by_name[name], False
    return None


# ------------------------------------------------------------ OpenAI responses


def responses_answer(
    body: Mapping[str, Any],
    seed: int,
    *,
    invalid: bool,
    ids: Stem,
    index: int,
    created: int,
    batch: bool,
) -> Answer:
    """A ``response`` object for a ``/v1/responses`` body."""
    model = str(body.get("model", ""))
    rng = Rng(seed)
    inp = body.get("input")
    in_chars = _text_len(inp) if isinstance(inp, str) else messages_len(inp)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        in_chars += len(instructions)
    text_cfg = body.get("text")
    fmt = text_cfg.get("format") if isinstance(text_cfg, dict) else None
    schema = _format_schema(fmt, nested=False)
    if schema is None or _json_mode(fmt):
        schema = schema_in_prompt(texts_of(body)) or schema
    in_chars += _schema_len(schema)
    text = (
        _dumps(_json_content(schema, rng, invalid))
        if schema is not None
        else _synthetic_text(rng, model)
    )
    max_tokens = body.get("max_output_tokens")
    text, cut = _truncate(text, max_tokens)
    in_tokens = count_tokens(in_chars)
    out_tokens = count_tokens(len(text))
    # Reasoning models put a ``reasoning`` item before the message and bill
    # its hidden tokens as output.
    reasoning_tokens = 64 if _reasons(body) else 0
    out_tokens += reasoning_tokens
    output: list[dict[str, Any]] = []
    if reasoning_tokens:
        output.append({"id": "rs_" + ids.resp(index)[5:], "type": "reasoning", "summary": []})
    output.append(
        {
            "id": ids.resp_msg(index),
            "type": "message",
            "status": "incomplete" if cut else "completed",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}],
            "role": "assistant",
        }
    )
    out_text_cfg = dict(text_cfg) if isinstance(text_cfg, dict) else {}
    out_text_cfg.setdefault("format", {"type": "text"})
    out_text_cfg.setdefault("verbosity", "medium")
    answer = {
        "id": ids.resp(index),
        "object": "response",
        "created_at": created,
        "status": "incomplete" if cut else "completed",
        "background": False,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "max_tool_calls": body.get("max_tool_calls"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", not batch),
        "temperature": body.get("temperature", 1.0),
        "text": out_text_cfg,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": in_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": in_tokens + out_tokens,
        },
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }
    return Answer(answer, in_tokens, out_tokens)


_REASONING_MODELS = re.compile(r"^(o\d|gpt-5)")


def _reasons(body: Mapping[str, Any]) -> bool:
    """Whether a Responses body goes to a reasoning model (``o3``, ``gpt-5``, ...)."""
    model = str(body.get("model", ""))
    reasoning = body.get("reasoning")
    asked = isinstance(reasoning, dict) and reasoning.get("effort") not in (None, "none")
    return asked or bool(_REASONING_MODELS.match(model.rsplit("/", 1)[-1]))


# ------------------------------------------------------------------ Anthropic


def anthropic_message(
    body: Mapping[str, Any],
    seed: int,
    *,
    invalid: bool,
    ids: Stem,
    index: int,
    batch: bool,
) -> Answer:
    """A ``message`` for a ``/v1/messages`` body (also a batch item's ``params``)."""
    model = str(body.get("model", ""))
    rng = Rng(seed)
    in_chars = messages_len(body.get("messages")) + _text_len(body.get("system"))
    schema = None
    for holder in (body.get("output_config"), body):
        fmt = (
            holder.get("format" if holder is not body else "output_format")
            if isinstance(holder, Mapping)
            else None
        )
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            schema = fmt.get("schema", {})
            break
    tool = _forced_anthropic_tool(body)
    if schema is None and tool is None:
        schema = schema_in_prompt(texts_of(body))
    in_chars += _schema_len(schema) + (_schema_len(tool[1]) if tool else 0)
    max_tokens = body.get("max_tokens")
    content: list[dict[str, Any]]
    if tool is not None:
        name, input_schema = tool
        value = _json_content(input_schema, rng, invalid)
        out_tokens = count_tokens(len(_dumps(value)))
        content = [{"type": "tool_use", "id": ids.toolu(index), "name": name, "input": value}]
        stop = "tool_use"
    else:
        if schema is not None:
            text = _dumps(_json_content(schema, rng, invalid))
        else:
            text = _synthetic_text(rng, model)
        text, cut = _truncate(text, max_tokens)
        out_tokens = count_tokens(len(text))
        content = [{"type": "text", "text": text}]
        stop = "max_tokens" if cut else "end_turn"
    in_tokens = count_tokens(in_chars)
    return Answer(
        {
            "id": ids.msg(index),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "stop_details": None,
            "usage": {
                "input_tokens": in_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": out_tokens,
                "service_tier": "batch" if batch else "standard",
                "inference_geo": "not_available",
            },
        },
        in_tokens,
        out_tokens,
    )


def _forced_anthropic_tool(body: Mapping[str, Any]) -> tuple[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or not isinstance(choice, dict):
        return None
    by_name = {
        str(t["name"]): t.get("input_schema") or {}
        for t in tools
        if isinstance(t, dict) and "name" in t
    }
    if choice.get("type") == "tool" and choice.get("name") in by_name:
        name = str(choice["name"])
        return name, by_name[name]
    if choice.get("type") == "any" and by_name:
        name = next(iter(by_name))
        return name, by_name[name]
    return None
