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
    """The fields of a multipart/form-data body: name -> (filename, content)."""
    fields: dict[str, tuple[str, bytes]] = {}
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = filename = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                for piece in line.split(";")[1:]:
                    key, _, value = piece.strip().partition("=")
                    if key == "name":
                        name = value.strip('"')
                    elif key == "filename":
                        filename = value.strip('"')
        if name is not None:
            fields[name] = (filename or "upload", content)
    return fields
