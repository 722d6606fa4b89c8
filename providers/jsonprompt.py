"""Asking for an answer in a JSON schema through the prompt, for an API that takes no schema.

Most chat APIs can be told the schema an answer must fit (structured
output: OpenAI's ``response_format``, Anthropic's ``output_config.format``
or a forced tool, Gemini's ``responseSchema``). An API that cannot is asked
in words: its adapter sends :func:`prompted_messages` instead of the
request's own messages. Nothing else changes for the engine, which is why it
does not branch on a provider's ``structured_output`` declaration:

- every answer is validated against the request's schema whichever way it
  was asked for, so one that does not fit is a
  :class:`~providers.errors.SchemaValidationError`, retried as any
  schema-invalid answer is;
- the request's key (and so the cache and the journal) is that of the
  provider-neutral request, the same with or without structured output, so
  an answer stored by one provider answers the same question for another.
"""

from __future__ import annotations

import json

from providers.types import Message, Request

__all__ = ["INSTRUCTION", "prompted_messages"]

#: What the model is told when the API cannot be told the schema.
INSTRUCTION = (
    "Answer with one JSON object that fits this JSON schema, and nothing else "
    "(no prose, no code fence):\n{schema}"
)


def prompted_messages(request: Request) -> tuple[Message, ...]:
    """The request's messages, asking in words for an answer that fits its schema.

    The instruction ends the system message (one is added first when the
    request has none). A request without a schema is returned unchanged.
    """
    if request.json_schema is None:
        return tuple(request.messages)
    schema = json.dumps(request.json_schema, sort_keys=True, separators=(",", ":"))
    text = INSTRUCTION.format(schema=schema)
    messages = list(request.messages)
    if messages and messages[0].role == "system":
        messages[0] = Message("system", f"{messages[0].content}\n\n{text}")
    else:
        messages.insert(0, Message("system", text))
    return tuple(messages)
