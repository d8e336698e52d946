"""Dependencies point one way (docs/architecture.md draws the layers), and the import graph has no cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "digest"
LAYERS = [
    {"errors", "redact", "plugins"},
    {"identity", "models", "reports", "authors", "keywords", "cadence"},
    {
        "profiles",
        "tokens",
        "links",
        "alerts",
        "config_tables",
        "config_paths",
        "settings",
        "selection.semantic",
        "selection.authorship",
        "selection.categories",
        "selection.finding",
        "selection.postings",
        "selection.hybrid",
        "selection.learner",
        "selection.tastes",
        "selection.reasons",
        "selection.index",
        "selection.caps",
        "selection.sections",
        "email.mime",
        "email.fragments",
        "email.entries",
        "email.render",
        "email.dkim",
        "email.bounces",
        "atom",
        "references",
    },
    {"sources", "store", "email.transport", "email.smtp", "run.runlock", "run.progress", "logs"},
    {
        "run.courier",
        "run.channel",
        "run.reader_models",
        "run.recall",
        "run.planning",
        "run.delivery",
        "run.summaries",
        "subscriptions",
    },
    {"wiring", "run.sharing"},
    {"run.workers"},
    {"run.pipeline"},
    {"web"},
    {"cli", "scheduler"},
]
STAGES = {"email", "run", "selection"}  # packages whose modules are layered one by one


def _unit(parts: tuple[str, ...]) -> str:
    """The unit a module belongs to: ``email.render``, ``run.planning``; else its top-level module or
    package (``store``, ``web``, ``sources``)."""
    return ".".join(parts[:2]) if parts[0] in STAGES and len(parts) > 1 else parts[0]


def _imports() -> dict[str, set[str]]:
    """Unit -> the units of digest it imports (anywhere in it)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and (len(parts) == 1 or parts[0] in STAGES):
            continue
        here = _unit(parts)
        found = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("digest"):
                module = tuple(node.module.split(".")[1:])
                if not module or (module[0] in STAGES and len(module) == 1):  # from digest(.run) import x
                    names = [_unit((*module, a.name)) for a in node.names]
                else:
                    names = [_unit(module)]
            elif isinstance(node, ast.Import):
                names = [
                    _unit(tuple(a.name.split(".")[1:])) for a in node.names if a.name.startswith("digest.")
                ]
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


@pytest.mark.processes
def test_opening_the_store_loads_no_source_parser_or_http_client() -> None:
    code = "import sys, digest.store; print(sorted(m for m in ('httpx', 'feedparser', 'digest.sources') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.processes
def test_the_command_line_starts_without_the_pipeline_or_its_libraries() -> None:
    """`digest --help` (and a command that needs little) imports the rest of digest only where used."""
    heavy = ("digest.run.pipeline", "digest.email.render", "digest.store", "premailer", "numpy", "httpx")
    code = f"import sys, digest.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.processes
def test_importing_the_workers_loads_no_library_a_worker_may_not_use() -> None:
    """feedparser and httpx (a worker reads no source), dkimpy and flufl.bounce (unless configured),
    premailer (until the renderer inlines its template, once) are imported where they are used."""
    code = (
        "import sys, digest.run.workers; print(sorted(m for m in ('httpx', 'feedparser', 'dkim', 'flufl.bounce',"
        " 'premailer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


VALUES = {"errors", "redact", "identity", "models", "keywords", "cadence", "profiles"}  # no I/O, no services
# Who may read the settings: the composition root, the edges that load them, and a run's worker processes,
# which build their own services from them in a fresh interpreter.
SETTINGS_READERS = {"wiring", "cli", "scheduler", "web", "run.workers"}


CONFIGURATION = {
    "settings",
    "config_tables",
    "config_paths",
}  # the settings, the config file's tables, what it points at


def test_settings_imports_no_feature_module() -> None:
    for module in CONFIGURATION:
        imported = _imports()[module] - CONFIGURATION
        assert imported <= VALUES, (module, sorted(imported - VALUES))


def test_only_the_composition_root_and_the_edges_read_the_settings() -> None:
    readers = {m for m, imported in _imports().items() if imported & CONFIGURATION} - CONFIGURATION
    assert readers <= SETTINGS_READERS, sorted(readers - SETTINGS_READERS)


_READER_PATH = re.compile(r"(^|/)([ucmvf]|feed)/(\{|$)|^/([ucmvf]|feed)/")


def test_every_reader_url_is_made_in_links() -> None:
    """Only ``links`` writes a reader's path (``/u/``, ``/m/``, ``/c/``, ``/v/``, ``/f/``), for the email and
    the web app's routes alike: a link in a mail and the route that reads it cannot drift apart."""
    found = [
        f"{where}:{line}: {text!r}"
        for where, line, text in _strings_in_code()
        if where.name != "links.py" and _READER_PATH.search(text)
    ]
    assert not found, found


_SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|BEGIN|ANALYZE|WITH)\s")
DRIVERS = {"sqlite3", "psycopg"}


def _code(path: Path) -> tuple[ast.Module, set[int]]:
    """A module's tree, and the ids of its docstrings' nodes (prose, not code)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(first.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(first := node.body[0], ast.Expr)
    }
    return tree, docstrings


def _strings_in_code() -> Iterator[tuple[Path, int, str]]:
    """Every string literal of the package that is code, not a docstring: (module path, line, text)."""
    for path in PACKAGE.rglob("*.py"):
        tree, docstrings = _code(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                yield path.relative_to(PACKAGE), node.lineno, node.value


def test_sql_is_written_only_in_the_store() -> None:
    found = [
        f"{where}:{line}: {text[:40]!r}"
        for where, line, text in _strings_in_code()
        if where.parts[0] != "store" and _SQL.match(text)
    ]
    assert not found, found


def test_only_the_dialect_knows_which_database_it_is() -> None:
    """Only ``store/dialect.py`` and PostgreSQL's ``store/postgresql.py`` import a database driver or name a
    dialect; outside the store nothing asks the store which dialect it speaks."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        where = path.relative_to(PACKAGE)
        if where in (Path("store/dialect.py"), Path("store/postgresql.py")):
            continue
        tree, docstrings = _code(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                imported = (
                    [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                )
                if any(name.split(".")[0] in DRIVERS for name in imported):
                    found.append(f"{where}:{node.lineno}: imports {imported}")
            if (
                isinstance(node, ast.Constant)
                and node.value in ("sqlite", "postgresql")
                and id(node) not in docstrings
            ):
                found.append(f"{where}:{node.lineno}: names the dialect {node.value!r}")
            if isinstance(node, ast.Attribute) and node.attr == "dialect" and where.parts[0] != "store":
                found.append(f"{where}:{node.lineno}: asks for the store's dialect")
    assert not found, found
