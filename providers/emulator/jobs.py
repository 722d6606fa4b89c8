"""Working out every item of a batch, off the event loop.

A job parses the batch's input once, decides the batch-level fault, and
renders each item's output line (or error line) as bytes. It runs in a worker
thread right after the batch is created; the batch's status timeline decides
later which of these lines end up in the output, the error file or as
expired / cancelled items. Chat items asking for a JSON schema, the usual
batch, are rendered by :mod:`providers.emulator.chatlines`. Jobs are not
persisted: they are deterministic, so a restarted emulator simply computes
them again.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import accumulate
from typing import Any

import orjson

from providers.emulator import workers
from providers.emulator.answers import (
    Answer,
    anthropic_message,
    canonical,
    chat_completion,
    responses_answer,
)
from providers.emulator.chatlines import ChatLines
from providers.emulator.config import EmulatorConfig, parse_markers
from providers.emulator.context import anthropic_context_error, openai_context_error, over_context
from providers.emulator.ids import Stem, reseed
from providers.emulator.rng import body_seed, roll
from providers.emulator.workers import MIN_CORES_FOR_A_CHILD, gc_paused
from providers.jsonl import dumps_kept

__all__ = ["Job", "anthropic_job", "batch_fault", "openai_job"]

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

OPENAI_ITEM_ERRORS = (
    (
        500,
        {
            "message": "The server had an error processing your request. Sorry about that! "
            "You can retry your request, or contact us through our help center at "
            "help.openai.com if you keep seeing this error.",
            "type": "server_error",
            "param": None,
            "code": None,
        },
    ),
    (
        429,
        {
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        },
    ),
    (
        0,
        {
            "code": "request_timeout",
            "message": "This request timed out before it could be processed.",
        },
    ),
)

ANTHROPIC_ITEM_ERRORS = (
    {"type": "api_error", "message": "Internal server error"},
    {"type": "overloaded_error", "message": "Overloaded"},
)


@dataclass(slots=True)
class Job:
    """Everything a batch will produce, item by item (parallel lists)."""

    model: str = ""
    batch_key: str = ""
    fault: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    custom_ids: list[str] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    in_tokens: list[int] = field(default_factory=list)
    out_tokens: list[int] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)
    ok_before: list[int] | None = None

    @property
    def n(self) -> int:
        """Number of items."""
        return len(self.custom_ids)

    def ran(self, k: int) -> tuple[int, int]:
        """``(completed, failed)`` among the first ``k`` items, the ones a batch runs first."""
        if self.ok_before is None:
            # Answered items before each index, counted once: polls ask again and again.
            self.ok_before = list(accumulate(map(int, self.ok), initial=0))
        k = max(0, min(k, self.n))
        completed = self.ok_before[k]
        return completed, k - completed


def _batch_key(model: str, custom_ids: list[str]) -> str:
    h = blake2b(model.encode(), digest_size=12)
    # One update of the whole text hashes as one update per line would.
    h.update("".join([cid + "\n" for cid in sorted(custom_ids)]).encode())
    return h.hexdigest()


def batch_fault(cfg: EmulatorConfig, model: str, key: str, seen: int) -> str | None:
    """The batch-level fault (``fail``, ``expire``, ``cancel``) a batch gets, if any."""
    markers = parse_markers(model)
    for name, marker, fraction, pattern in (
        ("fail", "fail-batch", cfg.batch_fail, cfg.batch_fail_pattern),
        ("expire", "expire", cfg.batch_expire, cfg.batch_expire_pattern),
        ("cancel", "cancel", cfg.batch_cancel, cfg.batch_cancel_pattern),
    ):
        if markers.wants(marker, seen):
            return name
        if pattern is not None and re.search(pattern, model):
            return name
        if fraction > 0 and roll(cfg.seed, "batch_" + name, key, seen) < fraction:
            return name
    return None


def _item_fault(cfg: EmulatorConfig, model: str, cid: str, seen: int) -> tuple[bool, bool]:
    if "@" not in model and cfg.item_error <= 0 and cfg.schema_invalid <= 0:
        return False, False  # no marker, no fraction: nothing to roll
    markers = parse_markers(model)
    error = markers.wants("item-error", seen) or (
        cfg.item_error > 0 and roll(cfg.seed, "item_error", cid, seen) < cfg.item_error
    )
    invalid = markers.wants("schema-invalid", seen) or (
        cfg.schema_invalid > 0 and roll(cfg.seed, "schema_invalid", cid, seen) < cfg.schema_invalid
    )
    return error, invalid


Builder = Callable[..., Answer]


_FORK_AT = 20_000  # items; below this a second process costs more than it saves
#: Cores the emulator may use (see :mod:`providers.emulator.workers`).
_CORES = workers.CORES


def _fork(cfg: EmulatorConfig) -> bool:
    """Whether a large job is split with a forked child (asked for, and a core free for it)."""
    return cfg.parallel and _CORES >= MIN_CORES_FOR_A_CHILD


def openai_job(
    data: bytes,
    endpoint: str,
    cfg: EmulatorConfig,
    seen_items: Mapping[str, int],
    seen_batches: Mapping[str, int],
) -> Job:
    """Parse and answer an OpenAI batch input file (JSONL of ``{custom_id, method, url, body}``).

    A large file is split in two at a line boundary and the second half is
    answered in a forked child process, so both cores work on it.
    """
    with gc_paused():
        mid = data.find(b"\n", len(data) // 2) + 1
        child = None
        if _fork(cfg) and mid > 0 and data.count(b"\n", 0, mid) >= _FORK_AT // 2:
            offset = data.count(b"\n", 0, mid)
            child = _in_child(
                lambda: _openai_part(data[mid:], endpoint, cfg, seen_items, offset, offset)
            )
        if child is None:
            job = _openai_part(data, endpoint, cfg, seen_items, 0, 0)
        else:
            job = _openai_part(data[:mid], endpoint, cfg, seen_items, 0, 0)
            rest = child()
            if rest is None:
                rest = _openai_part(data[mid:], endpoint, cfg, seen_items, offset, offset)
            _merge(job, rest)
        return _openai_verdict(job, cfg, seen_batches)


def _openai_verdict(job: Job, cfg: EmulatorConfig, seen_batches: Mapping[str, int]) -> Job:
    n = job.n
    if cfg.openai_max_requests is not None and n > cfg.openai_max_requests:
        job.errors.append(
            {
                "code": "too_many_requests",
                "message": f"The batch input file has {n} requests, more than the "
                f"{cfg.openai_max_requests} allowed per batch.",
                "param": None,
                "line": None,
            }
        )
    if n == 0 and not job.errors:
        job.errors.append(
            {
                "code": "empty_file",
                "message": "The batch input file is empty.",
                "param": None,
                "line": None,
            }
        )
    if job.errors:
        job.fault = "fail"
        return job
    _decide_batch(job, cfg, seen_batches)
    return job


def _merge(job: Job, rest: Job) -> None:
    """Append the items of ``rest`` (the later half) to ``job``."""
    dups = set(job.custom_ids).intersection(rest.custom_ids)
    job.errors.extend(rest.errors)
    for cid in sorted(dups):
        job.errors.append(
            {
                "code": "duplicate_custom_id",
                "message": f"The custom_id for this request ({cid}) is a duplicate of another "
                "request. The custom_id parameter must be unique for each request in a batch.",
                "param": "custom_id",
                "line": None,
            }
        )
    if not job.model:
        job.model = rest.model
    for name in ("custom_ids", "ok", "lines", "in_tokens", "out_tokens", "seen"):
        getattr(job, name).extend(getattr(rest, name))


def _openai_part(
    data: bytes,
    endpoint: str,
    cfg: EmulatorConfig,
    seen_items: Mapping[str, int],
    line_offset: int,
    index_offset: int,
) -> Job:
    job = Job()
    answer = _Answerer(
        job,
        cfg,
        seen_items,
        responses_answer if endpoint == "/v1/responses" else chat_completion,
        True,
        index_offset,
    )
    seen_ids: set[str] = set()
    loads = orjson.loads
    for lineno, raw in enumerate(data.split(b"\n"), line_offset + 1):
        if not raw or raw.isspace():
            continue
        problem: tuple[str, str, str | None] | None = None
        try:
            obj = loads(raw)
        except orjson.JSONDecodeError:
            obj = None
            problem = ("invalid_json_line", "This line is not parseable as valid JSON.", None)
        if problem is None:
            if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str):
                problem = ("missing_required_parameter", "Missing required parameter.", "custom_id")
            elif obj.get("method") != "POST":
                problem = ("invalid_value", "The method must be 'POST'.", "method")
            elif obj.get("url") != endpoint:
                problem = (
                    "mismatched_endpoint",
                    f"The url provided for this request does not match the batch endpoint "
                    f"'{endpoint}'.",
                    "url",
                )
            elif not isinstance(obj.get("body"), dict):
                problem = ("missing_required_parameter", "Missing required parameter.", "body")
            elif obj["custom_id"] in seen_ids:
                problem = (
                    "duplicate_custom_id",
                    "The custom_id for this request is a duplicate of another request. The "
                    "custom_id parameter must be unique for each request in a batch.",
                    "custom_id",
                )
        if problem is not None:
            if len(job.errors) < 100:
                code, message, param = problem
                job.errors.append(
                    {"code": code, "message": message, "param": param, "line": lineno}
                )
            continue
        assert isinstance(obj, dict)
        cid = obj["custom_id"]
        seen_ids.add(cid)
        if not job.errors:
            answer(cid, obj["body"])
    return job


def anthropic_job(
    requests: list[dict[str, Any]],
    cfg: EmulatorConfig,
    seen_items: Mapping[str, int],
    seen_batches: Mapping[str, int],
) -> Job:
    """Answer the (already validated) inline requests of an Anthropic message batch."""
    with gc_paused():
        mid = len(requests) // 2
        child = None
        if _fork(cfg) and len(requests) >= _FORK_AT:
            child = _in_child(lambda: _anthropic_part(requests[mid:], cfg, seen_items, mid))
        if child is None:
            job = _anthropic_part(requests, cfg, seen_items, 0)
        else:
            job = _anthropic_part(requests[:mid], cfg, seen_items, 0)
            rest = child() or _anthropic_part(requests[mid:], cfg, seen_items, mid)
            _merge(job, rest)
        _decide_batch(job, cfg, seen_batches)
        if job.fault == "fail":
            err = {
                "type": "invalid_request_error",
                "message": f"synthetic batch failure for model {job.model} (emulator fault)",
            }
            for i, cid in enumerate(job.custom_ids):
                job.ok[i] = False
                job.in_tokens[i] = job.out_tokens[i] = 0
                job.lines[i] = dumps_kept(
                    {
                        "custom_id": cid,
                        "result": {"type": "errored", "error": {"type": "error", "error": err}},
                    }
                )
        return job


def _anthropic_part(
    requests: list[dict[str, Any]],
    cfg: EmulatorConfig,
    seen_items: Mapping[str, int],
    index_offset: int,
) -> Job:
    job = Job()
    answer = _Answerer(job, cfg, seen_items, anthropic_message, False, index_offset)
    for r in requests:
        answer(r["custom_id"], r["params"])
    return job


def _in_child(work: Callable[[], Job]) -> Callable[[], Job | None] | None:
    """Run ``work`` in a forked child; the returned function waits for its job (``None`` if lost).

    The child touches nothing but the job's own data (no locks, no sockets),
    which is what makes forking from a threaded process safe here.
    """
    if not hasattr(os, "fork"):
        return None
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            reseed()
            job = work()
            fields = (job.model, job.errors, job.custom_ids, job.ok, job.lines)
            payload = pickle.dumps((*fields, job.in_tokens, job.out_tokens, job.seen), protocol=5)
            with os.fdopen(w, "wb") as fh:
                fh.write(payload)
            code = 0
        finally:
            os._exit(code)
    os.close(w)

    def wait() -> Job | None:
        with os.fdopen(r, "rb") as fh:
            payload = fh.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not payload:
            return None
        model, errors, cids, ok, lines, in_tok, out_tok, seen = pickle.loads(payload)
        return Job(model, "", None, errors, cids, ok, lines, in_tok, out_tok, seen)

    return wait


def validate_anthropic(requests: Any, limit: int | None) -> str | None:
    """Why an Anthropic batch create body is refused (``None`` if it is fine)."""
    if not isinstance(requests, list) or not requests:
        return "requests: Field required and must be a non-empty list"
    if limit is not None and len(requests) > limit:
        return f"requests: too many requests ({len(requests)} > {limit})"
    ids: set[str] = set()
    for i, r in enumerate(requests):
        if not isinstance(r, dict):
            return f"requests.{i}: Input should be an object"
        cid = r.get("custom_id")
        if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
            return f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        if cid in ids:
            return f"Duplicate custom_id found: {cid}"
        ids.add(cid)
        params = r.get("params")
        if not isinstance(params, dict):
            return f"requests.{i}.params: Field required"
        for key in ("model", "max_tokens", "messages"):
            if key not in params:
                return f"requests.{i}.params.{key}: Field required"
    return None


def _decide_batch(job: Job, cfg: EmulatorConfig, seen_batches: Mapping[str, int]) -> None:
    job.batch_key = _batch_key(job.model, job.custom_ids)
    job.fault = batch_fault(cfg, job.model, job.batch_key, seen_batches.get(job.batch_key, 0))


class _Answerer:
    """Renders one item after the other into a job's lists."""

    def __init__(
        self,
        job: Job,
        cfg: EmulatorConfig,
        seen_items: Mapping[str, int],
        builder: Builder,
        openai: bool,
        index_offset: int = 0,
    ) -> None:
        self.offset = index_offset
        self.job = job
        self.cfg = cfg
        self.seen_items = seen_items
        self.builder = builder
        self.openai = openai
        self.stem = Stem()
        self.created = int(time.time())
        # Chat items with a JSON schema, the common case, are rendered straight to bytes.
        self.chat = ChatLines(self.stem, self.created) if builder is chat_completion else None

    def _refuse(self, cid: str, i: int, too_long: tuple[int, int]) -> None:
        job = self.job
        job.ok.append(False)
        job.in_tokens.append(0)
        job.out_tokens.append(0)
        responses = self.builder is responses_answer
        job.lines.append(_context_line(self.openai, responses, cid, self.stem, i, too_long))

    def __call__(self, cid: str, body: dict[str, Any]) -> None:
        job, cfg, stem = self.job, self.cfg, self.stem
        if not job.custom_ids:
            job.model = str(body.get("model", ""))
        i = self.offset + len(job.custom_ids)
        seen = self.seen_items.get(cid, 0)
        item_model = body.get("model", "")
        error, invalid = _item_fault(
            cfg, item_model if isinstance(item_model, str) else "", cid, seen
        )
        job.custom_ids.append(cid)
        job.seen.append(seen)
        line: dict[str, Any]
        if error:
            job.ok.append(False)
            job.in_tokens.append(0)
            job.out_tokens.append(0)
            if self.openai:
                status, err = OPENAI_ITEM_ERRORS[int(roll(cfg.seed, "error_kind", cid, seen) * 3)]
                if status:
                    line = {
                        "id": stem.batch_req(i),
                        "custom_id": cid,
                        "response": {
                            "status_code": status,
                            "request_id": stem.request_hex(i),
                            "body": {"error": err},
                        },
                        "error": None,
                    }
                else:
                    line = {
                        "id": stem.batch_req(i),
                        "custom_id": cid,
                        "response": None,
                        "error": err,
                    }
            else:
                err = ANTHROPIC_ITEM_ERRORS[int(roll(cfg.seed, "error_kind", cid, seen) * 2)]
                line = {
                    "custom_id": cid,
                    "result": {"type": "errored", "error": {"type": "error", "error": err}},
                }
            job.lines.append(dumps_kept(line))
            return
        too_long = over_context(cfg, body)
        if too_long is not None:
            self._refuse(cid, i, too_long)
            return
        answer_seed = body_seed(cfg.seed, canonical(body))
        if self.chat is not None:
            rendered = self.chat.render(cid, body, answer_seed, invalid=invalid, index=i)
            if rendered is not None:
                job.ok.append(True)
                job.in_tokens.append(rendered.input_tokens)
                job.out_tokens.append(rendered.output_tokens)
                job.lines.append(rendered.line)
                return
        if self.openai:
            answer = self.builder(
                body,
                answer_seed,
                invalid=invalid,
                ids=stem,
                index=i,
                created=self.created,
                batch=True,
            )
            line = {
                "id": stem.batch_req(i),
                "custom_id": cid,
                "response": {
                    "status_code": 200,
                    "request_id": stem.request_hex(i),
                    "body": answer.body,
                },
                "error": None,
            }
        else:
            answer = self.builder(body, answer_seed, invalid=invalid, ids=stem, index=i, batch=True)
            line = {"custom_id": cid, "result": {"type": "succeeded", "message": answer.body}}
        job.ok.append(True)
        job.in_tokens.append(answer.input_tokens)
        job.out_tokens.append(answer.output_tokens)
        job.lines.append(dumps_kept(line))


