"""``lexibatch serve``: the lookup service, its journaled batch jobs, and its web page.

The app sees only the ``Connector`` protocol and a document store (the CLI,
the composition root, hands it the connector's store and the report
functions). Two routes of the same connector serve it:

* ``POST /lookup/{word}`` synthesizes the entry now (every call immediate)
  and returns it;
* ``POST /lookup/{word}?batch=true`` journals a job and answers 202 at
  once; the job's calls join the shared batch rounds (requests of every
  queued word land in the same provider batches) and ``GET /jobs/{id}``
  follows it to ``done``.

A job is a document (namespace :data:`JOBS`) written before anything is
sent, so a server that is stopped or killed finishes its unfinished jobs when
it starts again: their calls that were answered come from the store's cache,
and those in a batch already submitted wait for that batch, so nothing is
paid twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi import Request as HttpRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials as Credentials
from fastapi.security import HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from providers.errors import (
    AuthenticationError,
    LexibatchError,
    NotSentError,
    ProviderError,
    StoreBusyError,
    UserError,
)
from providers.protocol import Connector, Prompt
from providers.types import Request, Response
from synthesis.components import ALL_COMPONENTS
from synthesis.entrystore import (
    ENTRIES,
    Listable,
    claim_spelling,
    entry_from_store,
    record_old_entries,
    store_entry,
)
from synthesis.models import DictionaryEntry
from synthesis.pipeline import DefinitionSynthesizer, ModelFor
from synthesis.sources import SourceLookup
from synthesis.wordlist import MAX_WORD_CHARS, clean_word, word_problem

__all__ = [
    "ENTRIES",
    "JOBS",
    "MAX_WORD_CHARS",
    "BadWord",
    "Documents",
    "ErrorBody",
    "JobRunner",
    "JobView",
    "LookupAnswer",
    "ModeConnector",
    "Queued",
    "ServeContext",
    "check_word",
    "create_app",
]

log = logging.getLogger("lexibatch.serve")

#: The document namespace of the server's batch jobs: the journal a restart resumes.
JOBS = "serve-jobs"

JobStatus = Literal["queued", "running", "done", "failed"]
_UNFINISHED = ("queued", "running")

M = TypeVar("M", bound=BaseModel)


class Documents(Listable, Protocol):
    """The part of the store the server uses: JSON documents by namespace and key.

    What a word list's run uses (:class:`synthesis.entrystore.Listable`), for
    entries, spellings and the server's jobs alike.
    """


class ModeConnector:
    """A view of a connector whose every call goes one way: ``"immediate"`` or ``"batch"``.

    The server answers immediate lookups and batch jobs at the same time
    through one connector (one cache, one journal, one set of batches); the
    mode is carried by each call instead of the connector's shared switch.
    """

    def __init__(self, inner: Connector, mode: Literal["immediate", "batch"]) -> None:
        self.inner = inner
        self.mode = mode

    async def structured(
        self,
        prompt: Prompt,
        response_model: type[M],
        *,
        task: str | None = None,
        model: str | None = None,
        **opts: Any,
    ) -> M:
        """The inner connector's answer, asked in this view's mode."""
        opts["mode"] = self.mode
        return await self.inner.structured(prompt, response_model, task=task, model=model, **opts)

    async def generate(self, request: Request, *, mode: str | None = None) -> Response:
        """The inner connector's response, asked in this view's mode."""
        return await self.inner.generate(request, mode=self.mode)

    def enable_batch_mode(self) -> None:
        """Nothing: the view's mode is fixed."""

    def disable_batch_mode(self) -> None:
        """Nothing: the view's mode is fixed."""

    async def execute_batch(self) -> None:
        """Dispatch what is pending now (every view shares the inner connector's batches)."""
        await self.inner.execute_batch()

    @property
    def batch_mode(self) -> bool:
        """Whether this view's calls go through the batch endpoint."""
        return self.mode == "batch"


