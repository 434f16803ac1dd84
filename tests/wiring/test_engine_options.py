"""Options engines, PAPER and LIVE, on Binance's and Bybit's simulated options with
unmodified ccxt: limit orders on a named contract (taker at once, or resting until the
book reaches them), contracts held in the paper account, expiry on the market clock
(resting orders cancelled, positions settled at the venue's published settlement price
and booked in the PnL, the same in PAPER and LIVE and as the venue paid), and what an
options engine refuses before it trades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest
import pytest_asyncio

from ctsd.engine.config import EngineConfig, RiskLimits, TradingMode
from ctsd.engine.engine import Engine
from ctsd.engine.option_session import OptionSession
from ctsd.engine.orders import OrderStatus
from ctsd.engine.perpetual import MismatchPolicy
from ctsd.engine.position_check import PositionMismatch
from ctsd.errors import FailedPrecondition, InvalidArgument
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.options import OptionClient
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim import option_trading
from ctsd.sim.options import OptionContract
from ctsd.sim.server import SimulatorServer
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import Side
from ctsd.wiring.engine_options import ExchangeOptionMarketData
from tests.support.exchange_clients import credentials_for
from tests.support.market_rig import (
    MarketRig,
    nearest_call,
    order,
    start_clock,
)

pytestmark = pytest.mark.asyncio
VENUES = ("binance", "bybit")
MODES = (TradingMode.PAPER, TradingMode.LIVE)
AMOUNT = Decimal("0.1")
USDT = (("USDT", Decimal(20_000)),)


@pytest_asyncio.fixture
async def rigs(funded_server: SimulatorServer, funded_factory: ExchangeClientFactory,
               store: SqlEngineStore,
               ) -> AsyncIterator[dict[str, tuple[MarketRig, OptionContract]]]:
    clock = start_clock(funded_server)
    symbol, contract = nearest_call(funded_server)
    # in the money by 2 %: the contract settles worth something
    funded_server.sim.set_price("BTC/USDT", contract.strike * Decimal("1.02"))
    made = {venue: (MarketRig(funded_server, funded_factory, store, venue, ApiType.OPTIONS,
                              symbol, clock), contract) for venue in VENUES}
    try:
        yield made
    finally:
        for rig, _ in made.values():
            await rig.close()


def usdt(rig: MarketRig, engine: Engine) -> Decimal:
    """The settle currency the engine's account holds (LIVE: as the venue reports it)."""
    return next(b.total for b in engine.portfolio().balances if b.asset == "USDT")


def on_tick(price: Decimal) -> Decimal:
    """A price on both venues' BTC option tick (5 USDT)."""
    return (price / 5).to_integral_value(ROUND_FLOOR) * 5


