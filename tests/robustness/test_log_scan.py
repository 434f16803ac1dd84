"""No credential in any log line, at the most talkative settings there are.

The daemon runs at `log_level = "debug"` with ccxt's request lines let through
(`log_ccxt_debug = true`: every request's headers), against the simulator, through:
successful tests on every venue, tests that fail (a mistyped secret), every fault
kind the simulator injects, LIVE engines placing and cancelling orders, and a SIGHUP
reload. Then every line of its log is searched for each key, secret and passphrase in
every spelling a library might use (raw, base64 with and without padding, URL-safe
base64, hex in either case, URL-encoded). A key may appear only as its hint.
Quick form: one pass of faults; `CTS_SOAK_ROUNDS` passes in `make soak`.
"""

from __future__ import annotations

import base64
import secrets
import signal
from collections.abc import Iterator
from urllib.parse import quote, quote_plus

import grpc
import pytest

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_live import live_grid
from tests.api.test_engine_service import wait_for
from tests.robustness.tally import Tally, soak_rounds
from tests.support.conn_tests import PASSPHRASE, SimConnection, run_test, sim_connection
from tests.support.daemon_process import DaemonProcess, configured_daemon
from tests.support.simulator import SimulatorThread, running_simulator

pytestmark = pytest.mark.long

VENUES = ("binance", "bybit", "okx", "kraken")
LIVE_VENUES = ("bybit", "okx")
FAULTS = ("rate_limit", "server_error", "html_503", "maintenance", "malformed_json",
          "truncated_json", "connection_reset", "invalid_key", "ip_not_whitelisted")


def spellings(value: str) -> set[str]:
    raw = value.encode()
    found = {value, raw.hex(), raw.hex().upper(), quote(value, safe=""), quote_plus(value)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        found |= {encoded.decode(), encoded.decode().rstrip("=")}
    return found


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with running_simulator() as simulator:
        yield simulator


@pytest.fixture
def talkative(sim: SimulatorThread) -> Iterator[DaemonProcess]:
    tables = "".join(f'[exchanges.{x}]\nendpoint = "{sim.base_url}"\n' for x in VENUES)
    with configured_daemon('[daemon]\nlog_level = "debug"\nlog_ccxt_debug = true\n'
                           f"[batch]\nitem_timeout_s = 5\n{tables}") as daemon:
        yield daemon


def connection(stub: csgrpc.ConnectionServiceStub, sim: SimulatorThread, cid: str,
               venue: str, stored_secret: str | None = None) -> SimConnection:
    """A connection with a key of its own, long and random: nothing else can spell it."""
    return sim_connection(stub, sim, cid, venue, api_key=f"K{secrets.token_hex(16)}",
                          stored_secret=stored_secret)


def test_no_credential_reaches_a_debug_log(sim: SimulatorThread,
                                           talkative: DaemonProcess) -> None:
    tally = Tally("log scan at debug: credential spellings")
    stored: list[str] = []
    with grpc.insecure_channel(talkative.address) as channel:
        stub, engines = csgrpc.ConnectionServiceStub(channel), sgrpc.EngineServiceStub(channel)
        good = {v: connection(stub, sim, f"good-{v}", v) for v in VENUES}
        wrong = {v: connection(stub, sim, f"wrong-{v}", v, stored_secret=mistyped(v))
                 for v in VENUES}
        for made in (*good.values(), *wrong.values()):
            stored += [made.api_key, made.secret]
            run_test(stub, made.name)
        stored.append(PASSPHRASE)
        for _ in range(soak_rounds(1)):
            for kind in FAULTS:
                for venue in VENUES:
                    sim.fault(kind, venue=venue, count=1, delay_s=0.1)
                    run_test(stub, good[venue].name)
            sim.clear_faults()
        for venue in LIVE_VENUES:
            name = f"{good[venue].name}/engine"
            assert run_test(stub, good[venue].name).final().status != cpb.TEST_STATUS_FAILED
            engines.StartEngine(pb.StartEngineRequest(name=name,
                                                      config=live_grid(engines, name)))
            wait_for(engines, name, lambda e: e.orders_placed >= 2)
            talkative.send(signal.SIGHUP)  # a reload re-installs the handler: same filter
            engines.StopEngine(pb.StopEngineRequest(name=name))  # cancels its orders
    talkative.stop()
    log = talkative.logs()
    needles = {spelled: value for value in stored for spelled in spellings(value)}
    lines = log.splitlines()
    for line in lines:
        tally.tried += 1
        found = [spelled for spelled in needles if spelled in line]
        if found:
            tally.lost += 1
            tally.notes.append(f"{found[0][:8]}... in: {line}")
        else:
            tally.survived += 1
    requests = sum("Request:" in line for line in lines)
    tally.notes.insert(0, f"{len(stored)} credentials in {len(needles)} spellings; "
                          f"{requests} ccxt request lines among {len(lines)}")
    tally.report()
    assert requests > 50, "ccxt's debug lines did not reach the log: nothing was scanned"
    assert tally.lost == 0, tally.notes[:5]


def mistyped(venue: str) -> str:
    text = f"mistyped-{venue}-{secrets.token_hex(8)}"
    return base64.b64encode(text.encode()).decode() if venue == "kraken" else text
