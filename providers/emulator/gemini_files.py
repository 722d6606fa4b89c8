"""The Gemini Files API of the emulator: the resumable upload, file metadata, downloads.

``POST /upload/v1beta/files`` with ``x-goog-upload-command: start`` opens a
session and answers its ``x-goog-upload-url``; chunks follow with ``upload``
and the last with ``upload, finalize``, which answers the file. Files are
named ``files/<12 lowercase alphanumerics>``; a batch's results file is
``files/batch-<batch id>`` and, being generated, the only kind that can be
downloaded (``GET /v1beta/files/{id}:download?alt=media``). Either kind is
deleted by ``DELETE /v1beta/files/{id}``, which answers ``{}``; a file that is
not there (never was, or deleted) is answered as the real API answers it: a
403 ``PERMISSION_DENIED`` that says it "may not exist".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from providers.emulator.gemini_wire import (
    B64URL,
    LOWER,
    id_rng,
    last_segment,
    wire_error,
    wire_ok,
    wire_time,
)

if TYPE_CHECKING:
    from providers.emulator.appcore import AppCore

__all__ = ["Uploads", "file_delete", "file_get", "file_list", "missing_file", "upload"]

_FILE_TTL = 48 * 3600


def _file_obj(rec: Any, origin: str) -> dict[str, Any]:
    generated = rec.id.startswith("batch-")
    digest = hashlib.sha256(rec.content()).hexdigest().encode()
    obj: dict[str, Any] = {"name": f"files/{rec.id}"}
    if not generated and rec.filename:
        obj["displayName"] = rec.filename
    obj.update(
        mimeType=rec.purpose.removeprefix("gemini:"),
        sizeBytes=str(rec.size),
        createTime=wire_time(rec.created_at),
        updateTime=wire_time(rec.created_at),
        expirationTime=wire_time(rec.created_at + _FILE_TTL),
        sha256Hash=base64.b64encode(digest).decode(),
        uri=f"{origin}/v1beta/files/{rec.id}",
    )
    if generated:
        obj["downloadUri"] = f"{origin}/v1beta/files/{rec.id}:download?alt=media"
    obj.update(state="ACTIVE", source="GENERATED" if generated else "UPLOADED")
    return obj


class Uploads:
    """Resumable upload sessions, by ``upload_id`` (in memory: a session dies with the process)."""

    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}


async def upload(app: AppCore, uploads: Uploads, request: web.Request) -> web.Response:
    """``POST /upload/v1beta/files``: ``start``, then ``upload[, finalize]`` chunks."""
    command = request.headers.get("x-goog-upload-command", "").replace(" ", "")
    origin = f"{request.scheme}://{request.host}"
    if command == "start":
        try:
            meta = orjson.loads(await request.read() or b"{}").get("file") or {}
        except (orjson.JSONDecodeError, AttributeError):
            return wire_error(400, "Invalid JSON payload received.")
        upload_id = "".join(id_rng.choices(B64URL, k=64))
        uploads.sessions[upload_id] = {
            "mime": request.headers.get("x-goog-upload-header-content-type")
            or meta.get("mimeType")
            or meta.get("mime_type")
            or "application/octet-stream",
            "name": meta.get("displayName") or meta.get("display_name") or "",
            "data": bytearray(),
        }
        url = f"{origin}/upload/v1beta/files?upload_id={upload_id}&upload_protocol=resumable"
        return web.Response(
            text="",
            headers={
                "x-goog-upload-status": "active",
                "x-goog-upload-url": url,
                "x-goog-upload-control-url": url,
                "x-goog-upload-chunk-granularity": "8388608",
                "x-guploader-uploadid": upload_id,
            },
        )
    session = uploads.sessions.get(request.query.get("upload_id", ""))
    if session is None:
        return web.Response(
            status=404, text="upload session not found", headers={"x-goog-upload-status": "final"}
        )
    offset = int(request.headers.get("x-goog-upload-offset") or 0)
    if offset != len(session["data"]):
        return web.Response(
            status=400, text="offset mismatch", headers={"x-goog-upload-status": "active"}
        )
    session["data"] += await request.read()
    if "finalize" not in command.split(","):
        return web.Response(text="", headers={"x-goog-upload-status": "active"})
    del uploads.sessions[request.query["upload_id"]]
    file_id = "".join(id_rng.choices(LOWER, k=12))
    loop = asyncio.get_running_loop()
    rec = await loop.run_in_executor(
        None,
        app.state.add_file,
        bytes(session["data"]),
        "gemini:" + session["mime"],
        session["name"],
        file_id,
    )
    if app.config.step_latency > 0:
        await asyncio.sleep(app.config.step_latency)
    return wire_ok({"file": _file_obj(rec, origin)}, headers={"x-goog-upload-status": "final"})


def missing_file(file_id: str) -> web.Response:
    """How Gemini answers for a file it does not have: it will not say whether it ever did."""
    return wire_error(
        403, f"You do not have permission to access the File {file_id} or it may not exist."
    )


async def file_get(app: AppCore, request: web.Request) -> web.StreamResponse:
    """``GET /v1beta/files/{id}`` and ``GET /v1beta/files/{id}:download?alt=media``."""
    file_id, _, verb = last_segment(request).partition(":")
    rec = app.state.files.get(file_id)
    if rec is None or not rec.purpose.startswith("gemini:"):
        return missing_file(file_id)
    if verb == "download":
        if not file_id.startswith("batch-"):
            return wire_error(400, "Only generated files can be downloaded.")
        if app.config.step_latency > 0:
            await asyncio.sleep(app.config.step_latency)
        return await app.file_response(request, rec, {"Content-Type": "application/octet-stream"})
    return wire_ok(_file_obj(rec, f"{request.scheme}://{request.host}"))


async def file_delete(app: AppCore, request: web.Request) -> web.Response:
    """``DELETE /v1beta/files/{id}``: an uploaded or a generated (results) file; ``{}``."""
    file_id = last_segment(request)
    rec = app.state.files.get(file_id)
    if rec is None or not rec.purpose.startswith("gemini:"):
        return missing_file(file_id)
    await asyncio.get_running_loop().run_in_executor(None, app.state.delete_file, file_id)
    return wire_ok({})


async def file_list(app: AppCore, request: web.Request) -> web.Response:
    """``GET /v1beta/files``, newest first."""
    origin = f"{request.scheme}://{request.host}"
    recs = sorted(
        (r for r in app.state.files.values() if r.purpose.startswith("gemini:")),
        key=lambda r: r.created_at,
        reverse=True,
    )
    return wire_ok({"files": [_file_obj(r, origin) for r in recs]})
