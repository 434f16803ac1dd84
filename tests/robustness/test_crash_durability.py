"""A client storm against the real daemon, SIGKILLed at seeded random moments.

Each worker thread owns its own connection ids, so its writes are ordered and
the model of what the daemon acknowledged is exact. A call cut short by the
kill is *uncertain*: afterwards the connection must be in the state before or
after it, never anything in between. After every kill the database is checked
with sqlite3 (read-only) and every sealed secret is opened with the master key.
Quick form: 5 rounds; `CTS_SOAK_ROUNDS=20` for the long one.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.robustness.state_check import Known, check_database
from tests.robustness.tally import Tally, soak_rounds
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir

SEED = 7
WORKERS = 4
CALL_TIMEOUT_S = 10.0


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
    lost: list[str] = field(default_factory=list)

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
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            w.uncertain[cid] = (before, attempt)  # cut short by the kill
            w.interrupted += 1
            raise
        if not w.tally.answer(code):
            w.lost.append(f"{op} {cid}: {code.name} {exc.details()}")


def _storm(address: str, w: Worker, stop: threading.Event) -> None:
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        while not stop.is_set():
            try:
                _one_op(stub, w)
            except grpc.RpcError:
                return  # the daemon died under this call


def _same(found: Known | None, want: Known | None, check_etag: bool) -> bool:
    if found is None or want is None:
        return found is want
    if check_etag and found.etag != want.etag:
        return False
    return (found.display_name, found.enabled, found.api_key, found.api_secret) == (
        want.display_name, want.enabled, want.api_key, want.api_secret)


def _verify(daemon: DaemonProcess, workers: list[Worker]) -> tuple[int, list[str]]:
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
        owner = int(cid.split("-")[0][1:])
        if cid not in workers[owner].states:
            problems.append(f"{cid} exists but its creation was never even attempted")
    return checked, problems


def _record_uncertain_creates(workers: list[Worker]) -> None:
    for w in workers:
        for cid, (before, after) in w.uncertain.items():
            if before is None and cid not in w.states:
                w.states[cid] = after


@pytest.mark.timeout(600)
def test_acknowledged_writes_survive_sigkill() -> None:
    rounds = soak_rounds(5)
    root = short_tempdir()
    daemon = DaemonProcess(root)
    rng = random.Random(SEED)
    workers = [Worker(i, random.Random(SEED * 100 + i)) for i in range(WORKERS)]
    verified = Tally("crash durability: records checked")
    try:
        daemon.start()
        for n in range(rounds):
            stop = threading.Event()
            threads = [threading.Thread(target=_storm, args=(daemon.address, w, stop))
                       for w in workers]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.2, 1.5))
            daemon.kill()
            stop.set()
            for t in threads:
                t.join(30)
                assert not t.is_alive(), "a client call hung after the kill"
            _record_uncertain_creates(workers)
            checked, problems = _verify(daemon, workers)
            verified.tried += checked
            verified.survived += checked - len(problems)
            verified.lost += len(problems)
            verified.notes.extend(f"round {n}: {p}" for p in problems)
        daemon.stop()
    finally:
        if daemon.proc is not None:
            daemon.kill()
        remove_tree(root)
    storm = Tally("crash durability: storm calls")
    for w in workers:
        storm.tried += w.tally.tried
        storm.survived += w.tally.survived
        storm.lost += w.tally.lost
        storm.codes.update(w.tally.codes)
        storm.notes.extend(w.lost)
    cut = sum(w.interrupted for w in workers)
    storm.notes.append(f"{rounds} SIGKILL rounds, seed {SEED}; {cut} calls cut short by a kill")
    storm.report()
    verified.report()
    assert storm.lost == 0 and verified.lost == 0
    assert storm.survived > rounds, "the storm hardly ran"
