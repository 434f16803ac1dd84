"""The daemon on a broken state dir: read-only, locked, corrupt, keyless, full.

Each fault must give a clear error at start (exit 78 and one `ctsd: ...` line)
or a deliberate RESOURCE_EXHAUSTED/UNAVAILABLE per call; once the cause is
removed the daemon starts, every acknowledged record is there, its secrets
open, and `PRAGMA integrity_check` is ok. Tmpfs mounts need root: without
them the read-only and full-disk tests are skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd.vault.master_key import encode_key, generate_key
from tests.robustness.state_check import check_database
from tests.robustness.tally import Tally, log_problems
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.rpc import binance_spot

pytestmark = pytest.mark.long

EX_CONFIG = 78
PER_CALL = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
CALL_TIMEOUT_S = 30.0


class Outcome:
    """How one start of the daemon went."""

    def __init__(self, proc: DaemonProcess) -> None:
        try:
            proc.start()
            self.code: int | None = None
        except (RuntimeError, TimeoutError):
            assert proc.proc is not None
            if proc.proc.poll() is None:
                proc.kill()
                raise AssertionError(f"ctsd neither served nor exited:\n{proc.logs()}") from None
            self.code = proc.stop()
        self.reasons = [line for line in proc.logs().splitlines() if line.startswith("ctsd: ")]
        self.problems = log_problems(proc.logs())

    @property
    def serving(self) -> bool:
        return self.code is None

    def refused_clearly(self) -> bool:
        return self.code == EX_CONFIG and len(self.reasons) == 1 and not self.problems


def _stub(daemon: DaemonProcess) -> tuple[grpc.Channel, sgrpc.ConnectionServiceStub]:
    channel = grpc.insecure_channel(daemon.address)
    return channel, sgrpc.ConnectionServiceStub(channel)


def _create(stub: sgrpc.ConnectionServiceStub, cid: str) -> grpc.StatusCode:
    try:
        stub.CreateConnection(spb.CreateConnectionRequest(
            connection_id=cid, connection=binance_spot(f"name {cid}")), timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def _ids(stub: sgrpc.ConnectionServiceStub) -> set[str]:
    page = stub.ListConnections(spb.ListConnectionsRequest(page_size=1000), timeout=CALL_TIMEOUT_S)
    return {c.name.removeprefix("connections/") for c in page.connections}


class StateDir:
    """A daemon with some acknowledged connections, and checks that they survived."""

    def __init__(self, root: Path) -> None:
        self.daemon = DaemonProcess(root)
        self.acknowledged: set[str] = set()

    def seed(self, count: int = 3) -> None:
        self.daemon.start()
        channel, stub = _stub(self.daemon)
        with channel:
            for n in range(count):
                cid = f"seed-{len(self.acknowledged)}-{n}"
                assert _create(stub, cid) == grpc.StatusCode.OK
                self.acknowledged.add(cid)
        self.daemon.stop()

    def recovered(self, tally: Tally) -> None:
        """Starts, finds every acknowledged record, writes one more, stops, checks the file."""
        started = Outcome(self.daemon)
        assert started.serving, f"no recovery: exit {started.code}: {started.reasons}"
        channel, stub = _stub(self.daemon)
        with channel:
            missing = self.acknowledged - _ids(stub)
            cid = f"after-{len(self.acknowledged)}"
            assert _create(stub, cid) == grpc.StatusCode.OK, "no write after recovery"
            self.acknowledged.add(cid)
        self.daemon.stop()
        stored, problems = check_database(self.daemon.state_dir)
        problems += [f"lost {cid}" for cid in missing]
        problems += [f"lost {cid}" for cid in self.acknowledged - set(stored)]
        tally.tried += len(self.acknowledged)
        tally.lost += len(problems)
        tally.survived += len(self.acknowledged) - len(problems)
        tally.notes.extend(problems)


@pytest.fixture
def state() -> Iterator[StateDir]:
    root = short_tempdir()
    made = StateDir(root)
    try:
        yield made
    finally:
        if made.daemon.proc is not None:
            made.daemon.kill()
        for mount in (made.daemon.state_dir,):
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
        remove_tree(root)


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): fault not simulated")


def _remount(path: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def _report(tally: Tally, outcome: Outcome, per_call: list[grpc.StatusCode]) -> None:
    start = f"exit {outcome.code} {outcome.reasons}" if not outcome.serving else "served"
    tally.notes[:0] = [f"start: {start}", f"per-call answers: {[c.name for c in per_call]}"]
    tally.report()


def _assert_deliberate(outcome: Outcome, per_call: list[grpc.StatusCode]) -> None:
    assert not outcome.problems, outcome.problems
    if outcome.serving:
        assert per_call and set(per_call) <= PER_CALL, per_call
    else:
        assert outcome.refused_clearly(), (outcome.code, outcome.reasons, outcome.problems)


def _writes_while_serving(state: StateDir, attempts: int = 1) -> list[grpc.StatusCode]:
    channel, stub = _stub(state.daemon)
    with channel:
        _ids(stub)  # reads still work
        codes = [_create(stub, f"refused-{n}") for n in range(attempts)]
    state.daemon.stop()
    return codes


def test_read_only_state_dir(state: StateDir) -> None:
    tally = Tally("storage: read-only state dir")
    _mount_tmpfs(state.daemon.state_dir, "16m")
    state.seed()
    _remount(state.daemon.state_dir, "ro")
    outcome = Outcome(state.daemon)
    per_call = _writes_while_serving(state) if outcome.serving else []
    _remount(state.daemon.state_dir, "rw")
    state.recovered(tally)
    _report(tally, outcome, per_call)
    _assert_deliberate(outcome, per_call)
    assert tally.lost == 0, tally.notes


def _verify(daemon: DaemonProcess) -> dict[str, tuple[bool, str]]:
    with grpc.insecure_channel(daemon.address) as channel:
        answer = hgrpc.HealthServiceStub(channel).VerifyStartup(hpb.VerifyStartupRequest(),
                                                                timeout=CALL_TIMEOUT_S)
    return {c.name: (c.passed, c.detail) for c in answer.checks}


def _health_becomes(daemon: DaemonProcess, status: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if daemon.health() == status:
            return True
        time.sleep(0.05)
    return False


def test_a_store_that_stops_taking_writes_turns_health_not_serving(state: StateDir) -> None:
    """The disk fills under a serving daemon: the failed write turns grpc.health NOT_SERVING
    at once and VerifyStartup names the cause; with room again, the next check serves.
    (A read-only remount is refused while the daemon holds its files open for writing.)"""
    tally = Tally("storage: unwritable while serving")
    _mount_tmpfs(state.daemon.state_dir, "4m")
    state.seed()
    state.daemon.start()
    filler = _fill(state.daemon.state_dir)
    try:
        channel, stub = _stub(state.daemon)
        with channel:
            refused = grpc.StatusCode.OK
            for n in range(50):  # the WAL may have room for a few more: until refused
                refused = _create(stub, f"while-full-{n}")
                if refused != grpc.StatusCode.OK:
                    break
                state.acknowledged.add(f"while-full-{n}")
        not_serving = _health_becomes(state.daemon, health_pb2.HealthCheckResponse.NOT_SERVING)
        writable = _verify(state.daemon)["database_writable"]
    finally:
        filler.unlink()
    checked_again = _verify(state.daemon)["database_writable"]  # its probe write succeeds
    serving = _health_becomes(state.daemon, health_pb2.HealthCheckResponse.SERVING)
    state.daemon.stop()
    state.recovered(tally)
    tally.notes[:0] = [f"write {refused.name}; NOT_SERVING {not_serving}; verify: {writable}; "
                       f"after: {checked_again[0]}, SERVING {serving}"]
    tally.report()
    assert refused in PER_CALL and not_serving and serving, tally.notes
    assert not writable[0] and "takes no writes" in writable[1]
    assert checked_again[0] and tally.lost == 0, tally.notes


LOCKER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
db.execute("ROLLBACK")
"""


