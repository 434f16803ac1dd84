"""Engine request rows (migration 9) to seed, and the ways to damage them, shared by the
in-process corpus (tests/store/test_request_corpus.py) and the daemon-level ones
(tests/robustness/test_corrupt_databases*.py).

The seeded rows: `req-done` (a stop, answered with a status), `req-error` (a start,
answered with a refusal and its field violations) and `req-sent` (a start nobody took
yet), all addressed to one member. Each damage is (the id of the row it damages, the
SQL that damages it); `?` as the id: the damaged row cannot be named (its id itself).
"""

from __future__ import annotations

from ctsd.engine.config import EngineConfig, TradingMode
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.errors import FieldViolation, InvalidArgument
from ctsd.fleet.requests import Answer, EngineRequest, RequestKind
from ctsd.store.database import Database
from ctsd.store.engine_requests import SqlRequestStore

TIME_MAX = 9223372036854775807
"""A 64-bit integer column's largest value: a time no datetime holds."""
CONFIG = EngineConfig("grid", ("BTC/USDT",), {"levels": "2"}, TradingMode.PAPER)
SEEDED = ("req-done", "req-error", "req-sent")


async def seed_requests(db: Database, target: str) -> None:
    store = SqlRequestStore(db)
    await store.send(EngineRequest("req-done", "a", target, RequestKind.STOP))
    await store.send(EngineRequest("req-error", "b", target, RequestKind.START, CONFIG))
    await store.claim(target, 3_600_000)
    await store.answer("req-done", Answer(EngineStatus(
        "a", "e1", EngineState.STOPPED, TradingMode.PAPER, "grid", ("BTC/USDT",))))
    await store.answer("req-error", Answer(error=InvalidArgument(
        "config.leverage: spot has no leverage",
        [FieldViolation("config.leverage", "spot has no leverage")])))
    await store.send(EngineRequest("req-sent", "c", target, RequestKind.START, CONFIG))


def _set(column: str, value: str, row: str) -> tuple[str, str]:
    return row, f"UPDATE engine_requests SET {column} = {value} WHERE id = '{row}'"


DAMAGE: dict[str, tuple[str, str]] = {
    "request config json": _set("config", "'{not json'", "req-sent"),
    "request config shape": _set("config", "'{\"strategy\": 5}'", "req-sent"),
    "request kind": _set("kind", "'restart'", "req-sent"),
    "request state": _set("state", "'lost'", "req-done"),
    "request time": _set("created_ms", str(TIME_MAX), "req-error"),
    "request time negative": _set("created_ms", f"-{TIME_MAX}", "req-done"),
    "answer json": _set("answer", "'{not json'", "req-done"),
    "answer shape": _set("answer", "'{\"status\": {\"state\": \"dancing\"}, \"error\": null}'",
                         "req-done"),
    "answer error kind": _set("answer", "'{\"status\": null, \"error\": {\"kind\": \"Nope\", "
                                        "\"message\": \"m\", \"violations\": []}}'", "req-error"),
    "answer violations": _set("answer", "'{\"status\": null, \"error\": {\"kind\": "
                                        "\"InvalidArgument\", \"message\": \"m\", "
                                        "\"violations\": 5}}'", "req-error"),
}
"""Damage either backend's types allow."""
PURGED = frozenset({"request time negative"})
"""Damage that makes its row a leftover (older than `KEEP_MS`): a daemon's first scan
deletes it, maybe before the audit reads it."""

SQLITE_DAMAGE: dict[str, tuple[str, str]] = {
    "request time text": _set("created_ms", "'soon'", "req-sent"),
    "request not UTF-8": _set("config", "CAST(X'7B22FF22' AS TEXT)", "req-sent"),
    "answer not UTF-8": _set("answer", "CAST(X'7B22FF22' AS TEXT)", "req-done"),
    "request id not UTF-8": ("?", "UPDATE engine_requests SET id = CAST(X'72FF' AS TEXT) "
                                  "WHERE id = 'req-sent'"),
}
"""Damage only SQLite's loose typing lets in (PostgreSQL refuses it at the UPDATE)."""