def config(rig: MarketRig, mode: TradingMode, **more: Any) -> EngineConfig:
    return rig.config(mode, balances=USDT, **more)


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("venue", VENUES)
async def test_a_contract_bought_and_held_settles_at_expiry_into_the_pnl(
    rigs: dict[str, tuple[MarketRig, OptionContract]], venue: str, mode: TradingMode,
) -> None:
    rig, contract = rigs[venue]
    engine = await rig.engine(config(rig, mode))
    ask = (await engine.market_data.ticker(rig.symbol)).ask
    await rig.run(engine)  # a cycle that reads: the balance as the venue reports it
    before = usdt(rig, engine)
    await rig.run(engine, order(rig.symbol, Side.BUY, str(AMOUNT), str(ask)))  # taker now
    await rig.run(engine)  # Bybit acknowledges with the id: its fill is read next cycle
    [held] = engine.status.positions
    assert (held.symbol, held.amount, held.avg_price) == (rig.symbol, AMOUNT, ask)
    assert engine.status.orders_filled == 1 and engine.status.fees > 0
    rig.clock.set_ms(contract.expiry_ms)  # expiry, the underlying 2 % above the strike
    rig.server.sim.set_price("BTC/USDT", contract.strike * Decimal("1.02"))
    await rig.run(engine)
    await rig.run(engine)  # LIVE: the balance after the venue settled
    status = engine.status
    value = rig.server.sim.options.settlement_price(contract) - contract.strike
    assert value > 0
    assert all(p.amount == 0 for p in status.positions), status.positions
    assert status.realized_pnl == AMOUNT * (value - ask) - status.fees
    assert status.orders_filled == 1 and not status.last_error
    assert usdt(rig, engine) - before == status.realized_pnl
    if mode is TradingMode.LIVE:
        [paid] = option_trading.book_of(rig.venue_account()).settlements
        assert (paid.qty, paid.payout) == (AMOUNT, AMOUNT * value)
    orders = await rig.store.list_orders(f"{venue}-{mode.value}")
    assert [(o.tag, o.side, o.status) for o in orders] == [
        ("test", Side.BUY, OrderStatus.FILLED), ("expiry", Side.SELL, OrderStatus.FILLED)]


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("venue", VENUES)
async def test_a_resting_order_fills_when_the_book_reaches_it_and_expires_with_the_contract(
    rigs: dict[str, tuple[MarketRig, OptionContract]], venue: str, mode: TradingMode,
) -> None:
    rig, contract = rigs[venue]
    engine = await rig.engine(config(rig, mode))
    bid = (await engine.market_data.ticker(rig.symbol)).bid
    under, far = on_tick(bid * Decimal("0.97")), on_tick(bid / 2)
    await rig.run(engine, order(rig.symbol, Side.BUY, str(AMOUNT), str(under)),
                  order(rig.symbol, Side.BUY, str(AMOUNT), str(far)))
    assert engine.status.open_orders == 2
    # the underlying half a percent lower: the call's ask comes down through the first buy
    rig.server.sim.set_price("BTC/USDT", contract.strike * Decimal("1.015"))
    await rig.run(engine)
    assert engine.status.orders_filled == 1 and engine.status.open_orders == 1
    [held] = engine.status.positions
    assert (held.amount, held.avg_price) == (AMOUNT, under)
    await rig.run(engine, order(rig.symbol, Side.SELL, str(AMOUNT),
                                str((await engine.market_data.ticker(rig.symbol)).bid)))
    await rig.run(engine)
    assert all(p.amount == 0 for p in engine.status.positions)
    rig.clock.set_ms(contract.expiry_ms + 60_000)
    await rig.run(engine)
    status = engine.status
    assert status.open_orders == 0 and status.orders_filled == 2 and not status.last_error
    orders = await rig.store.list_orders(f"{venue}-{mode.value}")
    assert [o.status for o in orders] == [OrderStatus.FILLED, OrderStatus.CANCELED,
                                          OrderStatus.FILLED]
    if mode is TradingMode.LIVE:
        assert not option_trading.book_of(rig.venue_account()).open_orders()


async def test_a_paper_sell_of_contracts_not_held_is_refused(
    rigs: dict[str, tuple[MarketRig, OptionContract]],
) -> None:
    """Options engines do not write; LIVE, the venue decides (Binance lets an options
    account write against margin), so the paper account is the stricter one."""
    rig, _ = rigs["binance"]
    engine = await rig.engine(config(rig, TradingMode.PAPER))
    bid = (await engine.market_data.ticker(rig.symbol)).bid
    await rig.run(engine, order(rig.symbol, Side.SELL, str(AMOUNT), str(bid)))
    assert engine.status.orders_rejected == 1 and engine.status.orders_filled == 0


