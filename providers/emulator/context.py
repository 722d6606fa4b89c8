"""Prompts longer than a model's context window, refused as the real APIs refuse them.

OpenAI answers 400 ``invalid_request_error`` with code
``context_length_exceeded`` and the offending ``param``; Anthropic answers 400
``invalid_request_error`` "prompt is too long: N tokens > M maximum". In a
batch the same error ends that item alone (an error-file line; an
``errored`` result).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from providers.emulator.answers import count_tokens, prompt_chars
from providers.emulator.config import EmulatorConfig, context_window

__all__ = ["anthropic_context_error", "openai_context_error", "over_context"]


def over_context(cfg: EmulatorConfig, body: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(prompt tokens, window)`` when ``body``'s prompt does not fit its model."""
    model = body.get("model")
    window = context_window(cfg, model if isinstance(model, str) else "")
    tokens = count_tokens(prompt_chars(body))
    return (tokens, window) if tokens > window else None


def openai_context_error(tokens: int, window: int, *, responses: bool) -> dict[str, Any]:
    """The ``error`` object OpenAI answers an over-long prompt with."""
    if responses:
        return {
            "message": "Your input exceeds the context window of this model. Please adjust "
            "your input and try again.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "context_length_exceeded",
        }
    return {
        "message": f"This model's maximum context length is {window} tokens. However, your "
        f"messages resulted in {tokens} tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }


def anthropic_context_error(tokens: int, window: int) -> dict[str, Any]:
    """The inner ``error`` object Anthropic answers an over-long prompt with."""
    return {
        "type": "invalid_request_error",
        "message": f"prompt is too long: {tokens} tokens > {window} maximum",
    }
