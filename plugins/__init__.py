"""Plugins of lexibatch: hook specifications, strategies, the store and the connector.

A third-party provider needs only the names exported here (and the types of
:mod:`providers`)::

    from plugins import BatchSpec, ProviderSettings, ProviderSpec, hookimpl

    class MyOptions(ProviderSettings):
        region: str = "eu"

    @hookimpl
    def register_providers(register):
        register(
            "myprovider",
            make_provider,
            spec=ProviderSpec(options=MyOptions, key_env="MYPROVIDER_API_KEY"),
        )
"""

from plugins.hookspecs import hookimpl
from plugins.provideroptions import ProviderSettings
from plugins.providerspec import BatchSpec, ProviderContext, ProviderSpec

__all__ = ["BatchSpec", "ProviderContext", "ProviderSettings", "ProviderSpec", "hookimpl"]
