"""EngineManager at daemon shutdown with `cancel_orders_on_shutdown`: paper and LIVE engines
cancel their open orders before they stop, within the grace, and say what stayed open.
(Without the option orders rest: test_manager's `..._but_shutdown_leaves_them`.)"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from decimal import Decimal

import pytest

from ctsd.engine.config import TradingMode
from ctsd.engine.manager import EngineManager
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.orders import OrderStatus
from ctsd.engine.status import EngineState
from ctsd.engine.store_ports import DesiredState
from ctsd.errors import Unavailable
from ctsd.strategies.model import Balance
from tests.engine.fakes import FakeExchange
from tests.engine.world import REGISTRY, World, grid

D = Decimal
GRID_CLOSES = [D("10.2")] * 20
FUNDS = (Balance("USDT", D(1000), D(1000)),)


class Refusing(FakeExchange):
    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        raise Unavailable("exchange in maintenance")


class RefusingOne(FakeExchange):
    """Refuses the first cancel it is asked for, and only that one."""

    refused = ""

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        if not self.refused:
            self.refused = client_order_id
            raise Unavailable("order locked")
        return await super().cancel_order(symbol, client_order_id)


class Hanging(FakeExchange):
    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ctsd.engine")


def cancelling(w: World) -> EngineManager:
    """A manager on `w` that cancels open orders at shutdown."""
    return EngineManager(w.store, w.backend, REGISTRY, clock=w.clock, hub=w.hub,
                         heartbeat_s=30, shutdown_grace_s=0.2, cancel_orders_on_shutdown=True)


async def run_until_resting(w: World, manager: EngineManager, *modes: TradingMode) -> None:
    for connection_id, mode in zip(w.markets, modes, strict=True):
        await manager.start(connection_id, grid(mode=mode))
    await w.clock.advance(1)
    assert all(manager.get(c).open_orders == 2 for c in w.markets)


@dataclass(frozen=True)
class CancelLine:
    levelname: str
    cancelled: str
    left_open: str


def cancel_lines(caplog: pytest.LogCaptureFixture) -> dict[str, CancelLine]:
    """The "open orders cancelled" log lines by connection (their `extra` fields)."""
    return {r.__dict__["connection_id"]: CancelLine(r.levelname, r.__dict__["cancelled"],
                                                    r.__dict__["left_open"])
            for r in caplog.records if r.msg == "open orders cancelled"}


@pytest.mark.asyncio
async def test_shutdown_cancels_paper_and_live_orders_and_keeps_engines_desired_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = FakeExchange(balances=FUNDS)
    w = World({"paper": GRID_CLOSES, "live": GRID_CLOSES}, exchanges={"live": exchange})
    async with cancelling(w) as manager:
        await run_until_resting(w, manager, TradingMode.PAPER, TradingMode.LIVE)
    for connection_id in ("paper", "live"):
        assert {o.status for o in w.store.orders[connection_id].values()} == {
            OrderStatus.CANCELED}
        assert w.store.engines[connection_id].desired is DesiredState.RUNNING
        assert w.states(connection_id)[-1] is EngineState.STOPPED
        line = cancel_lines(caplog)[connection_id]
        assert (len(line.cancelled.split(",")), line.left_open) == (2, "")
    assert {o.status for o in exchange.orders.values()} == {OrderStatus.CANCELED}


@pytest.mark.asyncio
async def test_a_venue_refusing_cancels_does_not_hold_up_the_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = Refusing(balances=FUNDS)
    w = World({"live": GRID_CLOSES}, exchanges={"live": exchange})
    async with cancelling(w) as manager:
        await run_until_resting(w, manager, TradingMode.LIVE)
    assert w.states("live")[-1] is EngineState.STOPPED
    line = cancel_lines(caplog)["live"]
    assert (line.levelname, line.cancelled, len(line.left_open.split(","))) == ("WARNING", "", 2)
    assert {o.status for o in exchange.orders.values()} == {OrderStatus.OPEN}


@pytest.mark.asyncio
async def test_one_refused_cancel_does_not_leave_the_other_orders_resting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exchange = RefusingOne(balances=FUNDS)
    w = World({"live": GRID_CLOSES}, exchanges={"live": exchange})
    async with cancelling(w) as manager:
        await run_until_resting(w, manager, TradingMode.LIVE)
    line = cancel_lines(caplog)["live"]
    assert (line.levelname, line.left_open) == ("WARNING", exchange.refused)
    assert len(line.cancelled.split(",")) == 1
    assert {cid: o.status for cid, o in exchange.orders.items() if cid != exchange.refused} == {
        line.cancelled: OrderStatus.CANCELED}
    assert exchange.orders[exchange.refused].status is OrderStatus.OPEN


@pytest.mark.asyncio
async def test_cancels_still_running_at_the_end_of_the_grace_are_aborted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = World({"live": GRID_CLOSES}, exchanges={"live": Hanging(balances=FUNDS)})
    async with cancelling(w) as manager:
        await run_until_resting(w, manager, TradingMode.LIVE)
    assert any(r.msg.startswith("engine did not stop within the shutdown grace")
               for r in caplog.records)
    assert len(cancel_lines(caplog)["live"].left_open.split(",")) == 2
    assert w.backend.closed == ["live"]
