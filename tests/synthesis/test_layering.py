"""The synthesis layer sees only the Connector protocol and types.

The same rule import-linter enforces in CI, checked here from the source so
that a forbidden import fails the tests too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "synthesis"
ALLOWED_PROVIDERS = {"providers", "providers.protocol", "providers.types", "providers.errors"}
# The composition root, the cli/ package, builds the connector: only the
# package's top-level modules are checked here.
MODULES = sorted(PACKAGE.glob("*.py"))


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_the_protocol_layer(path: Path) -> None:
    for name in imported(path):
        root = name.split(".")[0]
        assert root != "plugins", f"{path.name} imports {name}"
        if root == "providers":
            assert name in ALLOWED_PROVIDERS, f"{path.name} imports {name}"