def _lock(db: Path) -> subprocess.Popen[str]:
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def _unlock(locker: subprocess.Popen[str]) -> None:
    assert locker.stdin is not None and locker.stdout is not None
    locker.stdin.close()
    locker.stdout.close()
    assert locker.wait(10) == 0


def test_database_locked_by_another_process(state: StateDir) -> None:
    tally = Tally("storage: locked database")
    state.seed()
    db = state.daemon.state_dir / "ctsd.db"
    # locked while the daemon serves: writes wait out the busy timeout, then UNAVAILABLE
    state.daemon.start()
    locker = _lock(db)
    try:
        channel, stub = _stub(state.daemon)
        with channel:
            _ids(stub)
            per_call = [_create(stub, "while-locked")]
        # locked before the daemon starts
        state.daemon.stop()
        outcome = Outcome(state.daemon)
        if outcome.serving:
            per_call += _writes_while_serving(state)
    finally:
        _unlock(locker)
    state.recovered(tally)
    _report(tally, outcome, per_call)
    _assert_deliberate(outcome, per_call)
    assert set(per_call) <= PER_CALL and per_call, per_call
    assert tally.lost == 0, tally.notes


@pytest.mark.parametrize("damage", ["header", "pages"])
def test_corrupt_database_file(state: StateDir, damage: str) -> None:
    tally = Tally(f"storage: corrupt database ({damage})")
    state.seed(5)
    db = state.daemon.state_dir / "ctsd.db"
    backup = db.with_name("backup.db")
    shutil.copyfile(db, backup)
    raw = bytearray(db.read_bytes())
    if damage == "header":
        raw[0:100] = os.urandom(100)
    else:  # every page but the schema page
        raw[4096:] = os.urandom(len(raw) - 4096)
    db.write_bytes(bytes(raw))
    outcome = Outcome(state.daemon)
    per_call: list[grpc.StatusCode] = []
    if outcome.serving:
        channel, stub = _stub(state.daemon)
        with channel:
            for call in (lambda: _ids(stub), lambda: _create(stub, "on-corrupt")):
                try:
                    code = call()
                    per_call.append(code if isinstance(code, grpc.StatusCode)
                                    else grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    per_call.append(exc.code())
        state.daemon.stop()
    shutil.copyfile(backup, db)  # the operator restores the backup
    backup.unlink()
    state.recovered(tally)
    _report(tally, outcome, per_call)
    _assert_deliberate(outcome, [c for c in per_call if c != grpc.StatusCode.OK])
    assert tally.lost == 0, tally.notes


@pytest.mark.parametrize("fault", ["missing", "wrong"])
def test_missing_or_wrong_master_key(state: StateDir, fault: str) -> None:
    tally = Tally(f"storage: {fault} master key")
    state.seed()
    key = state.daemon.state_dir / "master-key"
    original = key.read_bytes()
    if fault == "missing":
        key.unlink()
    else:
        key.write_bytes(encode_key(generate_key()))
    outcome = Outcome(state.daemon)
    if outcome.serving:
        state.daemon.stop()
    key.write_bytes(original)  # the operator puts the right key back
    os.chmod(key, 0o600)
    state.recovered(tally)
    _report(tally, outcome, [])
    assert outcome.refused_clearly(), (outcome.code, outcome.reasons, outcome.problems)
    assert tally.lost == 0, tally.notes


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: closing has nothing to flush
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_full_filesystem(state: StateDir) -> None:
    tally = Tally("storage: full filesystem")
    _mount_tmpfs(state.daemon.state_dir, "4m")
    state.seed()
    state.daemon.start()
    filler = _fill(state.daemon.state_dir)
    channel, stub = _stub(state.daemon)
    per_call: list[grpc.StatusCode] = []
    with channel:
        for n in range(50):  # the WAL may have room for a few more: write until refused
            code = _create(stub, f"full-{n}")
            if code == grpc.StatusCode.OK:
                state.acknowledged.add(f"full-{n}")
                continue
            per_call.append(code)
            if len(per_call) >= 3:
                break
        _ids(stub)
        filler.unlink()  # space is back: the running daemon writes again
        assert _create(stub, "space-back") == grpc.StatusCode.OK, "no write once space is back"
        state.acknowledged.add("space-back")
    state.daemon.stop()
    # full before the daemon starts
    filler = _fill(state.daemon.state_dir)
    outcome = Outcome(state.daemon)
    if outcome.serving:
        per_call += _writes_while_serving(state, attempts=3)
    filler.unlink()
    state.recovered(tally)
    _report(tally, outcome, per_call)
    assert per_call and set(per_call) <= PER_CALL, per_call
    _assert_deliberate(outcome, per_call)
    assert tally.lost == 0, tally.notes
