"""Reading a multipart/form-data upload (OpenAI's and Mistral's ``POST /v1/files``)."""

from __future__ import annotations

from aiohttp import web

__all__ = ["multipart_boundary", "parse_multipart"]


def multipart_boundary(request: web.Request) -> bytes | None:
    """The boundary the request's ``Content-Type`` names, or ``None``."""
    for piece in request.headers.get("Content-Type", "").split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary" and value:
            return value.strip('"').encode()
    return None


def parse_multipart(body: bytes, boundary: bytes) -> dict[str, tuple[str, bytes]]:
    """The fields of a multipart/form-data body: name -> (filename, content).

    Each part is found by searching the body, and its content sliced out once
    (an uploaded batch file can be hundreds of megabytes).
    """
    fields: dict[str, tuple[str, bytes]] = {}
    delimiter = b"--" + boundary
    at = body.find(delimiter)
    while at >= 0:
        start = at + len(delimiter)
        if body.startswith(b"--", start):
            break  # the closing delimiter
        at = body.find(delimiter, start)
        end = at if at >= 0 else len(body)
        head_end = body.find(b"\r\n\r\n", start, end)
        if head_end < 0:
            continue
        content_start = head_end + 4
        if end - content_start >= 2 and body.startswith(b"\r\n", end - 2):
            end -= 2
        name = filename = None
        for line in body[start:head_end].decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for piece in line.split(";")[1:]:
                    key, _, value = piece.strip().partition("=")
                    if key == "name":
                        name = value.strip('"')
                    elif key == "filename":
                        filename = value.strip('"')
        if name is not None:
            fields[name] = (filename or "upload", body[content_start:end])
    return fields
