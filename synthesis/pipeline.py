"""The synthesis pipeline: source definitions in, dictionary entries out.

Per word::

    look up sources ─ dedupe ─┬─ cluster ──── synthesize ──── enhance definitions ─┐
                              │  (or generate, when no source has the word) ───────┤
                              └─ word-level components ──────────────────────────────┴─ entry

Model calls happen in three rounds, :data:`STAGES`:

1. ``cluster`` — one call grouping the source definitions by meaning (skipped
   when there is a single source definition); for a word no source has, one
   ``generate`` call instead, whose definitions are already one per meaning
   and modern, so they skip round 2. The word-level components
   (pronunciation, etymology, word forms, facts) need no meanings and run in
   this round too.
2. ``synthesize`` — one call per word writing a modern definition for every
   meaning (one call carrying all meanings costs fewer tokens than one per
   meaning: the instructions are sent once).
3. ``enhance`` — one call per selected definition-level component per
   meaning, all at once.

Every call of a round is issued concurrently, and :func:`synthesize_many`
runs many words concurrently, so in batch mode all words' calls of one round
land in the same batches: N words take at most ``len(STAGES)`` batch rounds
(one more only when a model leaves meanings without a definition and is
asked again for those).

Very large runs are bounded by words in flight, not by the word list: in
batch mode at most :data:`DEFAULT_BATCH_IN_FLIGHT` words are in the pipeline
at once (each holds its sources, its requests and its pending answers,
about 125 KB), and a word that finishes makes room for the next one, whose
first calls join the batch being filled at that moment.

Errors: a failed call fails its word (the other calls of that word still run
to the end, so everything the provider answered is kept by the connector's
store, and a re-run pays only for what failed).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import Any

from providers.errors import UserError
from providers.protocol import Connector
from synthesis.calls import ask, batch_scope, both, gather_all
from synthesis.components import (
    ALL_COMPONENTS,
    COMPONENTS,
    Component,
    definition_components,
    word_components,
)
from synthesis.dedup import dedupe_sources
from synthesis.enhance import enhance
from synthesis.models import (
    ClusterResponse,
    Definition,
    DictionaryEntry,
    EntryMetadata,
    GeneratedDefinitionsResponse,
    MeaningCluster,
    Provenance,
    SourceDefinition,
    SynthesizedDefinitionsResponse,
    Word,
)
from synthesis.senses import agreeing_pos, sense_hints
from synthesis.sources import SourceLookup

__all__ = [
    "DEFAULT_BATCH_IN_FLIGHT",
    "DEFAULT_IMMEDIATE_IN_FLIGHT",
    "STAGES",
    "DefinitionSynthesizer",
    "iter_entries",
    "synthesize_many",
]

#: The model-call rounds of the pipeline, in order.
STAGES: tuple[str, ...] = ("cluster", "synthesize", "enhance")

#: Words in flight at once in immediate mode when the caller does not say.
DEFAULT_IMMEDIATE_IN_FLIGHT = 256

#: Words in flight at once in batch mode when the caller does not say: enough
#: that every round fills big batches (the enhance round of 5,000 words is
#: well over 100,000 requests, several full OpenAI batches), few enough that memory
#: stays near 600 MB and the tokens enqueued at the provider stay within the
#: usual organisation limits, however long the word list.
DEFAULT_BATCH_IN_FLIGHT = 5_000

ModelFor = Callable[[str], str | None]


# --------------------------------------------------------------------------- one word


class DefinitionSynthesizer:
    """Builds dictionary entries for words through a connector.

    Args:
        connector: where the model calls go.
        components: the component names to run (default: all).
        sources: where to look words up when :meth:`synthesize_entry` is
            given no source definitions.
        model_for: the model a task is routed to, when the caller knows it;
            recorded in each entry's metadata.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        components: Iterable[str] = ALL_COMPONENTS,
        sources: SourceLookup | None = None,
        model_for: ModelFor | Mapping[str, str] | None = None,
    ) -> None:
        self.connector = connector
        names = set(components)
        unknown = sorted(names - COMPONENTS.keys())
        if unknown:
            raise UserError(f"unknown components: {', '.join(unknown)}")
        self.components: tuple[str, ...] = tuple(n for n in ALL_COMPONENTS if n in names)
        self._definition_components = definition_components(self.components)
        self._word_components = word_components(self.components)
        self.sources = sources
        self._model_for = model_for

    async def synthesize_entry(
        self,
        word: str | Word,
        sources: Sequence[SourceDefinition] | None = None,
        batch_mode: bool = False,
    ) -> DictionaryEntry:
        """Build the entry of ``word``.

        Args:
            word: the headword.
            sources: its source definitions; ``None`` looks it up in the
                synthesizer's sources. When there are none, the model
                defines the word (marked ``generated``).
            batch_mode: route the calls through the batch endpoint for this call.
        """
        text = word.text if isinstance(word, Word) else word
        if sources is None:
            sources = self.sources.lookup(text) if self.sources is not None else []
        with batch_scope(self.connector, batch_mode):
            return await self._entry(text, dedupe_sources(sources))

    async def _entry(self, word: str, sources: list[SourceDefinition]) -> DictionaryEntry:
        entry = DictionaryEntry(word=word)
        warnings: list[str] = []
        definitions, _ = await both(
            self._definitions(word, sources, warnings), self._word_level(entry, sources)
        )
        entry.definitions = definitions
        generated = not sources
        used_sources = dict.fromkeys(s.source for d in definitions for s in d.sources)
        entry.metadata = EntryMetadata(
            components=list(self.components),
            sources=list(used_sources),
            generated=generated,
            models=self._models(generated=generated, clustered=len(sources) > 1),
            warnings=warnings,
        )
        return entry

    async def _definitions(
        self, word: str, sources: list[SourceDefinition], warnings: list[str]
    ) -> list[Definition]:
        if sources:
            clusters = await self._cluster(word, sources, warnings)
            definitions = await self._synthesize(word, clusters, warnings)
        else:
            definitions = await self._generate(word)
        if self._definition_components and definitions:
            await enhance(definitions, word, self.connector, self._definition_components)
        return definitions

    async def _cluster(
        self, word: str, sources: list[SourceDefinition], warnings: list[str]
    ) -> list[MeaningCluster]:
        if len(sources) == 1:
            return [MeaningCluster(part_of_speech=sources[0].part_of_speech, sources=sources)]
        answer = await ask(
            self.connector,
            "cluster.j2",
            ClusterResponse,
            "cluster",
            64 + 16 * len(sources),
            word=word,
            definitions=sources,
        )
        used: set[int] = set()
        clusters: list[MeaningCluster] = []
        for group in answer.meanings:
            members = []
            for number in group.ids:
                index = number - 1
                if 0 <= index < len(sources) and index not in used:
                    used.add(index)
                    members.append(sources[index])
            if members:
                pos = agreeing_pos(group.pos, members)
                clusters.append(MeaningCluster(part_of_speech=pos, sources=members))
        left = [i for i in range(len(sources)) if i not in used]
        if left:
            warnings.append(
                f"cluster: {_count(left, 'source definition')} left ungrouped "
                f"({_numbers([i + 1 for i in left])}); grouped by part of speech"
            )
            # One meaning per part of speech, not one per leftover: a model that
            # groups badly must not multiply the calls the enhance round makes.
            by_pos: dict[str | None, list[SourceDefinition]] = {}
            for i in left:
                by_pos.setdefault(sources[i].part_of_speech, []).append(sources[i])
            clusters.extend(
                MeaningCluster(part_of_speech=pos, sources=members)
                for pos, members in by_pos.items()
            )
        return clusters

    async def _synthesize(
        self, word: str, clusters: list[MeaningCluster], warnings: list[str]
    ) -> list[Definition]:
        texts = await self._ask_synthesis(word, clusters)
        missing = [i for i in range(len(clusters)) if i not in texts]
        if missing and len(missing) < len(clusters):
            # Asking again for just the missing meanings is a different
            # request; asking for all of them again would return the same answer.
            again = await self._ask_synthesis(word, [clusters[i] for i in missing])
            for j, i in enumerate(missing):
                if j in again:
                    texts[i] = again[j]
        definitions = []
        kept_source: list[int] = []
        for i, cluster in enumerate(clusters):
            text = texts.get(i)
            pos = cluster.part_of_speech
            if text is None:
                # A source's own text stands in: one of the meaning's part of
                # speech, and labelled as its source labels it.
                kept = next(
                    (s for s in cluster.sources if s.part_of_speech == pos), cluster.sources[0]
                )
                text = kept.text
                pos = kept.part_of_speech or pos
                kept_source.append(i + 1)
            definitions.append(Definition(part_of_speech=pos, text=text, sources=cluster.sources))
        if kept_source:
            warnings.append(
                f"synthesize: no definition written for {_count(kept_source, 'meaning')} "
                f"({_numbers(kept_source)}); kept the source text"
            )
        return definitions

    async def _ask_synthesis(self, word: str, clusters: list[MeaningCluster]) -> dict[int, str]:
        answer = await ask(
            self.connector,
            "synthesize.j2",
            SynthesizedDefinitionsResponse,
            "synthesize",
            60 + 70 * len(clusters),
            word=word,
            meanings=[
                {"part_of_speech": c.part_of_speech, "texts": [s.text for s in c.sources]}
                for c in clusters
            ],
        )
        texts: dict[int, str] = {}
        for item in answer.definitions:
            index = item.meaning - 1
            if 0 <= index < len(clusters) and item.text and index not in texts:
                texts[index] = item.text
        return texts

    async def _generate(self, word: str) -> list[Definition]:
        answer = await ask(
            self.connector, "generate.j2", GeneratedDefinitionsResponse, "generate", 600, word=word
        )
        definitions = []
        for number, item in enumerate(answer.definitions, 1):
            if not item.text:
                continue
            source = SourceDefinition(
                text=item.text,
                part_of_speech=item.pos,
                source="model",
                provenance=Provenance(dictionary="model", entry=word, sense=str(number)),
                generated=True,
            )
            definitions.append(
                Definition(part_of_speech=item.pos, text=item.text, sources=[source])
            )
        return definitions

    async def _word_level(self, entry: DictionaryEntry, sources: list[SourceDefinition]) -> None:
        if not self._word_components:
            return
        word = entry.word
        parts = list(dict.fromkeys(s.part_of_speech for s in sources if s.part_of_speech))
        hint = None
        etymology = getattr(self.sources, "etymology", None)
        if callable(etymology) and any(c.name == "etymology" for c in self._word_components):
            found = etymology(word)
            hint = found if isinstance(found, str) else None
        context = {
            "word": word,
            "parts_of_speech": parts,
            "senses": sense_hints(sources),
            "hint": hint,
        }

        async def one(component: Component) -> None:
            answer = await ask(
                self.connector,
                component.template,
                component.response_model,
                component.task,
                component.max_tokens,
                **context,
            )
            component.apply(entry, answer)

        await gather_all(one(c) for c in self._word_components)

    def _models(self, *, generated: bool, clustered: bool) -> dict[str, str]:
        if self._model_for is None:
            return {}
        tasks = (
            ["generate"]
            if generated
            else (["cluster", "synthesize"] if clustered else ["synthesize"])
        )
        tasks += list(self.components)
        out: dict[str, str] = {}
        for task in tasks:
            if isinstance(self._model_for, Mapping):
                model = self._model_for.get(task)
            else:
                model = self._model_for(task)
            if model:
                out[task] = model
        return out


