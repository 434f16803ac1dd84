"""Reading a stopped daemon's state dir with sqlite3 alone: integrity, whole
records, secrets that open with the master key, engines' desired state and orders."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ctsd.vault.master_key import read_key_file
from ctsd.vault.sealer import Keyring

SEALED_REQUIRED = frozenset({"api_key", "api_secret"})
SEALED_OPTIONAL = frozenset({"passphrase"})


@dataclass(frozen=True)
class Known:
    """One acknowledged state of a connection (None: it does not exist)."""

    display_name: str
    enabled: bool
    api_key: str
    api_secret: str
    etag: str


def check_database(state_dir: Path) -> tuple[dict[str, Known], list[str]]:
    """Integrity, no half-present rows, every secret opens. Returns the stored state."""
    problems: list[str] = []
    ring = Keyring(read_key_file(state_dir / "master-key"))
    db = _open_read_only(state_dir)
    try:
        problems += _integrity(db)
        rows = db.execute("SELECT id, display_name, enabled FROM connections").fetchall()
        sealed = db.execute("SELECT connection_id, field, blob FROM sealed_secrets").fetchall()
    finally:
        db.close()
    secrets: dict[str, dict[str, str]] = {}
    for cid, fld, blob in sealed:
        try:
            secrets.setdefault(cid, {})[fld] = ring.open(cid, fld, bytes(blob))
        except Exception as exc:  # any failure to open is a lost secret
            problems.append(f"secret {cid}.{fld} does not open: {exc!r}")
    stored: dict[str, Known] = {}
    for cid, display_name, enabled in rows:
        got = secrets.pop(cid, {})
        if not SEALED_REQUIRED <= set(got) <= SEALED_REQUIRED | SEALED_OPTIONAL:
            problems.append(f"{cid} is half-present: sealed fields {sorted(got)}")
        stored[cid] = Known(display_name, bool(enabled), got.get("api_key", ""),
                            got.get("api_secret", ""), "")
    problems += [f"sealed secrets without a connection: {cid}" for cid in secrets]
    return stored, problems


@dataclass(frozen=True)
class StoredOrder:
    """An engine order row: what the daemon durably knows about one client order id."""

    client_order_id: str
    exchange_order_id: str
    status: str


@dataclass(frozen=True)
class StoredEngine:
    """An `engines` row (the desired state a restart resumes) and its connection's orders."""

    engine_id: str
    desired: str
    orders: dict[str, StoredOrder]


def check_engine_tables(state_dir: Path) -> tuple[dict[str, StoredEngine], list[str]]:
    """Integrity, and no exchange order recorded under two client order ids.

    Returns every connection's engine row and orders (orders of a connection whose
    engine row is gone are kept under an engine with an empty id)."""
    db = _open_read_only(state_dir)
    try:
        problems = _integrity(db)
        engines = db.execute("SELECT connection_id, engine_id, desired FROM engines").fetchall()
        orders = db.execute(
            "SELECT connection_id, client_order_id, exchange_order_id, status "
            "FROM engine_orders ORDER BY seq").fetchall()
    finally:
        db.close()
    stored = {cid: StoredEngine(eid, desired, {}) for cid, eid, desired in engines}
    placed: dict[tuple[str, str], str] = {}
    for cid, client_id, exchange_id, status in orders:
        engine = stored.setdefault(cid, StoredEngine("", "", {}))
        engine.orders[client_id] = StoredOrder(client_id, exchange_id, status)
        if exchange_id:
            twin = placed.setdefault((cid, exchange_id), client_id)
            if twin != client_id:
                problems.append(f"{cid}: exchange order {exchange_id} stored as {twin} "
                                f"and {client_id}")
    return stored, problems


def _open_read_only(state_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{state_dir / 'ctsd.db'}?mode=ro", uri=True)


def _integrity(db: sqlite3.Connection) -> list[str]:
    check = db.execute("PRAGMA integrity_check").fetchall()
    return [] if check == [("ok",)] else [f"integrity_check: {check}"]
