"""One engine, one cycle at a time: paper broker, scripted market, in-memory store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal

import pytest

from ctsd.engine.brokers.paper import PaperBroker
from ctsd.engine.config import EngineConfig, PaperSettings, RiskLimits, validate_config
from ctsd.engine.engine import Engine, RiskLimitBreached
from ctsd.engine.orders import OrderStatus
from ctsd.engine.status import EngineStatus
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.errors import Unavailable
from ctsd.strategies.grid import GRID
from ctsd.strategies.model import Side
from ctsd.strategies.registry import StrategyRegistry
from ctsd.strategies.sma_cross import SMA_CROSS
from tests.engine.fakes import MemoryStore, ScriptedMarket
from tests.support.virtual_clock import VirtualClock

D = Decimal
SYMBOL = "BTC/USDT"
REGISTRY = StrategyRegistry.of(SMA_CROSS, GRID)
# The series of tests/strategies/test_sma_cross.py: golden crosses at candles 4 and 11, death at 8.
CLOSES = [D(x) for x in (10, 10, 10, 10, 11, 12, 13, 12, 10, 9, 9, 10, 12)]
SMA = {"fast": "2", "slow": "3", "quote_amount": "100"}
NO_SLIPPAGE = PaperSettings(balances=(("USDT", D(1000)),), slippage_bps=D(0))


class Harness:
    def __init__(self, config: EngineConfig, closes: Sequence[Decimal] = CLOSES,
                 store: MemoryStore | None = None) -> None:
        self.clock = VirtualClock()
        self.market = ScriptedMarket(self.clock, {SYMBOL: closes})
        self.store = store or MemoryStore()
        self.published: list[EngineStatus] = []
        record = EngineRecord("conn1", "e1e1", config, DesiredState.RUNNING)
        self.store.engines["conn1"] = record
        self.engine = Engine(record, validate_config(config, REGISTRY),
                             PaperBroker(config.paper, self.clock), self.market, self.store,
                             self.clock, self.published.append)

    async def cycles(self, count: int) -> None:
        for _ in range(count):
            await self.engine.run_cycle()
            await self.clock.advance(60)


def sma_config(**overrides: object) -> EngineConfig:
    fields: dict[str, object] = {"strategy": "sma_cross", "symbols": (SYMBOL,), "params": SMA,
                                 "paper": NO_SLIPPAGE}
    fields.update(overrides)
    return EngineConfig(**fields)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_sma_cross_places_exactly_the_orders_known_in_advance() -> None:
    h = Harness(sma_config())
    await h.engine.reconcile()
    await h.cycles(len(CLOSES))
    orders = sorted(h.store.orders["conn1"].values(), key=lambda o: o.cycle)
    assert [(o.client_order_id, o.side, o.amount, o.average_price, o.status) for o in orders] == [
        ("ctse1e1c1i0", Side.BUY, D("9.09090909"), D(11), OrderStatus.FILLED),
        ("ctse1e1c2i0", Side.SELL, D("9.09090909"), D(10), OrderStatus.FILLED),
        ("ctse1e1c3i0", Side.BUY, D(10), D(10), OrderStatus.FILLED),
    ]
    status = h.engine.status
    assert (status.cycles, status.orders_placed, status.orders_filled, status.orders_rejected) == (
        13, 3, 3, 0)
    [position] = status.positions
    assert (position.amount, position.avg_price) == (D(10), D(10))
    fees = (D("9.09090909") * 11 + D("9.09090909") * 10 + 100) * D("0.001")
    assert status.realized_pnl == D("-9.09090909") - fees
    assert status.unrealized_pnl == D(20)
    assert h.store.engines["conn1"].cycle == 3  # the rounds: cycles that placed orders


@pytest.mark.asyncio
async def test_every_order_is_stored_as_pending_before_it_is_sent() -> None:
    h = Harness(sma_config())
    await h.engine.reconcile()
    await h.cycles(6)
    assert h.store.history == [("ctse1e1c1i0", OrderStatus.PENDING),
                               ("ctse1e1c1i0", OrderStatus.FILLED)]


@pytest.mark.asyncio
async def test_risk_rejections_are_counted_and_nothing_reaches_the_broker() -> None:
    h = Harness(sma_config(risk=RiskLimits(max_order_notional=D(50))))
    await h.engine.reconcile()
    await h.cycles(len(CLOSES))
    assert "conn1" not in h.store.orders
    assert (h.engine.status.orders_rejected, h.engine.status.orders_placed) == (2, 0)


@pytest.mark.asyncio
async def test_a_refusal_is_logged_when_it_begins_or_changes_not_on_every_cycle(
        caplog: pytest.LogCaptureFixture) -> None:
    """A grid whose every level the notional limit refuses: counted each cycle, logged
    when a level's refusal begins, not while it stays refused; and at most a line a minute
    (`ctsd.engine.log_pacing`): the cycle's second refusal waits, counted in the next line
    (a level refused anew when the price rose past the levels above, a minute later)."""
    caplog.set_level(logging.WARNING, logger="ctsd.engine")
    grid = EngineConfig("grid", (SYMBOL,), {"reference_price": "10", "spacing_pct": "1",
                                            "levels": "2", "amount": "1"},
                        paper=NO_SLIPPAGE, risk=RiskLimits(max_order_notional=D(5)))
    h = Harness(grid, closes=[D(10)] * 3 + [D("10.5")])
    await h.engine.reconcile()

    def refusals() -> list[tuple[str, str, int]]:
        found = [(r.tag, r.reason, r.held_back) for r in caplog.records  # type: ignore[attr-defined]
                 if r.msg == "order rejected by risk check"]
        caplog.clear()
        return found

    await h.cycles(3)  # a minute apart
    assert refusals() == [
        ("grid:BTC/USDT:-1:buy", "order notional 9.90 exceeds max_order_notional 5", 0)]
    assert h.engine.status.orders_rejected == 6  # each cycle's refusals still count
    await h.cycles(1)
    assert refusals() == [
        ("grid:BTC/USDT:+2:buy", "order notional 10.20 exceeds max_order_notional 5", 1)]


@pytest.mark.asyncio
async def test_reaching_the_daily_loss_limit_raises_before_any_new_order() -> None:
    crash = [D(x) for x in (10, 10, 10, 10, 11, 5, 30, 5)]
    h = Harness(sma_config(risk=RiskLimits(daily_loss_limit=D(50))), closes=crash)
    await h.engine.reconcile()
    await h.cycles(5)
    with pytest.raises(RiskLimitBreached, match="daily_loss_limit 50"):
        await h.engine.run_cycle()


@pytest.mark.asyncio
async def test_a_restarted_engine_rebuilds_positions_from_stored_fills() -> None:
    first = Harness(sma_config())
    await first.engine.reconcile()
    await first.cycles(6)
    again = Harness(sma_config(), store=first.store)
    await again.engine.reconcile()
    assert again.engine.portfolio().positions == first.engine.portfolio().positions
    assert again.engine.portfolio().balances == first.engine.portfolio().balances


@pytest.mark.asyncio
async def test_reconciliation_errors_propagate_so_the_engine_fails_closed() -> None:
    h = Harness(sma_config())
    h.store.fail_list_orders = True
    with pytest.raises(Unavailable):
        await h.engine.reconcile()


@pytest.mark.asyncio
async def test_grid_orders_rest_fill_when_crossed_and_flip_to_sells() -> None:
    grid = EngineConfig("grid", (SYMBOL,), {"reference_price": "10", "spacing_pct": "5",
                                            "levels": "2", "amount": "1"}, paper=NO_SLIPPAGE)
    h = Harness(grid, closes=[D("10.2"), D("9.4"), D("10.2")])
    await h.engine.reconcile()
    await h.cycles(1)
    # Levels 9.0, 9.5 | 10.5, 11.0; at 10.2 the two buys rest, nothing is held to sell.
    assert resting(h) == {"grid:BTC/USDT:-1:buy": D("9.5"), "grid:BTC/USDT:-2:buy": D("9.0")}
    await h.cycles(1)  # 9.4: the 9.5 buy fills as maker; its coin is offered at 9.5
    assert resting(h) == {"grid:BTC/USDT:-1:sell": D("9.5"), "grid:BTC/USDT:-2:buy": D("9.0")}
    await h.cycles(1)  # 10.2: the sell fills, the 9.5 level holds a buy again
    assert resting(h) == {"grid:BTC/USDT:-1:buy": D("9.5"), "grid:BTC/USDT:-2:buy": D("9.0")}
    assert h.engine.status.orders_filled == 2
    assert h.engine.status.realized_pnl == -(D("9.5") * D("0.0005") * 2)


def resting(h: Harness) -> dict[str, Decimal | None]:
    return {o.tag: o.price for o in h.engine.portfolio().open_orders}


@pytest.mark.asyncio
async def test_a_preview_decides_without_placing() -> None:
    h = Harness(sma_config())
    await h.engine.reconcile()
    await h.clock.advance(4 * 60)
    dry = await h.engine.preview()
    assert [v.accepted for v in dry.verdicts] == [True]
    assert "conn1" not in h.store.orders
