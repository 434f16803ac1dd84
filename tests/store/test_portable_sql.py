"""Repositories write one SQL for both backends (`ctsd.store.database_tx`): no spelling
only SQLite understands may appear outside the SQLite backend. The store's tests run
every repository on both backends; this catches the spelling in code they miss."""

from __future__ import annotations

import re
from pathlib import Path

import ctsd.store

BACKEND_FILES = {"database_sqlite.py", "database_pg.py", "migrations.py"}
SQLITE_ONLY = {
    "INSERT OR REPLACE/IGNORE (use ON CONFLICT)": r"\bINSERT\s+OR\s+(REPLACE|IGNORE)\b",
    "REPLACE INTO": r"\bREPLACE\s+INTO\b",
    "PRAGMA": r"\bPRAGMA\b",
    "sqlite_master": r"\bsqlite_(master|schema|sequence)\b",
    "scalar max/min of two values (use CASE)": r"\b(max|min)\(\s*[\w.]+\s*,",
    "group_concat without a separator": r"\bgroup_concat\(\s*[\w.]+\s*\)",
    "sum/avg of a comparison (use CASE WHEN ... THEN 1 ELSE 0 END)":
        r"\b(sum|avg|total)\((?!\s*CASE\b)[^()]*(=|<|>)[^()]*\)",
    "SQLite date functions": r"\b(julianday|strftime|datetime|unixepoch)\(",
    "rowid": r"\b(rowid|_rowid_|oid)\b",
    "IFNULL (use coalesce)": r"\bifnull\(",
    "GLOB": r"\bGLOB\b",
    "a bare ? as a boolean (use ? = 1)": r"\bWHEN\s+\?\s+(OR|AND|THEN)\b",
}


def _string_literals(source: str) -> list[str]:
    return re.findall(r'"(?:[^"\\\n]|\\.)*"', source)


def test_no_repository_spells_sql_only_sqlite_understands() -> None:
    found = []
    for path in sorted(Path(ctsd.store.__file__).parent.glob("*.py")):
        if path.name in BACKEND_FILES:
            continue
        sql = " ".join(_string_literals(path.read_text()))
        for what, pattern in SQLITE_ONLY.items():
            for match in re.finditer(pattern, sql, re.IGNORECASE):
                found.append(f"{path.name}: {what}: ...{match.group(0)}...")
    assert not found, found


def test_the_check_finds_what_it_is_for() -> None:
    samples = ['"INSERT OR REPLACE INTO t VALUES (?)"', '"SET c = max(c, ?)"',
               '"SELECT sum(status = ?) FROM t"', '"group_concat(field)"',
               '"CASE WHEN ? OR x"', '"PRAGMA user_version"']
    for sample in samples:
        sql = " ".join(_string_literals(sample))
        assert any(re.search(p, sql, re.IGNORECASE) for p in SQLITE_ONLY.values()), sample