def _count(items: Sequence[object], noun: str) -> str:
    return f"1 {noun}" if len(items) == 1 else f"{len(items)} {noun}s"


def _numbers(numbers: Sequence[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, numbers[:limit]))
    return shown + (", ..." if len(numbers) > limit else "")


# --------------------------------------------------------------------------- many words


async def synthesize_many(
    words: Iterable[str | Word],
    connector: Connector,
    *,
    components: Iterable[str] = ALL_COMPONENTS,
    sources: SourceLookup | None = None,
    batch_mode: bool = False,
    on_entry: Callable[[DictionaryEntry], Any] | None = None,
    on_error: Callable[[str, Exception], Any] | None = None,
    model_for: ModelFor | Mapping[str, str] | None = None,
    max_in_flight: int | None = None,
    collect: bool = True,
) -> list[DictionaryEntry]:
    """Build the entries of many words, their pipeline rounds running together.

    Args:
        words: the headwords.
        connector: where the model calls go.
        components: component names to run (default: all).
        sources: where words are looked up.
        batch_mode: batch mode on the connector for the duration (restored after).
        on_entry: called with each entry as its word finishes (in finishing order).
        on_error: called with ``(word, error)`` when a word fails on a
            provider error; without it, the first such error is raised once
            the other words have finished. A :class:`~providers.errors.UserError`
            (bad key, budget, ...) always stops the run at once.
        model_for: task → model, recorded in entries' metadata.
        max_in_flight: how many words run at once; by default
            :data:`DEFAULT_BATCH_IN_FLIGHT` in batch mode and
            :data:`DEFAULT_IMMEDIATE_IN_FLIGHT` otherwise. In batch mode this
            trades memory for time: the words in flight share each round's
            batches, so a list of N words takes about
            ``ceil(N / max_in_flight) * len(STAGES)`` batch rounds one after
            the other (each up to the provider's completion window), while
            memory grows with ``max_in_flight`` alone (about 125 KB a word).
            A slot freed by a finished word goes to the next word at once
            (no waiting for the slowest word of a group), so batches stay
            full; raise it when memory allows and fewer, bigger rounds matter
            more.
        collect: return the entries (turn off for very large runs that
            consume them through ``on_entry``).

    Returns:
        The entries of the words that succeeded, in input order (empty when
        ``collect`` is false).
    """
    synthesizer = DefinitionSynthesizer(
        connector, components=components, sources=sources, model_for=model_for
    )
    items = list(words)
    results: list[DictionaryEntry | None] = [None] * len(items) if collect else []
    errors: list[BaseException] = []
    with batch_scope(connector, batch_mode):
        in_flight = max_in_flight or (
            DEFAULT_BATCH_IN_FLIGHT if connector.batch_mode else DEFAULT_IMMEDIATE_IN_FLIGHT
        )
        queue: Iterator[tuple[int, str | Word]] = iter(enumerate(items))

        async def worker() -> None:
            for index, word in queue:
                text = word.text if isinstance(word, Word) else word
                try:
                    entry = await synthesizer.synthesize_entry(word)
                except UserError:
                    raise
                except Exception as exc:
                    if on_error is None:
                        errors.append(exc)
                    else:
                        on_error(text, exc)
                    continue
                if collect:
                    results[index] = entry
                if on_entry is not None:
                    on_entry(entry)

        workers = max(1, min(in_flight, len(items)))
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:
            raise _first_leaf(failed) from None
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


async def iter_entries(
    words: Iterable[str | Word],
    connector: Connector,
    **kwargs: Any,
) -> AsyncIterator[DictionaryEntry]:
    """Like :func:`synthesize_many`, yielding entries as their words finish."""
    queue: asyncio.Queue[DictionaryEntry | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await synthesize_many(
                words, connector, on_entry=queue.put_nowait, collect=False, **kwargs
            )
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(run())
    try:
        while (entry := await queue.get()) is not None:
            yield entry
        await task
    finally:
        if not task.done():
            task.cancel()
