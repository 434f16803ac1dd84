"""The damaged-row corpus on PostgreSQL (`[store] url`): each case refused at start (exit
78, one line) or served with the damaged rows quarantined, as on SQLite
(`test_corrupt_databases`). Damage that PostgreSQL's types and constraints make
impossible is made the way an operator would have to (dropping the constraint first);
the file-level cases (garbage pages, WAL) are the server's business and not here.
Quick form: `QUICK`; `make soak` (CTS_SOAK_ROUNDS set) runs every case."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.robustness.tally import Tally
from tests.robustness.test_corrupt_databases import (
    MAX_INT,
    assert_requests_quarantined,
    judge_all,
    reads,
    seed,
)
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.damaged_requests import DAMAGE
from tests.support.pg_databases import PgDatabases

pytestmark = pytest.mark.long

CORPUS: dict[str, tuple[str, ...]] = {
    "connection enum": ("UPDATE connections SET api_type = 'bogus' WHERE id = 'a'",),
    "connection time": ("UPDATE connections SET created_us = 9223372036854775807 "
                        "WHERE id = 'b'",),
    "test result json": ("UPDATE connection_tests SET result = '{not json'",),
    "test result enum": ("UPDATE connection_tests SET result = '{\"status\": \"weird\"}'",),
    "engine config json": ("UPDATE engines SET config = 'not json'",),
    "engine desired": ("UPDATE engines SET desired = 'maybe'",),
    "order status": ("UPDATE engine_orders SET status = 'lost'",),
    "order amount": ("UPDATE engine_orders SET amount = 'lots'",),
    "fill side": ("UPDATE engine_fills SET side = 'up'",),
    "secret blob null": ("ALTER TABLE sealed_secrets ALTER COLUMN blob DROP NOT NULL",
                         "UPDATE sealed_secrets SET blob = NULL WHERE connection_id = 'c'"),
    "secret field": ("ALTER TABLE sealed_secrets DROP CONSTRAINT sealed_secrets_field_check",
                     "UPDATE sealed_secrets SET field = 'nonsense' WHERE connection_id = 'b' "
                     "AND field = 'api_key'"),
    "secret key id": ("UPDATE sealed_secrets SET key_id = 'ffffffffffffffff'",),
    "member heartbeat null": ("ALTER TABLE fleet_members ALTER COLUMN heartbeat_ms DROP NOT NULL",
                              "UPDATE fleet_members SET heartbeat_ms = NULL"),
    "member join time": (f"UPDATE fleet_members SET started_ms = {MAX_INT}",),
    "lease token null": ("ALTER TABLE engine_leases ALTER COLUMN token DROP NOT NULL",
                         "UPDATE engine_leases SET token = NULL"),
    "lease expiry": (f"UPDATE engine_leases SET expires_ms = -{MAX_INT}",),
    "status json": ("UPDATE engine_statuses SET status = '{not json'",),
    "status shape": ("UPDATE engine_statuses SET status = '{\"state\": \"dancing\"}'",),
    "order fence null": ("ALTER TABLE engine_orders ALTER COLUMN fence DROP NOT NULL",
                         "UPDATE engine_orders SET fence = NULL"),
    "table dropped": ("DROP TABLE engine_fills",),
    "fleet table dropped": ("DROP TABLE engine_leases",),
    "column dropped": ("ALTER TABLE connections DROP COLUMN account_uid",),
    "newer schema": ("UPDATE ctsd_schema SET version = 999",),
    "older schema": ("UPDATE ctsd_schema SET version = 0",),
    "schema table dropped": ("DROP TABLE ctsd_schema",),
    "version row gone": ("DELETE FROM ctsd_schema",),
    "requests table dropped": ("DROP TABLE engine_requests",),
    **{f"request: {name}": (statement,) for name, (_, statement) in DAMAGE.items()},
}


QUICK = ("connection enum", "connection time", "engine config json", "order amount",
         "secret field", "secret key id", "table dropped", "newer schema", "older schema",
         "version row gone", "member join time", "lease expiry", "status shape",
         "request: request state", "request: answer error kind")
"""The quick form's cases (one daemon start each); `make soak` runs the whole corpus."""


class Seeded:
    """A state dir (the master key) and a seeded database every case copies."""

    def __init__(self, databases: PgDatabases) -> None:
        self.databases = databases
        self.root = short_tempdir()
        self.state = self.root / "state"
        self.state.mkdir(mode=0o700)
        self.url = asyncio.run(databases.empty())
        asyncio.run(seed(self.state, self.url))

    def copy(self, into: Path) -> str:
        shutil.copytree(self.state, into / "state")
        return asyncio.run(self.databases.copy(self.url))

    def close(self) -> None:
        asyncio.run(self.databases.drop(self.url))
        remove_tree(self.root)


@pytest.fixture(scope="module")
def seeded(pg_databases: PgDatabases) -> Iterator[Seeded]:
    made = Seeded(pg_databases)
    try:
        yield made
    finally:
        made.close()


def _case(seeded: Seeded, statements: tuple[str, ...]) -> tuple[DaemonProcess, str]:
    root = short_tempdir()
    url = seeded.copy(root)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
    (root / "ctsd.toml").write_text(f'[store]\nurl = "{url}"\n')
    return DaemonProcess(root, ["--config", str(root / "ctsd.toml")]), url


def test_every_damaged_database_is_refused_or_served_without_a_crash(seeded: Seeded) -> None:
    tally = Tally("corrupt PostgreSQL databases: exit 78 or quarantine")
    soak = "CTS_SOAK_ROUNDS" in os.environ
    urls: list[str] = []

    def maker(statements: tuple[str, ...]) -> Callable[[], DaemonProcess]:
        def make() -> DaemonProcess:
            daemon, url = _case(seeded, statements)
            urls.append(url)
            return daemon
        return make

    try:
        judge_all(tally, {name: maker(statements) for name, statements in CORPUS.items()
                          if soak or name in QUICK})
    finally:
        for url in urls:
            asyncio.run(seeded.databases.drop(url))
    tally.report()
    assert tally.lost == 0, [n for n in tally.notes if "[" in n]
    assert_requests_quarantined(tally)


def test_a_damaged_row_is_named_by_verify_startup_and_status(seeded: Seeded) -> None:
    daemon, url = _case(seeded, CORPUS["connection enum"])
    try:
        daemon.start()
        answers = {call: said for call, _, said in reads(daemon.address)}
        daemon.stop()
    finally:
        asyncio.run(seeded.databases.drop(url))
        remove_tree(daemon.root)
    assert "connections a" in answers["VerifyStartup"] and "quarantined" in answers[
        "VerifyStartup"]
    assert "quarantined" in answers["GetSystemStatus"]
    assert "connections/b" in answers["ListConnections"]
