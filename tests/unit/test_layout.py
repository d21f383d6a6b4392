"""The house rules of the layout (see README "How it fits together"), checked on the source.

Every SQL statement lives in ``models/``; controllers and actors stay thin; imports go one
way (pipelines <- models <- actors/api, ops base <- everything). A change that breaks one
of these fails here, with the place named, instead of slowly undoing the structure.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "actors", "models", "pipelines", "ops")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
SQL = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b")
ORM = re.compile(
    r"\b[A-Z]\w*\.(select|objects|update|insert|delete|count|exists|raw)\(|"
    r"\b(tenant_)?scope\.(select|objects|update|delete|new)\(|\btenant_scope\.get\(|\.save\(\)"
)
# What the API may take from actors/: what it sends, and the one function that builds the
# broker it sends on.
API_FROM_ACTORS = {"submit", "setup_broker"}


def sources(*packages: str) -> Iterator[tuple[Path, ast.Module, str]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            text = path.read_text()
            yield path.relative_to(ROOT), ast.parse(text), text


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def test_sql_and_orm_queries_live_in_models() -> None:
    found = []
    for path, tree, text in sources("api", "actors"):
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and SQL.search(node.value)
            ):
                found.append(f"{path}:{node.lineno}: SQL text")
        for n, line in enumerate(text.splitlines(), start=1):
            if ORM.search(line):
                found.append(f"{path}:{n}: ORM query: {line.strip()}")
    assert not found, "\n".join(found)


def test_modules_and_functions_stay_small() -> None:
    found = []
    for path, tree, text in sources(*PACKAGES):
        if (lines := text.count("\n")) > MAX_MODULE_LINES:
            found.append(f"{path}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path}:{node.lineno}: {node.name} is {length} lines")
    assert not found, "\n".join(found)


def _layer(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # Pure domain logic: importable without a database, a broker or a web server.
        ("pipelines", {"api", "actors", "models", "litestar", "dramatiq", "asyncpg", "piccolo"}),
        # The query layer may use pipelines' pure types; never the layers above it.
        ("models", {"api", "actors"}),
        ("actors", {"api"}),
    ],
)
def test_imports_go_one_way(package: str, forbidden: set[str]) -> None:
    found = [
        f"{path}:{line}: imports {module}"
        for path, tree, _ in sources(package)
        for line, module in imported_modules(tree)
        if _layer(module) in forbidden
    ]
    assert not found, "\n".join(found)


def test_nothing_imports_the_api_but_itself() -> None:
    found = [
        f"{path}:{line}: imports {module}"
        for path, tree, _ in sources("actors", "models", "pipelines", "ops")
        for line, module in imported_modules(tree)
        if _layer(module) == "api"
    ]
    assert not found, "\n".join(found)


def test_ops_base_imports_no_project_layer_above_it() -> None:
    """ops/*.py is what everyone imports (settings, storage, logging, runtime...); the
    commands in ops/commands/ import everything. ``ops.metrics`` reads the job figures
    through the query layer."""
    allowed = {"ops.metrics": {"models"}}
    found = []
    for path, tree, _ in sources("ops"):
        if "commands" in path.parts:
            continue
        name = ".".join(path.with_suffix("").parts)
        for line, module in imported_modules(tree):
            layer = _layer(module)
            if layer in {"api", "actors", "models", "pipelines"} and layer not in allowed.get(
                name, set()
            ):
                found.append(f"{path}:{line}: imports {module}")
    assert not found, "\n".join(found)


def test_ops_has_no_imports_hidden_in_functions() -> None:
    """Function-level imports of our own modules were there to dodge import cycles; with the
    base and the commands apart there are none to dodge."""
    found = []
    for path, tree, _ in sources("ops"):
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for line, module in imported_modules(node):
                    if _layer(module) in PACKAGES:
                        found.append(f"{path}:{line}: imports {module} inside {node.name}")
    assert not found, "\n".join(found)


def test_the_api_takes_only_actors_from_actors() -> None:
    from actors.jobs import JobActor

    found = []
    for path, tree, _ in sources("api"):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and node.module):
                continue
            if _layer(node.module) != "actors":
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name)
                values = list(value.values()) if isinstance(value, dict) else [value]
                if alias.name in API_FROM_ACTORS or (
                    values and all(isinstance(v, JobActor) for v in values)
                ):
                    continue
                found.append(f"{path}:{node.lineno}: {alias.name} from {node.module}")
    assert not found, "\n".join(found)
