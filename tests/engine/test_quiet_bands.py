"""Quiet bands (`ctsd.engine.wakes`): the ticker moves an event-driven engine sleeps through
are those that could not have changed anything. The hunting test runs one PAPER grid on
seeded random price paths twice, once cycling on every tick and once only on the ticks
its bands let through (resting orders filled by the paper broker, a daily loss limit
marked at the last price, a per-minute order budget that refuses and frees places, bid,
ask and last moving apart): after every tick both hold the
same orders, positions and balances, booked the same fills, and stop on the same tick.
Under the supervisor (virtual time) the idle timer still cycles a banded engine."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal

import pytest

from ctsd.engine.brokers.paper import PaperBroker
from ctsd.engine.config import EngineConfig, PaperSettings, RiskLimits, validate_config
from ctsd.engine.engine import Engine, RiskLimitBreached
from ctsd.engine.ledger import PnL
from ctsd.engine.risk import RiskGate
from ctsd.engine.status import EngineState, FailureCode
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.engine.wakes import Quieting, quiet
from ctsd.strategies.base import DataNeeds, PriceBand, PriceField, QuietBands
from ctsd.strategies.grid import GRID as GRID_FACTORY
from ctsd.strategies.grid import Grid
from ctsd.strategies.model import (
    Balance,
    Intent,
    MarketSnapshot,
    OpenOrder,
    OrderIntent,
    OrderType,
    Portfolio,
    Position,
    Side,
    SymbolMarket,
    Ticker,
)
from ctsd.strategies.registry import StrategyRegistry
from ctsd.strategies.sma_cross import SmaCross
from tests.engine.fakes import MemoryStore, ScriptedEvents, ScriptedMarket, info
from tests.engine.test_events import INTERVAL, cycle_times
from tests.engine.world import SMA_CLOSES, SYMBOL, World, grid
from tests.support.strategies import PlainFactory
from tests.support.virtual_clock import VirtualClock

D = Decimal
GRID = Grid(D(100), D(1), 5, D(1))
"""Levels 95, 96, ..., 105 (no level at the reference)."""
GRID_BALANCES = (Balance("USDT", D(400), D(400)),)


def ticker(bid: str, ask: str, last: str | None = None) -> Ticker:
    return Ticker(SYMBOL, D(bid), D(ask), D(last or bid), 0)


def snapshot(t: Ticker) -> MarketSnapshot:
    return MarketSnapshot(0, (SymbolMarket(info(), t),))


def test_a_grid_is_quiet_between_the_levels_around_its_mid_and_nowhere_on_a_level() -> None:
    assert isinstance(GRID, QuietBands)
    [band] = GRID.quiet_bands(snapshot(ticker("101.2", "101.4")), Portfolio()).values()
    assert band == PriceBand(PriceField.MID, D(101), D(102))
    assert band.holds(ticker("101.01", "101.01")) and not band.holds(ticker("100.9", "101.1"))
    [on_level] = GRID.quiet_bands(snapshot(ticker("101", "101")), Portfolio()).values()
    assert not on_level.holds(ticker("101", "101")) and not on_level.holds(
        ticker("101", "101.02"))
    [above] = GRID.quiet_bands(snapshot(ticker("200", "200")), Portfolio()).values()
    assert above == PriceBand(PriceField.MID, D(105), None)


@pytest.mark.parametrize("seed", range(20))
def test_a_grid_decides_the_same_anywhere_inside_its_band(seed: int) -> None:
    """The strategy's own claim, hunted: any mid inside the band, the same intents."""
    rng = random.Random(seed)
    orders = tuple(OpenOrder(f"c{i}", SYMBOL, Side.BUY, OrderType.LIMIT, D(1), D(0), D(p),
                             f"grid:{SYMBOL}:{p - 100:+d}:buy")
                   for i, p in enumerate(rng.sample(range(95, 101), 3)))
    portfolio = Portfolio((Position(SYMBOL, D(rng.randint(0, 3)), D(99)),), orders,
                          GRID_BALANCES)
    mid = D(rng.randint(9400, 10600)) / 100
    decided = GRID.decide(snapshot(ticker(str(mid), str(mid))), portfolio)
    [band] = GRID.quiet_bands(snapshot(ticker(str(mid), str(mid))), portfolio).values()
    for _ in range(50):
        moved = D(rng.randint(9000, 11000)) / 100
        t = ticker(str(moved - D("0.01")), str(moved + D("0.01")))
        if band.holds(t):
            assert sorted(map(repr, GRID.decide(snapshot(t), portfolio))) == sorted(
                map(repr, decided))


