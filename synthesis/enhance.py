"""The enhance round: every selected definition-level component of every meaning at once."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from providers.protocol import Connector
from synthesis.calls import ask, batch_scope, gather_all
from synthesis.components import DEFINITION_COMPONENTS, Component, definition_components
from synthesis.dedup import assign_exclusive
from synthesis.models import Definition, Word

__all__ = ["enhance", "enhance_definitions_parallel"]


async def enhance(
    definitions: Sequence[Definition],
    word: str,
    connector: Connector,
    components: Sequence[Component],
) -> None:
    """Apply each of ``components`` to each of ``definitions`` (in place), all calls at once."""

    async def one(definition: Definition, component: Component) -> None:
        answer = await ask(
            connector,
            component.template,
            component.response_model,
            component.task,
            component.max_tokens,
            word=word,
            pos=definition.part_of_speech or "",
            definition=definition.text,
        )
        component.apply(definition, answer)

    await gather_all(one(d, c) for d in definitions for c in components)
    names = {c.name for c in components}
    for field in ("synonyms", "antonyms"):
        if field in names:
            assign_exclusive(definitions, field, word)


async def enhance_definitions_parallel(
    definitions: Sequence[Definition],
    word: str | Word,
    connector: Connector,
    components: Iterable[str] = DEFINITION_COMPONENTS,
    batch_mode: bool = False,
) -> list[Definition]:
    """Enhance every definition with every selected definition-level component.

    All calls (definitions times components) are issued at once. Word-level
    names in ``components`` are ignored here. A synonym or antonym is kept
    only on the definition where it fits best (see :mod:`synthesis.dedup`).

    Args:
        definitions: the meanings to enhance; they are not modified.
        word: the headword.
        connector: where the calls go.
        components: component names (default: every definition-level one).
        batch_mode: route the calls through the batch endpoint for this call.

    Returns:
        Enhanced copies of ``definitions``, in the same order.
    """
    text = word.text if isinstance(word, Word) else word
    copies = [d.model_copy() for d in definitions]
    with batch_scope(connector, batch_mode):
        await enhance(copies, text, connector, definition_components(components))
    return copies
