"""Third-party plugins installed for a test: a module, and a dist-info naming its entry point."""

from __future__ import annotations

from pathlib import Path

__all__ = ["install_plugin", "plugin_env"]


def install_plugin(
    site: Path, module: str, source: str, *, dist: str, version: str, entry: str
) -> None:
    """Install ``module`` (``source``) in ``site`` as distribution ``dist`` ``version``.

    Its entry point in the ``lexibatch`` group is named ``entry``; ``site``
    is made when missing.
    """
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[lexibatch]\n{entry} = {module}\n")


def plugin_env(site: Path, load: str | None = None) -> dict[str, str]:
    """The environment of a ``lexibatch`` process that finds the plugins in ``site``.

    ``load``: the value of ``LEXIBATCH_LOAD_PLUGINS`` (``None``: unset, every plugin loads).
    """
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{site}:{Path.cwd()}"}
    if load is not None:
        env["LEXIBATCH_LOAD_PLUGINS"] = load
    return env