def test_no_bands_unless_the_strategy_says_and_the_engine_can_bound_its_own_checks() -> None:
    market = snapshot(ticker("101.2", "101.4", "101.3"))
    nothing = PnL(D(0), D(0), D(0))

    clock = VirtualClock()
    gate = RiskGate(RiskLimits(max_orders_per_minute=1), clock)
    buy = OrderIntent(SYMBOL, Side.BUY, OrderType.LIMIT, D(1), D(100), "b")

    def bands(q: Quieting, portfolio: Portfolio | None = None, pnl: PnL = nothing, *,
              intents: tuple[Intent, ...] = (), settled: bool = True,
              until: float | None = math.inf) -> dict[str, tuple[PriceBand, ...]]:
        found, _ = q.bands(market, intents, gate, settled, portfolio or Portfolio(), pnl,
                           {SYMBOL: D("101.3")}, until)
        return dict(found)

    grid = Quieting(GRID, spot=True, paper=True, daily_loss_limit=None)
    assert bands(grid) == {SYMBOL: (PriceBand(PriceField.MID, D(101), D(102)),)}
    assert bands(grid, settled=False) == {}
    assert gate.review([buy], market, Portfolio())[0].accepted  # the minute's one order
    assert bands(grid, intents=(buy,)) == {}  # it placed one: looked at again
    assert not gate.review([buy], market, Portfolio())[0].accepted
    assert bands(grid, intents=(buy,)) == bands(grid)  # refused until the budget frees
    assert grid.bands(market, (buy,), gate, True, Portfolio(), nothing, {}, math.inf)[1] == (
        clock.monotonic() + 60)
    market_buy = OrderIntent(SYMBOL, Side.BUY, OrderType.MARKET, D(1), None, "m")
    assert not gate.review([market_buy], market, Portfolio())[0].accepted
    assert bands(grid, intents=(market_buy,)) == {}  # at the ask: a price-bound refusal
    assert bands(grid, until=None) == {}
    assert bands(Quieting(GRID, spot=False, paper=True, daily_loss_limit=None)) == {}
    assert bands(Quieting(SmaCross(2, 3, D(100), "1m"), spot=True, paper=True,
                          daily_loss_limit=None)) == {}
    resting = Portfolio(open_orders=(
        OpenOrder("b", SYMBOL, Side.BUY, OrderType.LIMIT, D(1), D(0), D(100), "b"),
        OpenOrder("b2", SYMBOL, Side.BUY, OrderType.LIMIT, D(1), D(0), D(99), "b2"),
        OpenOrder("s", SYMBOL, Side.SELL, OrderType.LIMIT, D(1), D(0), D(103), "s")))
    assert bands(grid, resting)[SYMBOL][1:] == (PriceBand(PriceField.ASK, lo=D(100)),
                                                PriceBand(PriceField.BID, hi=D(103)))
    live = Quieting(GRID, spot=True, paper=False, daily_loss_limit=None)
    # the venue fills them, and a last price through one means a fill the stream owes
    assert bands(live, resting)[SYMBOL][1:] == (PriceBand(PriceField.LAST, lo=D(100)),
                                                PriceBand(PriceField.LAST, hi=D(103)))
    # 2 held long at 101.3, 5 lost today already of a limit of 20: 15 left, 7.5 per unit
    limited = Quieting(GRID, spot=True, paper=True, daily_loss_limit=D(20))
    held = Portfolio((Position(SYMBOL, D(2), D("101.3")),))
    assert bands(limited, held, PnL(D(-5), D(0), D(-5)))[SYMBOL][1:] == (
        PriceBand(PriceField.LAST, lo=D("93.8")),)
    # realized profit today is gone at midnight: it gives no room
    assert bands(limited, held, PnL(D(50), D(0), D(50)))[SYMBOL][1:] == (
        PriceBand(PriceField.LAST, lo=D("91.3")),)
    short = Portfolio((Position(SYMBOL, D(-2), D("101.3")),))
    assert bands(limited, short, PnL(D(0), D(0), D(0)))[SYMBOL][1:] == (
        PriceBand(PriceField.LAST, hi=D("111.3")),)
    assert bands(limited, held, PnL(D(-20), D(0), D(-20))) == {}  # no room: every move


