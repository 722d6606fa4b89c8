"""The Jinja2 environment the prompt templates are rendered with.

Templates live in ``synthesis/templates/*.j2`` (package data). They are
plain text, so autoescaping is off; a missing variable is an error, never an
empty string (``StrictUndefined``). Each template is compiled once.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2

__all__ = ["TEMPLATE_DIR", "environment", "render", "template_names"]

#: Where the templates are; they ship inside the package.
TEMPLATE_DIR = Path(__file__).with_name("templates")


@cache
def environment() -> jinja2.Environment:
    """The shared environment (built on first use)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )


@cache
def _template(name: str) -> jinja2.Template:
    return environment().get_template(name)


def render(name: str, **context: Any) -> str:
    """Render the template ``name`` (e.g. ``"synonyms.j2"``), stripped of outer blank space."""
    return _template(name).render(**context).strip()


def template_names() -> list[str]:
    """Every template that ships with the package."""
    return sorted(p.name for p in TEMPLATE_DIR.glob("*.j2"))
