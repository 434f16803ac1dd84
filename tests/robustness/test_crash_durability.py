"""A client storm against the real daemon, SIGKILLed at seeded random moments.

Each worker thread owns its own connection ids, so its writes are ordered and
the model of what the daemon acknowledged is exact. A call cut short by the
kill is *uncertain*: afterwards the connection must be in the state before or
after it, never anything in between. After every kill the database is checked
with sqlite3 (read-only) and every sealed secret is opened with the master key.
Quick form: 5 rounds; `CTS_SOAK_ROUNDS=20` for the long one.

The storm, its verification and the kill round are public: the engine storm
(`test_engine_crash_durability.py`) runs this one alongside its LIVE engines.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.robustness.state_check import Known, check_database
from tests.robustness.tally import KILLED, Tally, soak_rounds, storm
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir

pytestmark = pytest.mark.long

SEED = 7
WORKERS = 4
CALL_TIMEOUT_S = 10.0
JOIN_TIMEOUT_S = 30.0
STORM_ID = re.compile(r"^w(\d+)-c\d+$")
"""The ids storm workers create (`Worker.next_id`); other connections are not theirs."""
Storm = Callable[[threading.Event], None]
"""One client's calls, on a thread of its own, until the event is set or the daemon dies."""


@dataclass
class Worker:
    index: int
    rng: random.Random
    states: dict[str, Known | None] = field(default_factory=dict)
    # cid -> the states the daemon may hold after an interrupted call
    uncertain: dict[str, tuple[Known | None, Known | None]] = field(default_factory=dict)
    serial: int = 0
    interrupted: int = 0
    tally: Tally = field(default_factory=lambda: Tally("crash durability: storm calls"))

    def next_id(self) -> str:
        self.serial += 1
        return f"w{self.index}-c{self.serial}"


def _known(conn: pb.Connection, api_key: str, api_secret: str) -> Known:
    return Known(conn.display_name, conn.enabled, api_key, api_secret, conn.etag)


def _one_op(stub: sgrpc.ConnectionServiceStub, w: Worker) -> None:
    live = [cid for cid, s in w.states.items() if s is not None]
    op = w.rng.choice(["create", "create"] + (["update", "enable", "delete"] if live else []))
    if op == "create":
        cid = w.next_id()
        before: Known | None = None
        key, secret = f"key-{cid}-{w.rng.randrange(10**9)}", f"secret-{cid}-{w.rng.random()}"
        new_name = f"name {cid}"
        attempt: Known | None = Known(new_name, True, key, secret, "?")

        def call() -> Known | None:
            made = stub.CreateConnection(
                spb.CreateConnectionRequest(
                    connection_id=cid,
                    connection=pb.Connection(
                        display_name=new_name, exchange="binance",
                        api_type=pb.API_TYPE_SPOT, enabled=True,
                        credentials=pb.Credentials(api_key=key, api_secret=secret),
                    ),
                ),
                timeout=CALL_TIMEOUT_S,
            )
            return _known(made, key, secret)
    else:
        cid = w.rng.choice(live)
        before = w.states[cid]
        assert before is not None
        prior = before
        if op == "update":
            secret = f"rotated-{w.rng.random()}"
            new_name = f"name {cid} {w.rng.randrange(10**6)}"
            attempt = Known(new_name, prior.enabled, prior.api_key, secret, "?")

            def call() -> Known | None:
                updated = stub.UpdateConnection(
                    spb.UpdateConnectionRequest(
                        connection=pb.Connection(
                            name=f"connections/{cid}", display_name=new_name,
                            credentials=pb.Credentials(api_secret=secret), etag=prior.etag,
                        ),
                        update_mask=field_mask_pb2.FieldMask(
                            paths=["display_name", "credentials.api_secret"]),
                    ),
                    timeout=CALL_TIMEOUT_S,
                )
                return _known(updated, prior.api_key, secret)
        elif op == "enable":
            attempt = Known(prior.display_name, not prior.enabled, prior.api_key,
                            prior.api_secret, "?")

            def call() -> Known | None:
                changed = stub.SetConnectionEnabled(
                    spb.SetConnectionEnabledRequest(
                        name=f"connections/{cid}", enabled=not prior.enabled, etag=prior.etag),
                    timeout=CALL_TIMEOUT_S,
                )
                return _known(changed, prior.api_key, prior.api_secret)
        else:
            attempt = None

            def call() -> Known | None:
                stub.DeleteConnection(
                    spb.DeleteConnectionRequest(name=f"connections/{cid}", etag=prior.etag),
                    timeout=CALL_TIMEOUT_S,
                )
                return None
    try:
        w.states[cid] = call()
        w.tally.answer(grpc.StatusCode.OK)
    except grpc.RpcError as exc:
        if exc.code() in KILLED:
            w.uncertain[cid] = (before, attempt)  # cut short by the kill
            w.interrupted += 1
            raise
        w.tally.refused(f"{op} {cid}", exc)