class PathMarket(ScriptedMarket):
    current: Ticker

    async def ticker(self, symbol: str) -> Ticker:
        return self.current


@dataclass
class Twin:
    """One engine on the path: `banded` ones cycle only when their bands let a tick by."""

    engine: Engine
    market: PathMarket
    events: ScriptedEvents | None
    store: MemoryStore
    stopped_at: int | None = None
    cycles: int = 0

    async def tick(self, step: int, t: Ticker) -> None:
        self.market.current = t
        if self.stopped_at is not None:
            return
        if self.events is not None and not self.events.tick(SYMBOL, t) and step:
            return
        self.cycles += 1
        try:
            await self.engine.run_cycle()
        except RiskLimitBreached:
            self.stopped_at = step

    def state(self) -> tuple[object, ...]:
        p = self.engine.portfolio()
        orders = sorted((o.tag, o.side.value, o.price, o.remaining) for o in p.open_orders)
        fills = sorted((f.side.value, f.amount, f.price, f.fee, f.timestamp_ms)
                       for f in self.store.fills.get("conn1", {}).values())
        return orders, p.positions, p.balances, fills, self.stopped_at


NEEDS = DataNeeds()


@dataclass(frozen=True)
class Ladder:
    """Rests a buy at 97 and 99 and sells what it holds at 101 and 103, whatever the price:
    its decision never depends on the market, so its band is the whole line, and only the
    engine's own bands (the paper fills, the loss limit) keep it awake when it must be."""

    needs: DataNeeds = NEEDS

    def decide(self, market: MarketSnapshot, portfolio: Portfolio) -> tuple[Intent, ...]:
        tags = {o.tag for o in portfolio.open_orders}
        position = portfolio.position(SYMBOL).amount
        resting = {side: sum((o.remaining for o in portfolio.open_orders if o.side is side),
                             D(0)) for side in Side}
        room, held = 2 - position - resting[Side.BUY], position - resting[Side.SELL]
        intents: list[Intent] = []
        for price, side in ((99, Side.BUY), (97, Side.BUY), (101, Side.SELL),
                            (103, Side.SELL)):
            tag = f"ladder:{price}"
            if tag in tags or (held if side is Side.SELL else room) < 1:
                continue
            if side is Side.SELL:
                held -= 1
            else:
                room -= 1
            intents.append(OrderIntent(SYMBOL, side, OrderType.LIMIT, D(1), D(price), tag))
        return tuple(intents)

    def quiet_bands(self, market: MarketSnapshot, portfolio: Portfolio,
                    ) -> dict[str, PriceBand]:
        return {m.info.symbol: PriceBand(PriceField.LAST) for m in market.symbols}


STRATEGIES = StrategyRegistry.of(GRID_FACTORY,
                                 PlainFactory("ladder", "fixed levels", lambda _: Ladder()))
PARAMS = {"grid": {"reference_price": "100", "spacing_pct": "1", "levels": "5", "amount": "1"},
          "ladder": {}}


TWIN_RISK = RiskLimits(daily_loss_limit=D(6), max_orders_per_minute=3)


def twin(clock: VirtualClock, strategy: str, banded: bool, risk: RiskLimits = TWIN_RISK,
         ) -> Twin:
    config = EngineConfig(strategy, (SYMBOL,), PARAMS[strategy],
        paper=PaperSettings(balances=(("USDT", D(400)),), slippage_bps=D(0)), risk=risk)
    market = PathMarket(clock, {SYMBOL: [D(100)]})
    store = MemoryStore()
    record = EngineRecord("conn1", "e1e1", config, DesiredState.RUNNING)
    store.engines["conn1"] = record
    events = ScriptedEvents(clock) if banded else None
    engine = Engine(record, validate_config(config, STRATEGIES),
                    PaperBroker(config.paper, clock), market, store, clock, lambda _: None,
                    events=events)
    return Twin(engine, market, events, store)


