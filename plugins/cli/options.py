"""The options commands share, and the settings they add up to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from plugins.config import Settings

__all__ = [
    "db_opt",
    "mode_opt",
    "model_opt",
    "provider_opt",
    "quiet_opt",
    "retry_cancelled_opt",
    "settings_from",
    "store_to_read",
]

provider_opt = click.option("--provider", help="Provider name (see `lexibatch plugins`).")
model_opt = click.option("--model", help="Default model.")
mode_opt = click.option(
    "--mode", type=click.Choice(["immediate", "batch", "auto"]), help="How requests are sent."
)
db_opt = click.option("--db", type=click.Path(path_type=Path), help="The SQLite store.")
retry_cancelled_opt = click.option(
    "--retry-cancelled",
    is_flag=True,
    help="Send again the requests of batches you cancelled (they stay cancelled otherwise).",
)
quiet_opt = click.option(
    "--quiet", "-q", is_flag=True, help="Print nothing but errors (no progress, no summary)."
)

# A flag's value overrides this key of the configuration.
_FLAG_KEYS = {
    "provider": "connector.provider",
    "model": "connector.model",
    "mode": "connector.mode",
    "db": "connector.db",
    "budget": "batch.budget_usd",
}


def settings_from(ctx: click.Context, **flags: Any) -> Settings:
    """The configuration (``--config`` file, environment), with the command's flags over it.

    Raises:
        ConfigError: the configuration is invalid.
    """
    from plugins.config import load_settings

    overrides: dict[str, Any] = {}
    for flag, dotted in _FLAG_KEYS.items():
        value = flags.get(flag)
        if value is not None:
            overrides[dotted] = value
    if flags.get("retry_cancelled"):
        overrides["batch.retry_cancelled"] = True
    config = ctx.obj.get("config") if ctx.obj else None
    return load_settings(Path(config) if config else None, overrides=overrides)


def store_to_read(settings: Settings, flags: dict[str, Any]) -> Path | None:
    """The store a command that only reads opens; ``None`` while none has been made.

    Such a command never makes a store: ``--db`` naming no file is a mistake
    (a typo would otherwise leave an empty store behind and report nothing
    spent), while the configured store not made yet simply holds nothing.

    Raises:
        InputError: ``--db`` names a file that does not exist.
    """
    from providers.errors import InputError

    db = Path(settings.connector.db)
    if str(db) == ":memory:" or db.exists():
        return db
    if flags.get("db") is not None:
        raise InputError(
            f"no store at {flags['db']}: --db must name the store a run made "
            "(by default .lexibatch/lexibatch.db in the folder the run started in)"
        )
    return None