@dataclass
class ServeContext:
    """What the app is built from (the CLI assembles it).

    Attributes:
        connector: where the model calls go.
        documents: where entries and jobs are kept (the connector's store).
        sources: where words are looked up.
        components: the components every entry gets.
        model_for: task → model, recorded in entries' metadata.
        has_batch: whether the provider has a batch endpoint (else ``?batch=true`` is refused).
        batches: what ``lexibatch batches list --json`` reports.
        cost: what ``lexibatch cost --json`` reports.
        token: the bearer token the POST routes require (``None``: open).
        notice: a line every page and entry response carries (the sandbox's warning).
        release_batches: let the store's batch runs go while no job is under
            way (``LexiConnector.release_batches``), so that another process
            may run them; ``None``: held while the server runs.
    """

    connector: Connector
    documents: Documents
    sources: SourceLookup | None = None
    components: tuple[str, ...] = ALL_COMPONENTS
    model_for: ModelFor | Mapping[str, str] | None = None
    has_batch: bool = True
    batches: Callable[[], Any] = list
    cost: Callable[[], Any] = dict
    token: str | None = None
    notice: str | None = None
    release_batches: Callable[[], Awaitable[bool]] | None = None
    _synthesizers: dict[str, DefinitionSynthesizer] = field(default_factory=dict, repr=False)

    def synthesizer(self, mode: Literal["immediate", "batch"]) -> DefinitionSynthesizer:
        """The synthesizer whose calls all go ``mode``."""
        found = self._synthesizers.get(mode)
        if found is None:
            found = DefinitionSynthesizer(
                ModeConnector(self.connector, mode),
                components=self.components,
                sources=self.sources,
                model_for=self.model_for,
            )
            self._synthesizers[mode] = found
        return found


class BadWord(ValueError):
    """A word the server refuses to look up; the message says why."""


def check_word(raw: str) -> str:
    """``raw`` cleaned as a word list line is, or :class:`BadWord`.

    Refused: nothing left after cleaning, more than :data:`MAX_WORD_CHARS`
    characters, or no letter at all.
    """
    word = clean_word(raw)
    problem = word_problem(word)
    if problem is not None:
        raise BadWord(problem)
    return word


class JobView(BaseModel):
    """A batch lookup as ``GET /jobs/{id}`` reports it."""

    job: str
    word: str
    status: JobStatus
    url: str
    created_at: float
    updated_at: float
    error: str | None = None
    entry: DictionaryEntry | None = None
    notice: str | None = None


class Queued(BaseModel):
    """The answer to a batch lookup: the job to follow."""

    job: str
    status: Literal["queued"] = "queued"
    url: str


class ErrorBody(BaseModel):
    """Every error the server answers: one line."""

    error: str


class LookupAnswer(BaseModel):
    """An entry, and the notice that goes with it (the sandbox's warning), if any."""

    entry: DictionaryEntry
    notice: str | None = None


#: Seconds a batch job waits before asking again for the store's batches
#: another process runs.
BUSY_STORE_WAIT = 10.0


