"""How a failure is put into words: what a provider, a proxy or the system said, on one line.

An error is said on one line whatever it quotes: a proxy's HTML page by its
title, a multi-line message with its spacing evened out, a file operation's
``OSError`` by what it means for the user. :mod:`providers.errors` builds
its messages with these.
"""

from __future__ import annotations

import html
import re

__all__ = ["one_line_message", "os_error_reason"]

# An error answer's message is said on one line: at most this many characters of it.
_MESSAGE_CHARS = 400
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.I | re.S)
_TAG = re.compile(r"<[^>]+>")


def one_line_message(message: str) -> str:
    """``message`` as one line: an HTML page (a proxy's 502) by its title, spacing evened out.

    What a provider or a proxy in front of it answered may be a whole page,
    or text over several lines; an error is said on one line. A message past
    :data:`_MESSAGE_CHARS` characters is cut there (the body stays whole on
    the error).
    """
    if "<" in message and re.search(r"<(!doctype|html|head|body|title)\b", message, re.I):
        title = _TITLE.search(message)
        text = title.group(1) if title else _TAG.sub(" ", message)
        message = f"an HTML page: {html.unescape(text)}"
    message = " ".join(message.split())
    if len(message) > _MESSAGE_CHARS:
        message = message[: _MESSAGE_CHARS - 1] + "…"
    return message


def os_error_reason(exc: OSError) -> str:
    """What an ``OSError`` of a file operation means for the user, in a few words."""
    import errno

    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder",
        errno.ENOENT: "a folder of the path does not exist",
        errno.EFBIG: "the file is larger than the system allows",
    }
    return reasons.get(exc.errno or 0) or exc.strerror or str(exc)
