"""Fixtures for tests that run the real daemon against the exchange simulator.

Import them into a package's conftest: `from tests.support.sim_fixtures import *`.
The simulator and the daemon are shared by a module's tests (starting them
costs a second); tests keep apart by using their own connections and keys and
by clearing the faults they inject.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2_grpc as sgrpc
from cts.v1.health_service_pb2 import VerifyStartupRequest
from cts.v1.health_service_pb2_grpc import HealthServiceStub
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.simulator import SimulatorThread, running_simulator

ITEM_TIMEOUT_S = 3
EXCHANGES = ("binance", "bybit", "okx", "kraken")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with running_simulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def sim_daemon(sim: SimulatorThread) -> Iterator[DaemonProcess]:
    """ctsd with every exchange pointed at `sim` (through its TOML file) and short timeouts."""
    yield from simulated_daemon(sim)


def simulated_daemon(sim: SimulatorThread, item_timeout_s: float = ITEM_TIMEOUT_S,
                     more_toml: str = "") -> Iterator[DaemonProcess]:
    """The body of `sim_daemon`, for modules that need other settings (`more_toml`)."""
    root = short_tempdir()
    config = root / "ctsd.toml"
    tables = "".join(f'[exchanges.{x}]\nendpoint = "{sim.base_url}"\n' for x in EXCHANGES)
    config.write_text(f"[batch]\nitem_timeout_s = {item_timeout_s}\n{tables}{more_toml}")
    proc = DaemonProcess(root, ["--config", str(config)])
    try:
        warm_up(proc.start())
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is not None:
            print(f"ctsd exited early with {proc.proc.returncode}:\n{proc.logs()}")
        proc.stop()
        remove_tree(root)


def warm_up(daemon: DaemonProcess) -> None:
    """Have the daemon import ccxt now (VerifyStartup's exchange-modules check does, in a
    thread): a second on an idle machine, several on a loaded one, which must not be spent
    inside the first connection test's short deadline (ITEM_TIMEOUT_S)."""
    with grpc.insecure_channel(daemon.address) as channel:
        HealthServiceStub(channel).VerifyStartup(VerifyStartupRequest(), timeout=120)


@pytest.fixture
def sim_channel(sim_daemon: DaemonProcess, sim: SimulatorThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(sim_daemon.address) as channel:
        yield channel
    sim.clear_faults()
    sim.clock.offset_ms = 0

@pytest.fixture
def connections(sim_channel: grpc.Channel) -> csgrpc.ConnectionServiceStub:
    return csgrpc.ConnectionServiceStub(sim_channel)


@pytest.fixture
def engines(sim_channel: grpc.Channel) -> sgrpc.EngineServiceStub:
    return sgrpc.EngineServiceStub(sim_channel)
