"""SIGTERM at any instant of a daemon's life ends it in time, cleanly, on both stores.

About one stop in a hundred of a daemon on PostgreSQL once hung for good: a task its
owner cancelled at shutdown had lost the cancellation inside psycopg_pool (Python
3.11's `asyncio.wait_for`) and went on waiting (`ctsd.tasks`, lost cancellations).
Each round starts a daemon, waits until it has installed its SIGTERM handler (the
kernel's SigCgt mask; before that a SIGTERM kills it by default, which tests nothing),
then sends SIGTERM at a seeded random instant from then to a while after it serves,
so the signal lands in start-up (store open, engines resumed, fleet joined, first
readiness check) as often as in steady state. The daemon must exit 0 within its grace
plus `CLOSE_MARGIN_S`, with no traceback and no task that went on after its
cancellation (the second defence would hide the first's failure as a delay).

Quick form: 20 rounds on PostgreSQL, 4 on SQLite; `CTS_SOAK_ROUNDS=20` (make soak):
200 and 40; two daemons at a time (`LANES`).
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.robustness.tally import Tally, log_problems, soak_rounds
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.pg_databases import PgDatabases

pytestmark = pytest.mark.long

GRACE_S = 2.0
CLOSE_MARGIN_S = 8.0
"""Closing the engines, the fleet membership and the store after the grace, under load."""
LATEST_SIGNAL_S = 1.5
"""Signals land up to this long after the handler is installed: the rest of start-up
takes 0.1-1 s here."""
HANDLER_WITHIN_S = 30.0
PG_ROUNDS = 10 * soak_rounds(2)
SQLITE_ROUNDS = 2 * soak_rounds(2)
ROUND_S = 15.0
"""A generous bound on one round under load, for pytest's timeout."""
LOST = "after its cancellation"


LANES = 2
"""Daemons stopped at once, each on a store of its own and seeded apart, the rounds
shared out: a round mostly waits (start-up, the random instant, the exit)."""


@pytest.fixture
def pg_stores(pg_databases: PgDatabases) -> Iterator[list[str]]:
    urls = [asyncio.run(pg_databases.fresh()) for _ in range(LANES)]
    try:
        yield urls
    finally:
        for url in urls:
            asyncio.run(pg_databases.drop(url))


def _daemon(store: str | None) -> DaemonProcess:
    daemon = DaemonProcess(short_tempdir())
    config = daemon.root / "ctsd.toml"
    config.write_text(f"[daemon]\ngrace_seconds = {GRACE_S}\n"
                      + (f'[store]\nurl = "{store}"\n' if store else ""))
    daemon.extra_args += ["--config", str(config)]
    return daemon


def _stop_at_random_instants(stores: Sequence[str | None], rounds: int, seed: int) -> None:
    """`rounds` rounds in all, shared out over one lane per store (each its own daemon)."""
    tally = Tally(f"SIGTERM anytime ({'postgresql' if stores[0] else 'sqlite'})")
    with ThreadPoolExecutor(len(stores)) as pool:
        lanes = [pool.submit(_lane, store, len(range(lane, rounds, len(stores))), seed + lane)
                 for lane, store in enumerate(stores)]
    failures: list[str] = []
    try:
        for lane in lanes:
            for problem in lane.result():
                tally.tried += 1
                if problem is None:
                    tally.survived += 1
                    tally.codes["0"] += 1
                else:
                    tally.lost += 1
                    failures.append(problem)
    finally:
        tally.report()
    assert not failures, failures[0]


def _lane(store: str | None, rounds: int, seed: int) -> list[str | None]:
    """Each round's problem (None: it exited 0 in time, with a clean log)."""
    rng = random.Random(seed)
    daemon = _daemon(store)
    found: list[str | None] = []
    try:
        for number in range(rounds):
            daemon.log_path.unlink(missing_ok=True)
            daemon.start(wait=False)
            assert daemon.proc is not None
            _until_sigterm_is_caught(daemon.proc)
            delay = rng.uniform(0, LATEST_SIGNAL_S)
            time.sleep(delay)  # the instant the signal lands: the thing varied
            sent = time.monotonic()
            daemon.send(signal.SIGTERM)
            try:
                code = daemon.proc.wait(GRACE_S + CLOSE_MARGIN_S)
            except subprocess.TimeoutExpired:
                code = None
            took = time.monotonic() - sent
            daemon.stop(signal.SIGKILL)  # reaps it; closes the log
            logs = daemon.logs()
            problem = _problem(code, logs)
            found.append(None if problem is None else (
                f"seed {seed} round {number} (SIGTERM {delay:.2f}s after the handler, "
                f"{took:.1f}s to exit): {problem}\n{logs[-3000:]}"))
    finally:
        daemon.stop(signal.SIGKILL)
        remove_tree(daemon.root)
    return found


def _until_sigterm_is_caught(proc: subprocess.Popen[bytes]) -> None:
    """Until the process catches SIGTERM (`ctsd.ops.signals` installed its handler)."""
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + HANDLER_WITHIN_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            lines = status.read_text().splitlines()
        except OSError:  # it has just exited: poll() says so next
            continue
        caught = next((line.split()[1] for line in lines if line.startswith("SigCgt:")), "0")
        if int(caught, 16) >> (signal.SIGTERM - 1) & 1:
            return
        time.sleep(0.005)
    raise AssertionError(f"no SIGTERM handler within {HANDLER_WITHIN_S:g}s "
                         f"(exit code {proc.poll()})")


def _problem(code: int | None, logs: str) -> str | None:
    if code is None:
        return f"still running {GRACE_S + CLOSE_MARGIN_S:g}s after SIGTERM"
    if code != 0:
        return f"exit code {code}"
    wrong = log_problems(logs) + [line for line in logs.splitlines() if LOST in line]
    return f"the log shows {wrong}" if wrong else None


@pytest.mark.timeout(60 + ROUND_S * PG_ROUNDS / LANES)
def test_sigterm_at_any_instant_stops_a_postgresql_daemon(pg_stores: list[str]) -> None:
    _stop_at_random_instants(pg_stores, PG_ROUNDS, seed=16)


@pytest.mark.timeout(60 + ROUND_S * SQLITE_ROUNDS / LANES)
def test_sigterm_at_any_instant_stops_a_sqlite_daemon() -> None:
    _stop_at_random_instants([None] * LANES, SQLITE_ROUNDS, seed=61)
