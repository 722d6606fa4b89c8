"""Plugins of lexibatch: hook specifications, strategies, the store and the connector.

Third-party plugins mark their hook implementations with :data:`hookimpl`::

    from plugins import hookimpl

    @hookimpl
    def register_providers(register):
        register("myprovider", make_provider)
"""

from plugins.hookspecs import hookimpl

__all__ = ["hookimpl"]
