"""A deterministic in-process Connector for the synthesis tests.

``FakeConnector`` meets :class:`providers.protocol.Connector`. It answers
from the response model's fields (prompt-aware for the ``cluster`` and
``synthesize`` steps, so answers line up with what was asked), counts calls
and records their tasks. In batch mode it holds every call until the event
loop has been idle for a while (its "linger"), then answers all held calls
at once and records that as one round, so a test can count how many batch
rounds a workload took. The ``connector`` fixture is the one place to swap
in another connector.

``real_pipeline`` runs the pipeline on the real connector instead (provider,
strategies and SQLite store) against an in-process emulator of the test's
own, and reads back what the run left in the store: its batch shards and
its ledger.
"""

from __future__ import annotations

import asyncio
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

import orjson
import pytest
from pydantic import BaseModel

from providers.protocol import Prompt
from providers.types import Request, Response, Usage

M = TypeVar("M", bound=BaseModel)

Answer = Callable[["Call"], BaseModel | None]

_NUMBERED = re.compile(r"^(\d+)\.", re.MULTILINE)


@dataclass
class Call:
    """One structured call as the fake saw it."""

    prompt: str
    response_model: type[BaseModel]
    task: str | None
    model: str | None
    opts: dict[str, Any]

    def numbered(self) -> int:
        """How many numbered items (``"3. ..."``) the prompt lists."""
        return len(_NUMBERED.findall(self.prompt))


@dataclass
class FakeConnector:
    """A Connector answering from response models, with batch-round accounting.

    Attributes:
        answers: per-task functions returning an answer (or ``None`` to fall
            back to the default one).
        fail: per-task exceptions to raise instead of answering.
        idle_iterations: loop iterations without a new call before a
            batch round is answered.
    """

    answers: dict[str, Answer] = field(default_factory=dict)
    fail: dict[str, Exception] = field(default_factory=dict)
    idle_iterations: int = 20
    calls: list[Call] = field(default_factory=list)
    rounds: list[int] = field(default_factory=list)
    execute_calls: int = 0
    _batch: bool = False
    _pending: list[tuple[Call, asyncio.Future[BaseModel]]] = field(default_factory=list)
    _linger: asyncio.Task[None] | None = None

    # -- the protocol

    async def structured(
        self,
        prompt: Prompt,
        response_model: type[M],
        *,
        task: str | None = None,
        model: str | None = None,
        **opts: Any,
    ) -> M:
        text = prompt if isinstance(prompt, str) else "\n".join(m.content for m in prompt)
        call = Call(text, response_model, task, model, dict(opts))
        self.calls.append(call)
        if not self._batch:
            await asyncio.sleep(0)
            return self._answer(call)  # type: ignore[return-value]
        future: asyncio.Future[BaseModel] = asyncio.get_running_loop().create_future()
        self._pending.append((call, future))
        if self._linger is None or self._linger.done():
            self._linger = asyncio.create_task(self._wait_idle())
        return await future  # type: ignore[return-value]

    async def generate(self, request: Request, *, mode: str | None = None) -> Response:
        assert request.response_model is not None
        output = await self.structured(
            list(request.messages), request.response_model, task=request.task
        )
        return Response(
            output=output,
            text=output.model_dump_json(),
            usage=Usage(),
            cost_usd=0.0,
            provider="fake",
            model=request.model,
            mode="batch" if self._batch else "immediate",
            key=request.key,
        )

    def enable_batch_mode(self) -> None:
        self._batch = True

    def disable_batch_mode(self) -> None:
        self._batch = False

    async def execute_batch(self) -> None:
        self.execute_calls += 1
        self._flush()
        await asyncio.sleep(0)

    @property
    def batch_mode(self) -> bool:
        return self._batch

    # -- accounting

    def tasks(self) -> list[str | None]:
        """The task of every call, in call order."""
        return [c.task for c in self.calls]

    def count(self, task: str) -> int:
        """How many calls had ``task``."""
        return sum(1 for c in self.calls if c.task == task)

    # -- internals

    async def _wait_idle(self) -> None:
        seen = -1
        idle = 0
        while idle < self.idle_iterations:
            await asyncio.sleep(0)
            if len(self._pending) == seen:
                idle += 1
            else:
                seen = len(self._pending)
                idle = 0
        self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        self.rounds.append(len(pending))
        for call, future in pending:
            if future.done():
                continue
            try:
                future.set_result(self._answer(call))
            except Exception as exc:
                future.set_exception(exc)

    def _answer(self, call: Call) -> BaseModel:
        if call.task in self.fail:
            raise self.fail[call.task]
        custom = self.answers.get(call.task or "")
        if custom is not None:
            answer = custom(call)
            if answer is not None:
                return call.response_model.model_validate(answer.model_dump())
        return default_answer(call)