def storm_connections(address: str, w: Worker, stop: threading.Event) -> None:
    """Connection writes by `w` until `stop` or until the daemon dies under a call."""
    storm(address, sgrpc.ConnectionServiceStub, lambda stub: _one_op(stub, w), stop)


def _same(found: Known | None, want: Known | None, check_etag: bool) -> bool:
    if found is None or want is None:
        return found is want
    if check_etag and found.etag != want.etag:
        return False
    return (found.display_name, found.enabled, found.api_key, found.api_secret) == (
        want.display_name, want.enabled, want.api_key, want.api_secret)


def verify_connections(daemon: DaemonProcess, workers: list[Worker]) -> tuple[int, list[str]]:
    """Check the killed daemon's DB, restart it, and check every worker's connections."""
    stored, problems = check_database(daemon.state_dir)
    daemon.start()
    checked = 0
    with grpc.insecure_channel(daemon.address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        for w in workers:
            for cid, want in list(w.states.items()):
                checked += 1
                try:
                    c = stub.GetConnection(spb.GetConnectionRequest(name=f"connections/{cid}"))
                    db_row = stored.get(cid)
                    found: Known | None = Known(
                        c.display_name, c.enabled, db_row.api_key if db_row else "",
                        db_row.api_secret if db_row else "", c.etag)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    found = None
                if cid in w.uncertain:
                    before, after = w.uncertain[cid]
                    ok = _same(found, before, check_etag=True) or _same(found, after, False)
                else:
                    ok = _same(found, want, check_etag=True)
                if not ok:
                    problems.append(f"{cid}: acknowledged {want}, found {found}")
                w.states[cid] = found
            w.uncertain.clear()
    for cid in stored:
        storm_id = STORM_ID.match(cid)
        if storm_id is None:
            continue  # not a storm connection (the engine storm's own)
        owner = int(storm_id.group(1))
        if cid not in workers[owner].states:
            problems.append(f"{cid} exists but its creation was never even attempted")
    return checked, problems


def record_uncertain_creates(workers: list[Worker]) -> None:
    for w in workers:
        for cid, (before, after) in w.uncertain.items():
            if before is None and cid not in w.states:
                w.states[cid] = after


def storm_until_killed(daemon: DaemonProcess, storms: Sequence[Storm], after_s: float) -> None:
    """Run each storm on a thread of its own, SIGKILL the daemon `after_s` in, join them all."""
    stop = threading.Event()
    threads = [threading.Thread(target=storm, args=(stop,)) for storm in storms]
    for t in threads:
        t.start()
    time.sleep(after_s)
    daemon.kill()
    stop.set()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
        assert not t.is_alive(), "a client call hung after the kill"


def connection_workers(seed: int, count: int = WORKERS) -> list[Worker]:
    return [Worker(i, random.Random(seed * 100 + i)) for i in range(count)]


def connection_storms(address: str, workers: list[Worker]) -> list[Storm]:
    return [partial(storm_connections, address, w) for w in workers]


def merge_tallies(name: str, parts: Iterable[Tally]) -> Tally:
    """Several threads' rows as one."""
    merged = Tally(name)
    for part in parts:
        merged.tried += part.tried
        merged.survived += part.survived
        merged.lost += part.lost
        merged.codes.update(part.codes)
        merged.notes.extend(part.notes)
    return merged


def storm_tally(workers: list[Worker], rounds: int, seed: int) -> Tally:
    """Every worker's answers in one row, with how many calls a kill cut short."""
    storm = merge_tallies("crash durability: storm calls", (w.tally for w in workers))
    cut = sum(w.interrupted for w in workers)
    storm.notes.append(f"{rounds} SIGKILL rounds, seed {seed}; {cut} calls cut short by a kill")
    return storm


def count_checks(tally: Tally, checked: int, problems: list[str], round_no: int) -> None:
    tally.tried += checked
    tally.survived += checked - len(problems)
    tally.lost += len(problems)
    tally.notes.extend(f"round {round_no}: {p}" for p in problems)


@pytest.mark.timeout(600)
def test_acknowledged_writes_survive_sigkill() -> None:
    rounds = soak_rounds(5)
    root = short_tempdir()
    daemon = DaemonProcess(root)
    rng = random.Random(SEED)
    workers = connection_workers(SEED)
    verified = Tally("crash durability: records checked")
    try:
        daemon.start()
        for n in range(rounds):
            storm_until_killed(daemon, connection_storms(daemon.address, workers),
                               rng.uniform(0.2, 1.5))
            record_uncertain_creates(workers)
            checked, problems = verify_connections(daemon, workers)
            count_checks(verified, checked, problems, n)
        daemon.stop()
    finally:
        if daemon.proc is not None:
            daemon.kill()
        remove_tree(root)
    storm = storm_tally(workers, rounds, SEED)
    storm.report()
    verified.report()
    assert storm.lost == 0 and verified.lost == 0
    assert storm.survived > rounds, "the storm hardly ran"
