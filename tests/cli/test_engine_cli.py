"""`cts engine ...` as a process against a real `ctsd` trading on paper against the simulator.

The daemon and simulator are shared by the module (`sim_daemon`); each test
uses its own connection. Most runs are real processes (`cts` from
test_cli), as a user or script would run them; the two that need a terminal
(the redrawn watch table, the --live confirmation) run in-process with
streams that claim to be one.
"""

from __future__ import annotations

import io
import json

import grpc
import pytest

from cts.cli.engine_views import CLEAR_SCREEN, engine_detail, engine_name
from cts.cli.engines import EngineBoard, parse_interval
from cts.cli.main import run
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from tests.api.test_engine_service import SYMBOL, wait_for
from tests.support.conn_tests import SimConnection, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import SimulatorThread

from .conftest import Result, TtyInput
from .test_cli import assert_one_error_line, cts, detail

pytestmark = pytest.mark.long

SMA = ("--strategy", "sma_cross", "--symbol", SYMBOL, "--param", "fast=2", "--param", "slow=3")
FAST = ("--param", "quote_amount=100", "--interval", "1s")


class TtyOutput(io.StringIO):
    """A stdout that claims to be a terminal, so watch draws its table."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def engines(sim_channel: grpc.Channel) -> sgrpc.EngineServiceStub:
    return sgrpc.EngineServiceStub(sim_channel)


def connection(sim_channel: grpc.Channel, sim: SimulatorThread, cid: str) -> SimConnection:
    return sim_connection(csgrpc.ConnectionServiceStub(sim_channel), sim, cid)


def in_process(
    daemon: DaemonProcess, *argv: str, stdin: io.StringIO, stdout: io.StringIO
) -> Result:
    err = io.StringIO()
    try:
        code = run(["--addr", daemon.address, *argv], stdin=stdin, stdout=stdout, stderr=err)
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    return Result(code, stdout.getvalue(), err.getvalue())


def test_a_paper_engine_from_start_to_stop(
    sim_daemon: DaemonProcess,
    sim_channel: grpc.Channel,
    sim: SimulatorThread,
    engines: sgrpc.EngineServiceStub,
) -> None:
    conn = connection(sim_channel, sim, "cli-sma")
    started = cts(sim_daemon, "engine", "start", conn.id, *SMA, *FAST)
    assert started.returncode == 0, started.stderr
    fields = detail(started.stdout)
    assert (fields["Name"], fields["Mode"], fields["Strategy"]) == (
        f"{conn.name}/engine", "paper", "sma_cross",
    )  # fmt: skip
    wait_for(engines, f"{conn.name}/engine", lambda e: e.cycles >= 1)

    status = json.loads(cts(sim_daemon, "engine", "status", conn.id, "-o", "json").stdout)
    assert status["state"] == "ENGINE_STATE_RUNNING" and int(status["cycles"]) >= 1
    assert status["symbols"] == [SYMBOL] and status["mode"] == "TRADING_MODE_PAPER"
    shown = detail(cts(sim_daemon, "engine", "status", conn.name).stdout)
    assert shown["State"] == "running" and shown["Symbols"] == SYMBOL

    header, *rows = cts(sim_daemon, "engine", "list").stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATE", "MODE", "STRATEGY"]
    row = next(r.split() for r in rows if r.startswith(conn.id + " "))
    assert row[1:5] == ["running", "paper", "sma_cross", SYMBOL]
    listed = json.loads(cts(sim_daemon, "engine", "list", "-o", "json").stdout)
    assert f"{conn.name}/engine" in [e["name"] for e in listed["engines"]]

    dry = cts(sim_daemon, "engine", "test", conn.id)  # the running engine's config
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Market at ") and "Would place" in dry.stdout
    assert dry.stdout.splitlines()[2].split()[0] == SYMBOL  # the ticker row

    orders = cts(sim_daemon, "engine", "orders", conn.id, "-o", "json")
    assert orders.returncode == 0 and isinstance(json.loads(orders.stdout)["orders"], list)
    trades = cts(sim_daemon, "engine", "trades", conn.id, "-o", "json")
    assert trades.returncode == 0 and isinstance(json.loads(trades.stdout)["trades"], list)

    watched = cts(sim_daemon, "engine", "watch", "--duration", "2", "-o", "json")
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert list(events[0]) == ["snapshot"]
    assert f"{conn.name}/engine" in [e["name"] for e in events[0]["snapshot"]["engines"]]
    changed = [e["changed"] for e in events[1:] if "changed" in e]
    assert any(e["name"] == f"{conn.name}/engine" for e in changed), events  # 1 s cycles

    stopped = cts(sim_daemon, "engine", "stop", conn.id)
    assert stopped.returncode == 0, stopped.stderr
    assert detail(stopped.stdout)["State"] == "stopped"


def test_grid_orders_are_listed_and_dry_runs_take_config_flags(
    sim_daemon: DaemonProcess,
    sim_channel: grpc.Channel,
    sim: SimulatorThread,
    engines: sgrpc.EngineServiceStub,
) -> None:
    conn = connection(sim_channel, sim, "cli-grid")
    grid = ("--strategy", "grid", "--symbol", SYMBOL, "--param", "spacing_pct=1")
    probe = cts(
        sim_daemon, "engine", "test", conn.id, *grid, "--param", "reference_price=1",
        "--param", "levels=1", "--param", "amount=0.001", "-o", "json",
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    price = json.loads(probe.stdout)["tickers"][0]["last"]
    config = (
        *grid, "--param", f"reference_price={price}", "--param", "levels=2",
        "--param", "amount=0.001", "--interval", "1s",
        "--paper-balance", "USDT=100000", "--paper-balance", "BTC=1",
    )  # fmt: skip
    dry = cts(sim_daemon, "engine", "test", conn.id, *config)
    intents = dry.stdout.split("Would place:\n", 1)[1].splitlines()
    assert intents[0].split()[:3] == ["SYMBOL", "SIDE", "TYPE"] and len(intents) > 1, dry.stdout
    assert all("allowed" in line for line in intents[1:])

    assert cts(sim_daemon, "engine", "start", conn.id, *config).returncode == 0
    wait_for(engines, f"{conn.name}/engine", lambda e: e.orders_placed >= len(intents) - 1)
    header, *rows = cts(sim_daemon, "engine", "orders", conn.id).stdout.splitlines()
    assert header.startswith("CLIENT ORDER ID") and len(rows) >= len(intents) - 1
    assert all(row.startswith("cts") and " limit " in row for row in rows)
    listed = json.loads(cts(sim_daemon, "engine", "orders", conn.id, "-o", "json").stdout)
    assert len(listed["orders"]) == len(rows)
    trades = cts(sim_daemon, "engine", "trades", conn.id)
    assert trades.returncode == 0 and (trades.stdout or trades.stderr == "No trades.\n")
    assert cts(sim_daemon, "engine", "stop", conn.id).returncode == 0


def test_a_bad_param_exits_1_naming_the_field(
    sim_daemon: DaemonProcess, sim_channel: grpc.Channel, sim: SimulatorThread
) -> None:
    conn = connection(sim_channel, sim, "cli-bad")
    bad = cts(
        sim_daemon, "engine", "start", conn.id, "--strategy", "sma_cross", "--symbol", SYMBOL,
        "--param", "fast=0", "--param", "slow=3",
    )  # fmt: skip
    assert_one_error_line(bad, "error: INVALID_ARGUMENT: ")
    assert "config.params.fast" in bad.stderr
    missing = cts(sim_daemon, "engine", "status", "cli-nope")
    assert_one_error_line(missing, "error: NOT_FOUND: ")


@pytest.mark.parametrize(
    "argv",
    [
        ["engine"],
        ["engine", "start", "x", "--symbol", SYMBOL],  # no --strategy
        ["engine", "start", "x", *SMA[:-2], "--param", "fast"],  # not KEY=VALUE
        ["engine", "start", "x", *SMA, "--param", "fast=3"],  # the same key twice
        ["engine", "start", "x", *SMA, "--interval", "0s"],
        ["engine", "start", "x", *SMA, "--interval", "soon"],
        ["engine", "start", "x", *SMA, "--max-open-orders", "many"],
        ["engine", "start", "x", *SMA, "--live"],  # real orders, no terminal, no --yes
        ["engine", "status"],
        ["engine", "watch", "--duration", "-1"],
    ],
)
def test_usage_errors_exit_2(sim_daemon: DaemonProcess, argv: list[str]) -> None:
    result = cts(sim_daemon, *argv)
    assert result.returncode == 2, result
    assert result.stdout == ""


def test_watch_redraws_a_table_on_a_terminal(sim_daemon: DaemonProcess) -> None:
    shown = in_process(
        sim_daemon, "engine", "watch", "--duration", "0.5", stdin=TtyInput(""), stdout=TtyOutput()
    )
    assert shown.code == 0, shown.stderr
    frames = shown.stdout.split(CLEAR_SCREEN)
    assert frames[0] == "" and len(frames) >= 2  # every frame starts on a cleared screen
    assert "engine(s)  snapshot" in frames[1]


def test_live_asks_first_on_a_terminal_and_no_means_nothing_starts(
    sim_daemon: DaemonProcess, sim_channel: grpc.Channel, sim: SimulatorThread
) -> None:
    conn = connection(sim_channel, sim, "cli-live")
    declined = in_process(
        sim_daemon, "engine", "start", conn.id, *SMA, "--live", stdin=TtyInput("n\n"),
        stdout=io.StringIO(),
    )  # fmt: skip
    assert declined.code == 2 and "LIVE, placing real orders? [y/N]" in declined.stderr
    assert declined.stdout == ""
    gone = cts(sim_daemon, "engine", "status", conn.id)
    assert gone.returncode == 1 and "NOT_FOUND" in gone.stderr


@pytest.mark.parametrize(
    ("text", "nanos"),
    [("5s", 5 * 10**9), ("500ms", 5 * 10**8), ("1m", 60 * 10**9), ("2.5", 25 * 10**8)],
)
def test_intervals_take_a_unit_or_bare_seconds(text: str, nanos: int) -> None:
    assert parse_interval(text).ToNanoseconds() == nanos


@pytest.mark.parametrize("given", ["main", "connections/main", "connections/main/engine"])
def test_engine_names_from_what_people_type(given: str) -> None:
    assert engine_name(given) == "connections/main/engine"


def test_the_watch_board_keeps_the_newest_version_of_each_engine() -> None:
    def engine(version: int) -> pb.Engine:
        return pb.Engine(name="connections/a/engine", cycles=version, version=version)

    board = EngineBoard()
    board.apply(pb.WatchEnginesResponse(snapshot=pb.EngineSnapshot(engines=[engine(2)])))
    assert board.apply(pb.WatchEnginesResponse(changed=engine(1))) == "changed a"
    assert [e.version for e in board.engines()] == [2]  # a stale event is dropped
    board.apply(pb.WatchEnginesResponse(changed=engine(3)))
    assert [e.version for e in board.engines()] == [3]
    batch = pb.WatchEnginesResponse(changes=pb.EngineChanges(engines=[engine(5), engine(4)]))
    assert board.apply(batch) == "changed a"
    assert [e.version for e in board.engines()] == [5]  # the newest in a batch wins too
    resync = pb.WatchEnginesResponse(snapshot=pb.EngineSnapshot(resync=True))
    assert (board.apply(resync), board.engines()) == ("resync", [])


def test_status_shows_a_perpetual_position_with_the_venues_figures() -> None:
    engine = pb.Engine(
        name="connections/p/engine", fees="1.5", funding_pnl="-0.25", liquidations=0,
        position_differences=1, last_position_difference="BTC/USDT:USDT: ledger 0.05, venue 0",
        positions=[pb.Position(
            symbol="BTC/USDT:USDT", amount="-0.05", average_price="60000", unrealized_pnl="5",
            side=pb.POSITION_SIDE_SHORT, mark_price="59900", leverage="10",
            margin_mode=pb.POSITION_MARGIN_MODE_ISOLATED, margin="300",
            liquidation_price="65700.5")])
    shown = engine_detail(engine)
    assert ("Position BTC/USDT:USDT short:  -0.05 @ 60000 (mark 59900, unrealized 5, 10x, "
            "isolated, margin 300, liquidation 65700.5)") in shown
    assert "Funding" in shown and "-0.25" in shown
    assert "Last difference" in shown and "ledger 0.05, venue 0" in shown
    assert "Fees" in shown and "1.5" in shown


def test_leverage_and_the_mismatch_policy_are_config_flags() -> None:
    from cts.cli.engines import build_config
    from cts.cli.main import build_parser

    args = build_parser().parse_args([
        "engine", "start", "p", "--strategy", "sma_cross", "--symbol", "BTC/USDT:USDT",
        "--leverage", "BTC/USDT:USDT=5", "--on-position-mismatch", "adopt"])
    config = build_config(args)
    assert config is not None
    assert dict(config.leverage) == {"BTC/USDT:USDT": 5}
    assert config.on_position_mismatch == pb.POSITION_MISMATCH_POLICY_ADOPT