def path(seed: int, steps: int) -> list[Ticker]:
    """A random walk around the grid, a spread of 1 to 5 cents, last at either side."""
    rng = random.Random(seed)
    cents, ticks = 10_000, []
    for _ in range(steps):
        cents = min(11_000, max(9_000, cents + rng.randint(-70, 70)))
        spread = rng.randint(1, 5)
        bid, ask = D(cents) / 100, D(cents + spread) / 100
        ticks.append(Ticker(SYMBOL, bid, ask, rng.choice((bid, ask)), 0))
    return ticks


@pytest.mark.parametrize("strategy", ["grid", "ladder"])
@pytest.mark.asyncio
async def test_the_ticks_a_banded_engine_sleeps_through_change_nothing(strategy: str) -> None:
    stops, slept, filled = 0, 0, 0
    for seed in range(12):
        clock = VirtualClock()
        every, banded = twin(clock, strategy, False), twin(clock, strategy, True)
        for step, t in enumerate(path(seed, 250)):
            t = Ticker(t.symbol, t.bid, t.ask, t.last, clock.now_ms())
            await every.tick(step, t)
            await banded.tick(step, t)
            assert banded.state() == every.state(), (seed, step)
            await clock.advance(1.0)
        assert banded.events is not None
        ticks = 250 if every.stopped_at is None else every.stopped_at + 1
        assert every.cycles == banded.cycles + banded.events.quiet_events == ticks
        stops += every.stopped_at is not None
        slept += banded.events.quiet_events
        filled += len(every.store.fills.get("conn1", {}))
    assert 0 < stops < 12  # the loss limit tripped on some paths, not all
    assert filled > 24  # the paths crossed levels: orders rested, filled, were re-placed
    assert slept > filled  # and many ticks woke nothing


def test_a_ticker_without_a_band_always_wakes() -> None:
    band = {SYMBOL: (PriceBand(PriceField.LAST, lo=D(1)),)}
    assert quiet(band, SYMBOL, ticker("2", "2")) and not quiet(band, "ETH/USDT", ticker("2", "2"))
    assert not quiet(band, SYMBOL, ticker("2", "2", "1"))


@pytest.mark.asyncio
async def test_a_grid_sleeps_inside_its_bands_and_its_loss_limit_trips_on_the_tick() -> None:
    """Levels 9, 9.5, 10.5, 11; a daily loss limit of 3. The engine cycles on the ticks that
    leave its bands (a level crossed, a resting buy reached, the loss limit's price), on
    the idle timer, and on nothing else."""
    w = World({"a": SMA_CLOSES})
    market = PathMarket(w.clock, {})
    w.markets["a"] = market  # the backend's
    events = ScriptedEvents(w.clock)
    w.backend.events["a"] = events

    async def tick(price: str) -> bool:
        market.current = ticker(price, price)
        woke = events.tick(SYMBOL, market.current)
        await w.clock.advance(INTERVAL)
        return woke

    market.current = ticker("10.2", "10.2")
    async with w.manager:
        await w.manager.start("a", grid(interval_s=INTERVAL,
                                        risk=RiskLimits(daily_loss_limit=D(3))))
        await w.clock.advance(INTERVAL)  # the first cycle: buys at 9.5 and 9
        assert await tick("10.25")  # it placed orders: the next tick is looked at
        assert [await tick(p) for p in ("10.1", "10.45", "9.55")] == [False] * 3
        assert len(cycle_times(w)) == 2
        await w.clock.advance(20 * INTERVAL)  # 24 intervals since the last cycle
        assert len(cycle_times(w)) == 2
        assert w.manager.health().stalled == ()  # asleep, not stuck
        await w.clock.advance(10 * INTERVAL)  # the idle timer still cycles (at 31)
        assert len(cycle_times(w)) == 3
        assert await tick("9.4")  # the buy at 9.5 fills: 10 held, a sell at 9.5
        assert w.manager.get("a").orders_filled == 1
        assert await tick("9.3")  # it placed the sell: looked at once more
        # 10 held at 9.5 with 0.0475 fees paid: the limit is reached at 9.20475
        assert not await tick("9.25")
        assert w.manager.get("a").state is EngineState.RUNNING
        assert await tick("9.2")
        status = w.manager.get("a")
        assert status.failure is not None and status.failure.code is FailureCode.RISK_LIMIT
        assert events.quiet_events == 4
        assert status.quiet_events == 3  # as of the last cycle that ran to its end