async def test_what_an_options_engine_cannot_do_is_refused_naming_the_field(
    rigs: dict[str, tuple[MarketRig, OptionContract]],
) -> None:
    rig, contract = rigs["bybit"]
    client = await rig.factory.client(ConnectionTarget("bybit", ApiType.OPTIONS), None,
                                      lane=Lane.POLL)
    rig.clients.append(client)
    market = ExchangeOptionMarketData(OptionClient(client))
    wrong = EngineConfig("sma_cross", (rig.symbol, "BTC/USDT"), leverage={rig.symbol: 2})
    with pytest.raises(InvalidArgument) as unknown:
        await OptionSession(wrong, market, "c").prepare(DataNeeds(), rig.clock.now_ms())
    assert unknown.value.violations[0].field == "config.symbols[1]"
    session = OptionSession(EngineConfig("sma_cross", (rig.symbol,), leverage={rig.symbol: 2}),
                            market, "c")
    with pytest.raises(FailedPrecondition) as refused:
        await session.prepare(DataNeeds("1m", 9, shorts=True), contract.expiry_ms)
    assert [v.field for v in refused.value.violations] == [
        "config.leverage", "config.params", "config.strategy", "config.symbols[0]"]
    assert "has expired" in refused.value.violations[-1].description


@pytest.mark.parametrize("adopt", (False, True), ids=("stop", "adopt"))
@pytest.mark.parametrize("venue", VENUES)
async def test_an_outside_option_trade_trips_the_live_position_check(
    rigs: dict[str, tuple[MarketRig, OptionContract]], venue: str, adopt: bool,
) -> None:
    """Each LIVE cycle compares the venue's option positions (ccxt `fetch_positions`)
    with the ledger, as on perpetuals: contracts another program bought on the same
    account stop the engine naming both amounts, or are adopted at the mark."""
    rig, _ = rigs[venue]
    policy = MismatchPolicy.ADOPT if adopt else MismatchPolicy.STOP
    engine = await rig.engine(config(rig, TradingMode.LIVE, on_position_mismatch=policy))
    ask = (await engine.market_data.ticker(rig.symbol)).ask
    await rig.run(engine, order(rig.symbol, Side.BUY, str(AMOUNT), str(ask)))
    await rig.run(engine)  # Bybit acknowledges with the id: its fill is read next cycle
    await rig.run(engine)  # agreed: the check passes while only the engine trades
    assert engine.status.position_differences == 0
    outside = await rig.factory.client(ConnectionTarget(venue, ApiType.OPTIONS),
                                       credentials_for(venue), lane=Lane.ORDER)
    rig.clients.append(outside)
    await outside.create_order(rig.symbol, "buy", "limit", Decimal("0.2"), ask)
    if not adopt:
        with pytest.raises(PositionMismatch) as stopped:
            await rig.run(engine)
        assert str(stopped.value) == (f"{rig.symbol}: ledger 0.1, venue 0.3 (not the engine's "
                                      "fills: an outside trade?)")
        assert engine.status.last_position_difference == str(stopped.value)
        return
    await rig.run(engine)
    [held] = engine.status.positions
    assert held.amount == Decimal("0.3") and engine.status.position_differences == 1
    await rig.run(engine)  # adopted: the ledger is the venue's again
    assert engine.status.position_differences == 1 and not engine.status.last_error


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("venue", VENUES)
async def test_option_risk_limits_count_the_underlying_the_venue_quotes(
    rigs: dict[str, tuple[MarketRig, OptionContract]], venue: str, mode: TradingMode,
) -> None:
    """The contract's ticker carries the underlying's price as each venue quotes it
    (Binance `exercisePrice`, Bybit `underlyingPrice`): a buy whose premium is within
    `max_order_notional` but whose underlying notional is not is refused, unplaced."""
    rig, _ = rigs[venue]
    underlying = rig.server.sim.market.price("BTC/USDT")
    limit = (AMOUNT * underlying * Decimal("0.9")).quantize(Decimal(1))
    engine = await rig.engine(config(rig, mode, risk=RiskLimits(max_order_notional=limit)))
    ticker = await engine.market_data.ticker(rig.symbol)
    assert ticker.underlying == underlying and AMOUNT * ticker.ask < limit
    await rig.run(engine, order(rig.symbol, Side.BUY, str(AMOUNT), str(ticker.ask)))
    assert engine.status.orders_rejected == 1 and engine.status.orders_placed == 0
    assert not await rig.store.list_orders(f"{venue}-{mode.value}")
