"""Answers in the store, read back as responses; one that no longer fits is set aside.

An answer is stored once it validated against its response model. If the
model has changed since, the old answer no longer fits: it is retired (kept
aside, not deleted) so that the request is asked again and its new answer
kept — paid for once, however often the old one is met.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from plugins.results import cached_response
from providers.errors import SchemaValidationError

if TYPE_CHECKING:
    from plugins.store import Store, StoredResult
    from providers.types import Request, Response

__all__ = ["StoredAnswers"]

log = logging.getLogger("lexibatch.connector")


class StoredAnswers:
    """The stored answers of one provider's requests, as responses."""

    def __init__(self, store: Store, provider_name: str) -> None:
        self.store = store
        self.provider_name = provider_name
        self._warned_stale = False

    def lookup(self, request: Request, *, look_again: bool = True) -> Response | None:
        """The response of ``request``'s stored answer, if one is stored and still fits."""
        stored = self.store.get_result(self.provider_name, request.key)
        if stored is None:
            return None
        return self.of(request, stored, look_again=look_again)

    def of(
        self, request: Request, stored: StoredResult, *, look_again: bool = True
    ) -> Response | None:
        """The response of a stored answer, or ``None`` once one that no longer fits is retired."""
        try:
            return cached_response(request, stored, provider=self.provider_name)
        except SchemaValidationError as exc:
            # The response model changed since the answer was stored. Set the
            # old answer aside so the new one is kept, and paid for only once.
            if self.store.retire_result(
                self.provider_name, request.key, text=stored.text, reason=exc.message
            ):
                if not self._warned_stale:
                    self._warned_stale = True
                    log.warning(
                        "cached answers that no longer fit their response model are asked "
                        "again and paid for (first: %s); the old answers are kept aside",
                        exc,
                    )
                else:
                    log.info("cached answer %s no longer fits: asked again", request.key)
                return None
            # Another run replaced (or retired) it meanwhile: judge what is there now.
            return self.lookup(request, look_again=False) if look_again else None
