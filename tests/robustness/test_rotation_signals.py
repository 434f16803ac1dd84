"""`ctsd rotate-key` interrupted by SIGINT, SIGTERM and SIGKILL at random instants.

A state dir with thousands of sealed secrets (quick form: 3,000 and 12 rounds;
`CTS_SOAK_ROUNDS=50` with `CTS_ROTATION_SECRETS=24000` in `make soak`) is rotated by
the real command, which one of the three signals interrupts at a seeded random
instant of its run. After each round the state dir is opened as the daemon's start
opens it (finishing or undoing the rotation) and every secret must open to the
plaintext it was sealed from. The last round's state dir then serves a real daemon.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key
from ctsd.vault.sealer import Keyring
from tests.robustness.tally import Tally, soak_rounds
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir

pytestmark = pytest.mark.long

SEED = 11
FIELDS = ("api_key", "api_secret", "passphrase")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
WAL_STIRRING = 64 * 1024
"""WAL bytes beyond what opening the store writes: the re-seal's pages are arriving."""


def secret_count() -> int:
    return int(os.environ.get("CTS_ROTATION_SECRETS", 3000))


async def _keyring(state: Path) -> tuple[Keyring, set[str]]:
    db = await Database.open(state)
    try:
        secrets = SealedSecretRepository(db)
        keyring = await open_keyring(locate_key(state, None, env={}), secrets)
        return keyring, await secrets.key_ids()
    finally:
        await db.close()


def seed(state: Path, count: int) -> dict[tuple[str, str], str]:
    """`count` secrets on `count / 3` connections, written straight into a fresh store."""
    keyring, _ = asyncio.run(_keyring(state))
    rng = random.Random(SEED)
    plain: dict[tuple[str, str], str] = {}
    rows, blobs = [], []
    for n in range(count // len(FIELDS)):
        cid = f"c{n}"
        rows.append((cid, f"name {n}", "okx", "spot", 0, "cross", "one_way", "rest", 1, 0,
                     "****", 1, 1, 1))
        for field in FIELDS:
            text = f"{field}-{n}-{rng.randrange(10**12)}"
            plain[(cid, field)] = text
            sealed = keyring.seal(cid, field, text)
            blobs.append((cid, field, sealed.key_id.hex(), sealed.blob))
    with sqlite3.connect(state / "ctsd.db") as db:
        db.executemany(
            "INSERT INTO connections (id, display_name, exchange, api_type, testnet, "
            "margin_mode, position_mode, market_data_method, enabled, predefined, "
            "api_key_hint, created_us, updated_us, revision) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT INTO sealed_secrets (connection_id, field, key_id, blob) "
                       "VALUES (?, ?, ?, ?)", blobs)
    db.close()
    return plain


def rotate(state: Path, started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """A `ctsd rotate-key` run, added to `started` (what the test kills if it fails)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctsd", "rotate-key", "--state-dir", str(state)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started.append(proc)
    return proc


def kill_all(started: list[subprocess.Popen[bytes]]) -> None:
    """A failed test leaves no rotation running (it would outlive the test, reparented)."""
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaped, and its stderr pipe closed (not left to the GC of
        # whichever test runs next, as a ResourceWarning there)


def wal_size(wal: Path) -> int:
    try:
        return wal.stat().st_size
    except FileNotFoundError:
        return 0


def largest_wal(proc: subprocess.Popen[bytes], wal: Path) -> int:
    """The WAL's largest size while `proc` runs: where a whole re-seal's commit ends."""
    largest = 0
    while proc.poll() is None:
        largest = max(largest, wal_size(wal))
        time.sleep(0.0005)
    return largest


def committing(proc: subprocess.Popen[bytes], wal: Path, threshold: int) -> None:
    """Returns once the WAL has grown to `threshold` bytes (the re-seal's pages are being
    written, the commit is at hand), or when the process ends first."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if wal_size(wal) >= threshold:
            return
        time.sleep(0.0002)


def lost_secrets(state: Path, plain: dict[tuple[str, str], str]) -> tuple[list[str], str]:
    """Opens the state dir as a start does; every secret that does not open, and the key id."""
    try:
        keyring, _ = asyncio.run(_keyring(state))
    except Exception as exc:
        return [f"the next start failed: {type(exc).__name__}: {exc}"], ""
    with sqlite3.connect(f"file:{state / 'ctsd.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT connection_id, field, blob FROM sealed_secrets").fetchall()
    db.close()
    found = {(c, f): bytes(b) for c, f, b in rows}
    lost = [f"{c}/{f}" for (c, f), text in plain.items()
            if (c, f) not in found or keyring.open(c, f, found[(c, f)]) != text]
    return lost, keyring.current.key_id.hex()


def test_rotate_key_interrupted_by_signals_at_random_instants() -> None:
    rounds = soak_rounds(12) if "CTS_SOAK_ROUNDS" not in os.environ else max(
        soak_rounds(12), 50)
    rng = random.Random(SEED)
    root = short_tempdir()
    state = root / "state"
    state.mkdir(mode=0o700)
    tally = Tally("rotate-key under signals")
    outcomes: Counter[str] = Counter()
    runs: list[subprocess.Popen[bytes]] = []
    try:
        plain = seed(state, secret_count())
        started = time.monotonic()
        clean = rotate(state, runs)
        largest = max(largest_wal(clean, state / "ctsd.db-wal"), WAL_STIRRING)
        _, err = clean.communicate(timeout=120)
        assert clean.returncode == 0, err
        duration = time.monotonic() - started
        _, key_before = lost_secrets(state, plain)
        for n in range(rounds):
            sig = SIGNALS[(n // 2) % len(SIGNALS)]
            proc = rotate(state, runs)
            if n % 2:  # any instant of the run
                delay = rng.uniform(0.2 * duration, 1.05 * duration)
                time.sleep(delay)  # the instant of the signal, not a wait for anything
            else:  # the narrow windows: the commit, the key file's rename after it
                delay = rng.uniform(0.6, 1.0)  # of the WAL a whole re-seal writes
                committing(proc, state / "ctsd.db-wal", int(delay * largest))
            if proc.poll() is None:
                proc.send_signal(sig)
            _, err = proc.communicate(timeout=120)
            code, stderr = proc.returncode, err.decode(errors="replace")
            lost, key_after = lost_secrets(state, plain)
            rotated = "rotated" if key_after != key_before else "kept the old key"
            ran = "finished first" if code == 0 else f"{signal.Signals(sig).name} exit {code}"
            outcomes[f"{ran}, {rotated}"] += 1
            tally.tried += len(plain)
            tally.lost += len(lost)
            tally.survived += len(plain) - len(lost)
            if lost:
                tally.notes.append(f"round {n} ({ran}, delay {delay:.2f}s): lost {len(lost)}: "
                                   f"{lost[:3]} {stderr[-300:]}")
            key_before = key_after
        daemon = DaemonProcess(root)
        try:
            daemon.start()  # the daemon itself accepts what the last round left
        except (RuntimeError, TimeoutError) as exc:
            tally.lost += 1
            tally.notes.append(f"the daemon does not start: {str(exc)[-300:]}")
        finally:
            daemon.stop()
    finally:
        kill_all(runs)
        remove_tree(root)
    tally.notes[:0] = [f"{rounds} rounds over {len(plain)} secrets, a clean run {duration:.2f}s; "
                       + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))]
    tally.report()
    assert tally.lost == 0, tally.notes
