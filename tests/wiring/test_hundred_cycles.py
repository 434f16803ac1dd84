"""Every (exchange, api type) `ListExchanges` promises engines on: a PAPER and a LIVE grid
run 100 one-minute cycles on the simulator's seeded path with unmodified ccxt, fill orders
and end without an error. The cases come from the registry the list encodes (as in
`tests/api/test_exchange_list.py`, which proves the same through the daemon with one
fill): a promise added to the list is run here too. Halfway the underlying is taken 1 %
below the lower of its start and where the path took it, so the grid's buys fill whatever
the path did until then (an option grid's levels are around the option's price at the
start); three quarters in, a
level above the grid's top one, past every level. Outside options, the cycle before,
what the grid holds beyond its resting sells is dust, unless every level above the
market holds a sell (the path's dips between cycles can buy a level again before its
sell is placed, and a stateless grid sells a level's worth per level) or a buy the
cycle placed bought it (a level at the touch fills as the order is placed, after the
grid decided: the next cycle sells it); and that cycle
every sell has filled, each selling what it asked. An option moves about ten times its
underlying in percent, so its grid has ten levels a side: with three (±9 %), a call that fell
10 % in the first minute sat below the whole grid for the run and filled nothing, at 2 of
the start minutes. Where a buy pays its fee in the
base asset, sell levels once asked for more than a buy left, and a level's worth or
more stayed held with sell levels free. The venues'
limits and the daemon's are scaled up alike (`tests/support/market_rig.py`'s fixtures):
the minutes are the market clock's, and this measures the engines, not the rate limiters."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.engine.config import EngineConfig, PaperSettings, TradingMode
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.model import Side
from tests.support.market_rig import MarketRig, nearest_call, start_clock

pytestmark = pytest.mark.asyncio
CYCLES = 100
DOWN, UP = CYCLES // 2, CYCLES * 3 // 4
"""At DOWN the underlying's price goes 1 % below the lower of its start and where the path
took it (through the buy levels, built around the start), at UP a level above the grid's
top one (through every sell level)."""
REGISTRY = ExchangeRegistry.default()
PAIRS = {ApiType.SPOT: "BTC/USDT", ApiType.MARGIN: "BTC/USDT",
         ApiType.PERPETUAL_FUTURES: "BTC/USDT:USDT"}
CASES = [pytest.param(spec.id, api_type, mode, id=f"{spec.id}-{api_type.value}-{mode.value}")
         for spec in REGISTRY.all() for api_type in spec.api_types
         for mode in (TradingMode.PAPER, TradingMode.LIVE)
         if (spec.support_of(api_type).paper if mode is TradingMode.PAPER
             else spec.support_of(api_type).live)]


@pytest.mark.parametrize(("exchange", "api_type", "mode"), CASES)
async def test_an_advertised_engine_runs_a_hundred_cycles_and_fills(
    funded_server: SimulatorServer, funded_factory: ExchangeClientFactory,
    store: SqlEngineStore, exchange: str, api_type: ApiType, mode: TradingMode,
) -> None:
    clock = start_clock(funded_server)
    option = api_type is ApiType.OPTIONS
    symbol = (nearest_call(funded_server, clock.now_ms() + 4 * 3_600_000)[0] if option
              else PAIRS[api_type])
    client = await funded_factory.client(ConnectionTarget(exchange, api_type), None,
                                         lane=Lane.POLL)
    try:
        mid = (await client.fetch_ticker(symbol)).last
    finally:
        await client.close()
    assert mid is not None
    rig = MarketRig(funded_server, funded_factory, store, exchange, api_type, symbol, clock)
    params = {"reference_price": str(mid), "spacing_pct": "3" if option else "0.2",
              "levels": "10" if option else "3", "amount": "0.1" if option else "0.001"}
    config = EngineConfig("grid", (symbol,), params, mode,
                          paper=PaperSettings((("USDT", Decimal(20_000)),), Decimal(0)))
    sim, pair = funded_server.sim, PAIRS[ApiType.SPOT]  # every market here moves with it
    start = sim.market.price(pair)
    steps = [mid * (1 + Decimal(params["spacing_pct"]) * i / 100)
             for i in range(-int(params["levels"]), int(params["levels"]) + 2) if i]
    half, uncovered = Decimal(params["amount"]) / 2, Decimal(0)
    try:
        engine = await rig.engine(config)
        for cycle in range(CYCLES):
            clock.advance(60)
            if cycle == DOWN:
                sim.set_price(pair, min(sim.market.price(pair), start) * Decimal("0.99"))
            if cycle == UP and not option:
                sim.set_price(pair, steps[-1])  # a level above the grid's top one
            resting = {o.client_order_id for o in engine.portfolio().orders_for(symbol)}
            booked = len(await store.list_fills(engine.connection_id))
            assert await engine.run_cycle()
            if option:
                continue
            portfolio = engine.portfolio()
            held = portfolio.position(symbol).amount
            sells = [o for o in portfolio.orders_for(symbol) if o.side is Side.SELL]
            if cycle == UP:  # every sell level is below the market: each sold what it asked
                assert held < uncovered + half and not sells, (held, uncovered, engine.status)
                continue
            # What no sell covers is dust, unless every level above the market sells, or
            # it was bought by a buy this cycle placed (after it decided: a level at the
            # touch fills at once), which the next cycle's sell covers.
            bought_since = sum((f.amount for f in (await store.list_fills(
                engine.connection_id))[booked:] if f.side is Side.BUY
                and f.client_order_id not in resting), Decimal(0))
            uncovered = held - sum((o.remaining for o in sells), Decimal(0))
            free = sum(p > sim.market.price(pair) for p in steps[:-1]) - len(sells)
            assert uncovered - bought_since < half or free <= 1, (
                cycle, uncovered, bought_since, free, engine.status)
        status = engine.status
        assert status.cycles == CYCLES and not status.last_error, status
        assert status.orders_filled >= 1, status
    finally:
        await rig.close()