def _context_line(
    openai: bool, responses: bool, cid: str, stem: Stem, i: int, too_long: tuple[int, int]
) -> bytes:
    """The result line of an item whose prompt is longer than its model's context."""
    if openai:
        error = openai_context_error(*too_long, responses=responses)
        return dumps_kept(
            {
                "id": stem.batch_req(i),
                "custom_id": cid,
                "response": {
                    "status_code": 400,
                    "request_id": stem.request_hex(i),
                    "body": {"error": error},
                },
                "error": None,
            }
        )
    inner = anthropic_context_error(*too_long)
    return dumps_kept(
        {
            "custom_id": cid,
            "result": {"type": "errored", "error": {"type": "error", "error": inner}},
        }
    )


def not_done_line(openai: bool, cid: str, status: str, stem: Stem, i: int) -> bytes:
    """The line of an item a batch never got to (``expired`` or ``cancelled``)."""
    if openai:
        if status == "expired":
            err = {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window "
                "expired.",
            }
        else:
            err = {
                "code": "batch_cancelled",
                "message": "This request was cancelled before it could be processed.",
            }
        return orjson.dumps(
            {"id": stem.batch_req(i), "custom_id": cid, "response": None, "error": err}
        )
    kind = "expired" if status == "expired" else "canceled"
    return orjson.dumps({"custom_id": cid, "result": {"type": kind}})
