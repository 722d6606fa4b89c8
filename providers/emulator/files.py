"""OpenAI's file listing and deletion: ``GET /v1/files`` and ``DELETE /v1/files/{id}``.

Real clients call both (LiteLLM's ``afile_list`` / ``afile_delete``, batch
libraries cleaning up after themselves), and lexibatch deletes a batch's
files once its results are stored. Listed newest first by default, with
``purpose``, ``limit`` (1 to 10,000), ``order`` and the ``after`` cursor, as
the real endpoint pages.
"""

from __future__ import annotations

from aiohttp import web

from providers.emulator.replies import json_response, openai_error, openai_headers
from providers.emulator.state import State

__all__ = ["delete_file", "list_files"]

_MAX_LIMIT = 10_000


def _visible(purpose: str) -> bool:
    # The emulator keeps Anthropic batch bodies as files too; OpenAI never shows them.
    return not purpose.startswith("anthropic_")


def list_files(state: State, request: web.Request) -> web.Response:
    """``GET /v1/files?purpose=&limit=&order=&after=``."""
    query = request.query
    try:
        limit = int(query.get("limit", str(_MAX_LIMIT)))
    except ValueError:
        return openai_error(400, "Invalid 'limit': expected an integer.", param="limit")
    if not 1 <= limit <= _MAX_LIMIT:
        return openai_error(
            400,
            f"Invalid 'limit': integer below minimum value or above maximum value {_MAX_LIMIT}.",
            param="limit",
            code="invalid_value",
        )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        return openai_error(
            400,
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    purpose = query.get("purpose")
    records = [
        rec
        for rec in state.files.values()
        if _visible(rec.purpose) and (purpose is None or rec.purpose == purpose)
    ]
    # Ids break ties between files made in the same second, so paging is stable.
    records.sort(key=lambda r: (r.created_at, r.id), reverse=order == "desc")
    start = 0
    after = query.get("after")
    if after is not None:
        for i, rec in enumerate(records):
            if rec.id == after:
                start = i + 1
                break
    page = records[start : start + limit]
    data = [rec.obj() for rec in page]
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": start + limit < len(records),
        },
        200,
        openai_headers(),
    )


def delete_file(state: State, request: web.Request) -> web.Response:
    """``DELETE /v1/files/{id}``: ``{"id", "object": "file", "deleted": true}``."""
    file_id = request.match_info["id"]
    rec = state.files.get(file_id)
    if rec is None or not _visible(rec.purpose):
        return openai_error(404, f"No such File object: {file_id}", param="id")
    state.delete_file(file_id)
    return json_response({"id": file_id, "object": "file", "deleted": True}, 200, openai_headers())
