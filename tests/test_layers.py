"""The layer contracts of docs/architecture.md, read off the source: each fails naming the line.

    domain packages       import neither grpc nor the generated code (cts.v1)
    ctsd/store            is the only package that speaks SQL
    ctsd/exchanges        is the only package that imports ccxt; ccxt_internals the
                          only module that touches ccxt's internals
    ctsd/sim              is imported by its command (ctsd/cli.py) and the tests only
    ctsd/errors.py        holds every error class
    packages              import each other without cycles
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from ctsd import errors
from ctsd.exchanges import ccxt_internals
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.settings import WS_HOST_SEGMENTS, ExchangeSettings
from ctsd.sim.venues import default_registry

CTSD = Path(__file__).resolve().parents[1] / "ctsd"
DOMAIN = ("connections", "engine", "exchanges", "fleet", "health", "marketdata", "ratelimit",
          "strategies", "store", "vault", "clock.py", "errors.py", "fencing.py", "settings.py",
          "tasks.py")
"""Below the API: they neither know gRPC nor the wire format."""
SQL = re.compile(r"^\s*(SELECT\b.*\bFROM|INSERT (OR \w+ )?INTO|UPDATE \w+ SET|DELETE FROM"
                 r"|(CREATE|DROP|ALTER) (TABLE|INDEX)|PRAGMA \w+)", re.DOTALL)
"""Statements as the store writes them (upper-case keywords), not prose that says "insert"."""


@cache
def modules() -> dict[str, ast.Module]:
    """Every module of ctsd by its path relative to ctsd/, parsed."""
    return {str(p.relative_to(CTSD)): ast.parse(p.read_text(), str(p))
            for p in sorted(CTSD.rglob("*.py"))}


def package(path: str) -> str:
    """`connections/checks/run.py` → `connections`; a top-level module is its own package."""
    return path.split("/")[0]


def imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def offenders(where: str, imported: str) -> list[str]:
    """`file:line` of each import of `imported` (or a submodule) by the modules `where`."""
    return [f"ctsd/{path}:{line}" for path, tree in modules().items()
            if re.match(where, path)
            for line, name in imports(tree) if name == imported or name.startswith(f"{imported}.")]


@pytest.mark.parametrize("imported", ["grpc", "grpc_health", "grpc_reflection", "cts.v1"])
def test_domain_packages_import_neither_grpc_nor_generated_code(imported: str) -> None:
    domain = "|".join(re.escape(d) for d in DOMAIN)
    assert offenders(rf"({domain})(/|$)", imported) == []


@pytest.mark.parametrize("imported", ["aiosqlite", "sqlite3"])
def test_only_the_store_opens_the_database(imported: str) -> None:
    assert offenders(r"(?!store/)", imported) == []


def test_only_the_store_speaks_sql() -> None:
    found = [f"ctsd/{path}:{node.lineno}" for path, tree in modules().items()
             for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and SQL.match(node.value)]
    assert [f for f in found if not f.startswith("ctsd/store/")] == []
    assert len(found) > 20  # the pattern does see the store's statements


def test_only_the_exchange_layer_imports_ccxt() -> None:
    assert offenders(r"(?!exchanges/)", "ccxt") == []


def test_ccxt_internals_are_reached_through_one_module() -> None:
    private = {*ccxt_internals.PRIVATE_ATTRIBUTES, *ccxt_internals.PER_CLASS_ATTRIBUTES,
               *ccxt_internals.PRO_BOOK_ATTRIBUTES}
    found = [f"ctsd/{path}:{node.lineno} .{node.attr}" for path, tree in modules().items()
             if path != "exchanges/ccxt_internals.py"
             for node in ast.walk(tree)
             if isinstance(node, ast.Attribute) and node.attr in private]
    assert found == []


def test_nothing_imports_the_simulator_but_its_command() -> None:
    assert offenders(r"(?!sim/|cli\.py$)", "ctsd.sim") == []


def test_the_simulator_serves_each_exchange_under_its_id() -> None:
    """`[exchanges.<id>] endpoint` and `--sim-endpoint` rest on this (ExchangeSettings)."""
    assert ExchangeRegistry.default().ids() == default_registry().names()


def test_websocket_urls_move_to_where_the_simulator_serves_them() -> None:
    """`[exchanges.<id>] base_url` moves ccxt.pro's wss:// URLs too (ExchangeSettings.rewrite):
    hosts of one venue that share paths get the segment the simulator routes them by."""
    found = {f"wss://{host}": segment for host, segment in WS_HOST_SEGMENTS.items()}
    registry = default_registry()
    served = {url: path for venue in (registry.get(n) for n in registry.names()) if venue
              for url, path in venue.url_overrides.items() if url.startswith("wss://")}
    assert {u: p for u, p in served.items() if "beta" not in u} == found
    settings = ExchangeSettings.at_simulator("http://127.0.0.1:9000", "binance")
    assert settings.rewrite("wss://stream.binance.com:9443/ws/0") == (
        "ws://127.0.0.1:9000/binance/stream/ws/0")


def test_error_classes_live_in_one_module() -> None:
    ours = {name for name, value in vars(errors).items()
            if isinstance(value, type) and issubclass(value, errors.CtsError)}
    found = [f"ctsd/{path}:{node.lineno} {node.name}" for path, tree in modules().items()
             if path != "errors.py"
             for node in ast.walk(tree)
             if isinstance(node, ast.ClassDef)
             and any(isinstance(base, ast.Name | ast.Attribute)
                     and (base.id if isinstance(base, ast.Name) else base.attr) in ours
                     for base in node.bases)]
    assert found == []


def test_packages_import_each_other_without_cycles() -> None:
    edges: dict[str, set[str]] = {}
    for path, tree in modules().items():
        for _, name in imports(tree):
            parts = name.split(".")
            if parts[0] == "ctsd" and len(parts) > 1:
                target = parts[1] if (CTSD / parts[1]).is_dir() else f"{parts[1]}.py"
                if target != package(path):
                    edges.setdefault(package(path), set()).add(target)
    cycles = sorted({" -> ".join(cycle) for start in edges for cycle in _cycles(edges, start)})
    assert cycles == []


def _cycles(edges: dict[str, set[str]], start: str) -> Iterator[list[str]]:
    """Every simple path from `start` back to it (the graph is a few dozen nodes)."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                yield [*path, start]
            elif nxt not in path and nxt > start:  # each cycle once, from its smallest node
                stack.append((nxt, [*path, nxt]))