class JobRunner:
    """Runs batch jobs: journals each before its first call, resumes the unfinished on start."""

    def __init__(self, context: ServeContext) -> None:
        self.context = context
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def documents(self) -> Documents:
        return self.context.documents

    def submit(self, word: str) -> dict[str, Any]:
        """Journal a job for ``word`` and start it; returns the job document."""
        now = time.time()
        job: dict[str, Any] = {
            "job": uuid.uuid4().hex,
            "word": word,
            "status": "queued",
            "created_at": now,
            "updated_at": now,
            "error": None,
        }
        # Journaled before anything is sent: a restart finds it.
        self.documents.put_document(JOBS, job["job"], job)
        self._start(job)
        return job

    def resume(self) -> int:
        """Start every journaled job that has not finished; returns how many."""
        unfinished = [
            job for _, job in self.documents.iter_documents(JOBS) if job["status"] in _UNFINISHED
        ]
        unfinished.sort(key=lambda j: j["created_at"])
        for job in unfinished:
            self._start(job)
        if unfinished:
            log.info("resuming %d unfinished lookup jobs", len(unfinished))
        return len(unfinished)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job document, if there is one."""
        return self.documents.get_document(JOBS, job_id)

    def _start(self, job: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(dict(job)))
        self._tasks[job["job"]] = task
        task.add_done_callback(lambda _: self._tasks.pop(job["job"], None))

    def _update(self, job: dict[str, Any], **fields: Any) -> None:
        job.update(fields, updated_at=time.time())
        self.documents.put_document(JOBS, job["job"], job)

    async def _run(self, job: dict[str, Any]) -> None:
        try:
            await self._look_up(job)
        finally:
            release = self.context.release_batches
            if release is not None and len(self._tasks) <= 1:
                # The last job under way: between jobs another process may run
                # the store's batches (a batch synthesize, a second server).
                await release()

    async def _look_up(self, job: dict[str, Any]) -> None:
        """Synthesize the job's word through the batch rounds and record how it ended."""
        if job["status"] != "running":
            self._update(job, status="running")
        synthesizer = self.context.synthesizer("batch")
        waits = 0
        while True:
            try:
                entry = await synthesizer.synthesize_entry(job["word"])
            except StoreBusyError:
                # Another process runs this store's batches (or this server is letting
                # them go between jobs): the job waits its turn, journaled, rather than
                # fail for something that ends. Soon asked again at first, then every
                # BUSY_STORE_WAIT seconds.
                if job["status"] != "queued":
                    self._update(job, status="queued")
                    log.info("lookup job %s waits for the store's batches", job["job"])
                await asyncio.sleep(min(BUSY_STORE_WAIT, 0.5 * 2**waits))
                waits += 1
                continue
            except NotSentError:
                # The server is stopping: the job stays journaled, and resumes on the next start.
                return
            except (LexibatchError, UserError) as exc:
                # UserError too: a bad key or an exhausted budget fails the job, not the server.
                self._update(job, status="failed", error=str(exc) or type(exc).__name__)
                return
            except Exception as exc:
                # Not the provider's doing: said in the log in full, and the job ends all the same.
                log.exception("lookup job %s (%s) failed", job["job"], job["word"])
                self._update(job, status="failed", error=f"internal error: {type(exc).__name__}")
                return
            break
        store_entry(entry, self.documents)
        self._update(job, status="done", error=None)

    async def aclose(self) -> None:
        """Stop the running jobs; they stay journaled and resume on the next start."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


_bearer = HTTPBearer(auto_error=False, description="The server's token, when it has one.")


def _page() -> str:
    return files("synthesis.web").joinpath("index.html").read_text(encoding="utf-8")


def create_app(context: ServeContext) -> FastAPI:
    """The FastAPI app of ``lexibatch serve`` over ``context``."""
    runner = JobRunner(context)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Entries of an older store keep their headword for lookups in other capitals.
        record_old_entries(context.documents)
        runner.resume()
        try:
            yield
        finally:
            await runner.aclose()

    app = FastAPI(
        title="lexibatch",
        summary="Dictionary entries, synthesized now or in shared provider batches.",
        version="1",
        lifespan=lifespan,
    )
    app.state.runner = runner

    def guard(credentials: Annotated[Credentials | None, Depends(_bearer)]) -> None:
        """Refuse a POST without the server's token, when it has one."""
        if context.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), context.token.encode()):
            raise HTTPException(
                401,
                "a valid bearer token is required (Authorization: Bearer TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def word_of(raw: str) -> str:
        try:
            return check_word(raw)
        except BadWord as exc:
            raise HTTPException(422, str(exc)) from None

    def job_view(job: dict[str, Any]) -> JobView:
        entry = None
        if job["status"] == "done":
            stored = context.documents.get_document(ENTRIES, job["word"])
            entry = DictionaryEntry.model_validate(stored) if stored is not None else None
        return JobView(
            job=job["job"],
            word=job["word"],
            status=job["status"],
            url=f"/jobs/{job['job']}",
            created_at=job["created_at"],
            updated_at=job["updated_at"],
            error=job.get("error"),
            entry=entry,
            notice=context.notice,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: HttpRequest, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: HttpRequest, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()
        ]
        return JSONResponse({"error": "; ".join(problems) or "invalid request"}, status_code=422)

    @app.exception_handler(LexibatchError)
    async def provider_error(request: HttpRequest, exc: LexibatchError) -> JSONResponse:
        # Never the client's doing (the word was checked): what the provider did is
        # a bad gateway; the server's own set-up (a missing or refused key, the
        # budget) or its stopping, unavailable.
        own = not isinstance(exc, ProviderError) or isinstance(exc, AuthenticationError)
        status = 503 if own else 502
        return JSONResponse({"error": str(exc) or type(exc).__name__}, status_code=status)

    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
        422: {"model": ErrorBody, "description": "not a word"},
    }

    @app.api_route(
        "/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False
    )
    async def page() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.post(
        "/lookup/{word:path}",
        response_model=LookupAnswer | Queued,
        status_code=200,
        dependencies=[Depends(guard)],
        responses={
            202: {"model": Queued, "description": "queued into the shared batch rounds"},
            409: {"model": ErrorBody, "description": "the provider has no batch endpoint"},
            502: {"model": ErrorBody, "description": "the provider failed"},
            503: {
                "model": ErrorBody,
                "description": "the server's set-up refused (key, budget), or it is stopping",
            },
            **errors,
        },
    )
    async def lookup(
        word: str,
        batch: Annotated[
            bool, Query(description="Queue into the batch rounds (answers 202).")
        ] = False,
    ) -> Any:
        """Synthesize the entry of ``word`` now, or queue it for the batch rounds.

        A word is one word in any capitals: asked as "Lantern" after "lantern",
        it is answered under the spelling first asked, from the calls already made.
        """
        text = word_of(word)
        if batch and not context.has_batch:
            raise HTTPException(
                409, "the provider has no batch endpoint: look the word up without ?batch=true"
            )
        # Before the word's first call: a later lookup in other capitals finds it.
        text = claim_spelling(text, context.documents)
        if batch:
            job = runner.submit(text)
            queued = Queued(job=job["job"], url=f"/jobs/{job['job']}")
            return JSONResponse(queued.model_dump(), status_code=202)
        entry = await context.synthesizer("immediate").synthesize_entry(text)
        store_entry(entry, context.documents)
        return LookupAnswer(entry=entry, notice=context.notice)

    @app.get(
        "/jobs/{job_id}",
        response_model=JobView,
        responses={404: {"model": ErrorBody, "description": "no such job"}},
    )
    async def job(job_id: str) -> JobView:
        """A batch lookup: ``queued``, ``running``, ``done`` (with its entry) or ``failed``."""
        found = runner.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job_view(found)

    @app.get(
        "/entries/{word:path}",
        response_model=LookupAnswer,
        responses={404: {"model": ErrorBody, "description": "no entry stored"}, **errors},
    )
    async def entry(word: str) -> LookupAnswer:
        """The stored entry of ``word``, as a lookup or ``lexibatch synthesize`` made it."""
        text = word_of(word)
        found = entry_from_store(text, context.documents)
        if found is None:
            raise HTTPException(404, f"no entry for {text!r} (look it up with POST /lookup/WORD)")
        return LookupAnswer(entry=found, notice=context.notice)

    @app.get("/batches", responses={200: {"description": "the journaled batches"}})
    async def batches() -> Any:
        """The journaled batches, as ``lexibatch batches list --json`` reports them
        (without the paths of their files on the server's machine)."""
        report = context.batches()
        for batch in report.get("batches", []) if isinstance(report, dict) else []:
            batch.pop("path", None)
        return report

    @app.get("/cost", responses={200: {"description": "what was spent"}})
    async def cost() -> Any:
        """What was spent, as ``lexibatch cost --json`` reports it."""
        return context.cost()

    return app
