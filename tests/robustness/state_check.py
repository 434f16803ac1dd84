"""Reading a stopped daemon's state dir with sqlite3 alone: integrity, whole
records, secrets that open with the master key."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ctsd.vault.master_key import read_key_file
from ctsd.vault.sealer import Keyring


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
    uri = f"file:{state_dir / 'ctsd.db'}?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        check = db.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            problems.append(f"integrity_check: {check}")
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
        if set(got) != {"api_key", "api_secret"}:
            problems.append(f"{cid} is half-present: sealed fields {sorted(got)}")
        stored[cid] = Known(display_name, bool(enabled), got.get("api_key", ""),
                            got.get("api_secret", ""), "")
    problems += [f"sealed secrets without a connection: {cid}" for cid in secrets]
    return stored, problems


