"""Observer hooks called so that an observer cannot change what happens to a request.

The observing hooks (:data:`plugins.hookspecs.OBSERVER_HOOKS`: progress,
reports, batch lifecycle) are told about requests and batches that are
being paid for. Called through pluggy as they are, an implementation that
raises would stop the hook's other implementations and fail the caller's
step — a batch's results, paid for, would then be reported failed. A
:class:`GuardedHook` calls each implementation alone instead, in pluggy's
order, and logs (once per plugin and hook) one that raises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["GuardedHook"]

log = logging.getLogger("lexibatch.plugins")


class GuardedHook:
    """One observer hook of a plugin manager, each implementation's error logged, not raised."""

    __slots__ = ("_caller", "_told", "get_hookimpls")

    def __init__(self, caller: Any) -> None:
        """``caller``: the hook's pluggy ``HookCaller`` (``manager.hook.NAME``)."""
        self._caller = caller
        self._told: set[str] = set()
        #: The hook's implementations, as pluggy lists them (asked per request:
        #: the caller's own method, no layer of ours).
        self.get_hookimpls: Callable[[], list[Any]] = caller.get_hookimpls

    def __call__(self, **kwargs: Any) -> None:
        """Call every implementation with the arguments it takes (latest registered first)."""
        for impl in reversed(self._caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                # A wrapper observes the others' call, which is not made through it here.
                continue
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception:
                if impl.plugin_name not in self._told:
                    self._told.add(impl.plugin_name)
                    log.warning(
                        "plugin %s: its %s hook raised; ignored (an observer cannot change "
                        "what happens to a request)",
                        impl.plugin_name,
                        self._caller.name,
                        exc_info=True,
                    )