def default_answer(call: Call) -> BaseModel:
    """A deterministic answer fitting ``call``'s response model and prompt."""
    if call.task == "cluster":
        n = call.numbered()
        groups = [list(range(i, min(i + 2, n + 1))) for i in range(1, n + 1, 2)]
        return call.response_model.model_validate(
            {"meanings": [{"pos": "noun", "ids": ids} for ids in groups]}
        )
    if call.task == "synthesize":
        n = call.numbered()
        return call.response_model.model_validate(
            {
                "definitions": [
                    {"meaning": i, "text": f"modern sense {i} of the word"} for i in range(1, n + 1)
                ]
            }
        )
    return call.response_model.model_validate(fill(call.response_model, call.task or "x"))


def fill(model: type[BaseModel], tag: str) -> dict[str, Any]:
    """Values for every field of ``model``, derived from field names and ``tag``."""
    return {name: _value(f.annotation, f"{tag}-{name}") for name, f in model.model_fields.items()}


def _value(annotation: Any, tag: str, index: int = 1) -> Any:
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _value(get_args(annotation)[0], tag, index)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return _value(options[0], tag, index)
    if origin is Literal:
        return get_args(annotation)[0]
    if origin is list:
        (item,) = get_args(annotation)
        return [_value(item, tag, i) for i in (1, 2)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {
            name: _value(f.annotation, f"{tag}-{name}", index)
            for name, f in annotation.model_fields.items()
        }
    if annotation is int:
        return index
    if annotation is bool:
        return False
    if annotation is float:
        return 0.5
    return f"{tag}-{index}"


@pytest.fixture
def make_connector() -> type[FakeConnector]:
    """The connector class, for tests that configure answers or failures."""
    return FakeConnector


@pytest.fixture
def connector(make_connector: type[FakeConnector]) -> FakeConnector:
    """The connector the synthesis tests run against."""
    return make_connector()


@pytest.fixture(scope="session")
def gcide() -> Any:
    """One GCIDE source for the session (its letter files load once)."""
    from synthesis.sources import GcideSource

    return GcideSource()


# --------------------------------------------------------------------------- the real connector


_WORD_LINE = re.compile(
    r'^Word: (.+?)(?: \(.*\))?$|(?:definitions? of|word) "([^"]+)"', re.MULTILINE
)


def word_of_prompt(prompt: str) -> str:
    """The headword a pipeline prompt is about."""
    found = _WORD_LINE.search(prompt)
    assert found is not None, prompt[:200]
    return found.group(1) or found.group(2)


@dataclass
class RealPipeline:
    """Runs the pipeline on a real connector (provider, strategies, store) against an emulator.

    Each ``db`` name is a store of its own in the test's folder, so runs that
    must not share a cache use different names.
    """

    emulator: Any
    make_settings: Callable[..., Any]
    folder: Any
    sources: Any

    def settings(self, db: str = "store.db", **sections: Any) -> Any:
        """Settings of the openai provider against the emulator, with store ``db``."""
        connector = {"db": str(self.folder / db), **sections.pop("connector", {})}
        return self.make_settings(self.emulator, connector=connector, **sections)

    async def run(
        self,
        words: list[str],
        *,
        batch: bool,
        components: tuple[str, ...],
        db: str = "store.db",
        **kwargs: Any,
    ) -> list[Any]:
        """The entries of ``words``, through a connector opened and closed for this run."""
        from plugins.factory import open_connector
        from synthesis.pipeline import synthesize_many

        connector = open_connector(self.settings(db))
        try:
            return await synthesize_many(
                words,
                connector,
                components=components,
                sources=self.sources,
                batch_mode=batch,
                **kwargs,
            )
        finally:
            await connector.aclose()

    def store(self, db: str = "store.db") -> Any:
        """The store ``db``, opened for reading what a run left in it."""
        from plugins.store import Store

        return Store(self.folder / db)

    def rounds(self, db: str = "store.db") -> list[list[str]]:
        """Per batch shard, oldest first, the headword of each request it held.

        Read from the batch input file the provider was sent (kept by the
        emulator: the journal keeps no body once a request succeeded).
        """
        store = self.store(db)
        try:
            shards = store.shards()
        finally:
            store.close()
        files = self.emulator.app.state.files
        out = []
        for shard in shards:
            words = []
            for line in files[shard.input_file_id].content().splitlines():
                messages = orjson.loads(line)["body"]["messages"]
                words.append(word_of_prompt("\n".join(m["content"] for m in messages)))
            out.append(words)
        return out

    def ledger(self, db: str = "store.db") -> list[Any]:
        """The cost report of store ``db``."""
        store = self.store(db)
        try:
            return list(store.cost_report())
        finally:
            store.close()


@pytest.fixture
def real_pipeline(
    fresh_emulator: Any,
    make_settings: Any,
    tmp_path: Any,
    gcide: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The pipeline on the real connector against an emulator of the test's own.

    The emulator keeps every batch input file after lexibatch deletes it, for
    :meth:`RealPipeline.rounds` to read.
    """
    monkeypatch.setattr(fresh_emulator.app.state, "delete_file", lambda file_id: True)
    return RealPipeline(fresh_emulator, make_settings, tmp_path, gcide)
