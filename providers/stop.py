"""Why a model stopped, in one provider-neutral vocabulary.

Each API names its stop reasons its own way: OpenAI chat completions say
``stop`` / ``length`` / ``content_filter`` / ``tool_calls``; the Responses API
says ``completed``, or ``incomplete`` with a reason (``max_output_tokens``,
``content_filter``); Anthropic says ``end_turn`` / ``max_tokens`` /
``stop_sequence`` / ``tool_use`` / ``refusal`` / ``pause_turn`` /
``model_context_window_exceeded``; Gemini ``STOP`` / ``MAX_TOKENS`` /
``SAFETY`` / ...; Mistral ``stop`` / ``length`` / ``model_length``.
:func:`normalize_stop` maps every one of them onto :class:`StopReason`; the
raw value is kept beside it wherever it is shown.
"""

from __future__ import annotations

import enum

__all__ = ["StopReason", "normalize_stop"]


class StopReason(enum.StrEnum):
    """Provider-neutral reason a model stopped generating."""

    #: The answer is complete.
    END = "end"
    #: The answer was cut at the output-token limit (``max_tokens``).
    MAX_TOKENS = "max_tokens"
    #: A stop sequence of the request was produced.
    STOP_SEQUENCE = "stop_sequence"
    #: The model called a tool (the answer is the tool's input).
    TOOL_USE = "tool_use"
    #: The model declined to answer.
    REFUSAL = "refusal"
    #: The provider's content filter withheld (part of) the answer.
    CONTENT_FILTER = "content_filter"
    #: The prompt and the answer filled the model's context window.
    CONTEXT_WINDOW = "context_window"
    #: The provider paused a long turn; it can be continued.
    PAUSE = "pause"
    #: A reason this table does not know (the raw value says which).
    OTHER = "other"

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut short by a token limit."""
        return self in (StopReason.MAX_TOKENS, StopReason.CONTEXT_WINDOW)


_RAW: dict[str, StopReason] = {
    # OpenAI chat completions (and Mistral, LiteLLM)
    "stop": StopReason.END,
    "length": StopReason.MAX_TOKENS,
    "content_filter": StopReason.CONTENT_FILTER,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "model_length": StopReason.CONTEXT_WINDOW,
    # OpenAI Responses API: status, or incomplete_details.reason
    "completed": StopReason.END,
    "max_output_tokens": StopReason.MAX_TOKENS,
    # Anthropic
    "end_turn": StopReason.END,
    "max_tokens": StopReason.MAX_TOKENS,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "tool_use": StopReason.TOOL_USE,
    "refusal": StopReason.REFUSAL,
    "pause_turn": StopReason.PAUSE,
    "model_context_window_exceeded": StopReason.CONTEXT_WINDOW,
    # Gemini (finishReason, upper case)
    "safety": StopReason.CONTENT_FILTER,
    "recitation": StopReason.CONTENT_FILTER,
    "blocklist": StopReason.CONTENT_FILTER,
    "prohibited_content": StopReason.CONTENT_FILTER,
    "spii": StopReason.CONTENT_FILTER,
    "image_safety": StopReason.CONTENT_FILTER,
    "malformed_function_call": StopReason.OTHER,
}


def normalize_stop(raw: str | None) -> StopReason | None:
    """The :class:`StopReason` of a provider's raw stop reason; ``None`` when there is none."""
    if not raw:
        return None
    return _RAW.get(raw.lower(), StopReason.OTHER)
