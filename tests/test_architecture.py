"""#13: dependencies point one way (docs/architecture.md draws the layers), and the import graph has no cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"
LAYERS = [
    {"errors", "redact"},
    {"identity", "models"},
    {
        "tokens",
        "dkimsign",
        "bounces",
        "cadence",
        "alerts",
        "settings",
        "semantic",
        "select",
        "mime",
        "fragments",
        "render",
    },
    {"sources", "store", "transport", "runlock", "progress", "logs"},
    {"courier", "planning", "delivery", "subscriptions"},
    {"sharing"},
    {"workers"},
    {"pipeline"},
    {"web"},
    {"cli", "scheduler"},
]


def _module(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imports() -> dict[str, set[str]]:
    """Top-level digest module -> the top-level digest modules it imports (anywhere in it)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        here = _module(path)
        if here == "__init__":
            continue
        found = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("digest"):
                parts = node.module.split(".")
                names = [parts[1]] if len(parts) > 1 else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.split(".")[1] for a in node.names if a.name.startswith("digest.")]
            else:
                continue
            found.update(n for n in names if n != here and n != "__version__")
    return graph


def _layer(module: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if module in layer)


@pytest.mark.parametrize("module", sorted(_imports()))
def test_each_module_imports_only_layers_below_or_beside_it(module: str) -> None:
    above = {m for m in _imports()[module] if _layer(m) > _layer(module)}
    assert not above, f"{module} imports {sorted(above)}, which sit above it"


def test_the_import_graph_has_no_cycle() -> None:
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*path, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_opening_the_store_loads_no_source_parser_or_http_client() -> None:
    code = "import sys, digest.store; print(sorted(m for m in ('httpx', 'feedparser', 'digest.sources') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
