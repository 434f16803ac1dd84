"""LIVE perpetuals engines against the simulator, every venue and account mode, unmodified
ccxt: settings at engine start (set, already set, refused), positions reconciled after a
restart, an outside trade and a liquidation detected, funding booked once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.engine.backend import EngineResources
from ctsd.engine.config import RiskLimits, TradingMode
from ctsd.engine.manager import EngineManager
from ctsd.engine.perpetual import AccountModes, MarginMode, MismatchPolicy, SettingOutcome
from ctsd.engine.position_check import PositionMismatch
from ctsd.errors import ExchangeRejected, FailedPrecondition, InvalidArgument
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.funding import FUNDING_INTERVAL_MS
from ctsd.sim.positions import MarginMode as SimMarginMode
from ctsd.sim.positions import PositionSide as SimSide
from ctsd.sim.server import SimulatorServer
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.model import PositionSide, Side
from ctsd.strategies.registry import StrategyRegistry
from ctsd.wiring.engine_exchange import engine_resources
from tests.support.exchange_clients import ClientMaker
from tests.support.perp_rig import (
    MODES,
    SYMBOL,
    PerpRig,
    ScriptedFactory,
    account,
    freeze,
    market_order,
)
from tests.support.virtual_clock import VirtualClock

pytestmark = pytest.mark.asyncio
VENUES = ("binance", "bybit", "okx")
BY_VENUE = pytest.mark.parametrize("venue", VENUES)
BY_MODES = pytest.mark.parametrize("modes", list(MODES), ids=list(MODES))
C, A, P = SettingOutcome.CHANGED, SettingOutcome.ALREADY_SET, SettingOutcome.PER_ORDER


def rig(server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
        modes: AccountModes) -> PerpRig:
    freeze(server)
    return PerpRig(server, make_client, store, venue, modes)


def sim_mode(modes: AccountModes) -> SimMarginMode:
    return SimMarginMode(modes.margin_mode.value)


async def outside_order(make_client: ClientMaker, venue: str, side: str, amount: str,
                        leg: str | None = None) -> None:
    """An order of another program on the same account (the engine knows nothing of it)."""
    client = await make_client(venue, ApiType.PERPETUAL_FUTURES, lane=Lane.ORDER)
    margin = "cross" if venue == "okx" else None
    await client.create_order(SYMBOL, side, "market", Decimal(amount), leg=leg,
                              margin_mode=margin)


# --- settings at engine start ---------------------------------------------------------------

SECOND_START = {  # what each venue answers when asked for what it already has
    "binance": {"position mode": A, "margin mode": A, "leverage": C},  # leverage: plain success
    "bybit": {"position mode": A, "margin mode": C, "leverage": A},  # set-margin-mode: success
    "okx": {"position mode": C, "margin mode": P, "leverage": C},  # OKX: success everywhere
}


@BY_VENUE
@BY_MODES
async def test_a_start_sets_modes_and_leverage_and_the_next_finds_them_set(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
    modes: str,
) -> None:
    r = rig(server, make_client, store, venue, MODES[modes])
    config = r.config(leverage={SYMBOL: 5})
    first = {a.name: a.outcome for a in await (await r.engine(config)).prepare()}
    settings = account(server).perp.settings
    mode, hedge = sim_mode(r.modes), r.modes.hedge
    assert settings.is_hedge(SYMBOL) is hedge
    if venue != "okx":  # OKX takes the margin mode with each order
        assert settings.margin_for(SYMBOL) is mode
    sides = (SimSide.LONG, SimSide.SHORT) if hedge else (SimSide.BOTH,)
    assert {settings.leverage_for(SYMBOL, mode, side) for side in sides} == {5}
    if modes == "one-way-cross" and venue == "binance":
        assert first == {"position mode": A, "margin mode": A, "leverage": C}
    if modes == "hedge-isolated" and venue != "okx":
        assert first == {"position mode": C, "margin mode": C, "leverage": C}
    second = {a.name: a.outcome for a in await (await r.engine(config)).prepare()}
    assert second == SECOND_START[venue]


class RigBackend:
    """`EngineBackend` on the rig's clients: what the daemon's backend hands out."""

    def __init__(self, r: PerpRig) -> None:
        self._rig = r

    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        r = self._rig
        market = await r.make_client(r.exchange, ApiType.PERPETUAL_FUTURES, credentials=None)
        trading = await r.make_client(r.exchange, ApiType.PERPETUAL_FUTURES, lane=Lane.ORDER)
        if mode is TradingMode.LIVE:
            return engine_resources(market, trading, r.modes)
        return engine_resources(market, None, r.modes, trading)

    async def close(self, connection_id: str, resources: EngineResources) -> None:
        pass  # the rig's client fixture closes them


REFUSALS: dict[str, tuple[AccountModes, dict[str, int], dict[str, str]]] = {
    # what the start asks for, and each venue's refusal code (OKX never refuses a margin
    # mode: it goes with every order)
    "position mode": (AccountModes(MarginMode.CROSS, hedge=True), {},
                      {"binance": "-4068", "bybit": "110024", "okx": "59000"}),
    "margin mode": (AccountModes(MarginMode.ISOLATED, hedge=False), {},
                    {"binance": "-4048", "bybit": "3400045"}),
    "leverage": (AccountModes(MarginMode.CROSS, hedge=False), {SYMBOL: 125},
                 {"binance": "-2027", "bybit": "110013", "okx": "59106"}),
}


@BY_VENUE
@pytest.mark.parametrize("setting", list(REFUSALS))
async def test_a_refused_setting_fails_the_start_and_places_nothing(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
    setting: str,
) -> None:
    """An open position (1 BTC: 60,000 notional, above the 125x tier's cap) keeps the venue
    from switching modes or raising the leverage: StartEngine answers FAILED_PRECONDITION
    with the venue's reason, and nothing is stored or placed."""
    modes, leverage, codes = REFUSALS[setting]
    r = rig(server, make_client, store, venue, modes)
    await outside_order(make_client, venue, "buy", "1")
    orders_before = len(account(server).orders)
    manager = EngineManager(store, RigBackend(r), StrategyRegistry.of(ScriptedFactory()),
                            clock=VirtualClock())
    config = r.config(leverage=leverage)
    if venue not in codes:
        status = await manager.start(venue, config)  # nothing to refuse
        assert status.state.value == "starting"
        await manager.stop(venue)
        return
    with pytest.raises(ExchangeRejected) as refused:
        await manager.start(venue, config)
    assert isinstance(refused.value, FailedPrecondition)
    assert refused.value.message.startswith(f"{venue} refused {setting}")
    assert codes[venue] in refused.value.message
    assert await store.load_engines() == []
    assert len(account(server).orders) == orders_before


@BY_VENUE
async def test_leverage_above_the_venues_maximum_for_the_size_names_the_field(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
) -> None:
    """BTC's tiers allow 125x up to 50,000 notional and 100x up to 600,000: an engine that
    may hold 100,000 gets at most 100x, refused before any setting is sent."""
    r = rig(server, make_client, store, venue, MODES["one-way-cross"])
    settings_before = account(server).perp.settings.leverage_for(SYMBOL)
    config = r.config(leverage={SYMBOL: 110},
                      risk=RiskLimits(max_position_notional=Decimal(100_000)))
    with pytest.raises(InvalidArgument) as refused:
        await (await r.engine(config)).prepare()
    [violation] = refused.value.violations
    assert violation.field == f'config.leverage["{SYMBOL}"]'
    assert "above the venue's maximum 100x for a position of 100000 notional" in (
        violation.description)
    assert account(server).perp.settings.leverage_for(SYMBOL) == settings_before


# --- positions from the venue ---------------------------------------------------------------

@BY_VENUE
@BY_MODES
async def test_positions_reconcile_after_a_restart_and_show_the_venues_figures(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
    modes: str,
) -> None:
    r = rig(server, make_client, store, venue, MODES[modes])
    config = r.config(leverage={SYMBOL: 10})
    engine = await r.engine(config)
    await engine.reconcile()
    await r.run(engine, market_order(Side.BUY, "0.05"))
    await r.run(engine)  # Bybit and OKX acknowledge an order by id: its fill shows next cycle
    side = PositionSide.LONG if r.modes.hedge else PositionSide.BOTH
    [position] = engine.status.positions
    assert (position.symbol, position.side, position.amount) == (SYMBOL, side, Decimal("0.05"))
    restarted = await r.engine(config)
    await restarted.reconcile()  # the venue agrees with the stored fills: no difference
    status = restarted.status
    assert status.position_differences == 0
    [position] = status.positions
    assert (position.side, position.amount, position.margin_mode) == (
        side, Decimal("0.05"), r.modes.margin_mode)
    [venue_view] = account(server).perp.open_positions(SYMBOL)
    assert position.avg_price == venue_view.entry_price
    assert position.mark_price is not None and position.margin and position.margin > 0
    if r.modes.margin_mode is MarginMode.ISOLATED:
        assert position.liquidation_price is not None and position.liquidation_price < (
            position.avg_price)
    assert status.fees > 0 and status.realized_pnl == -status.fees
    await r.run(restarted, market_order(Side.SELL, "0.05", reduce_only=True))
    await r.run(restarted)
    assert restarted.status.positions == ()
    assert account(server).perp.open_positions(SYMBOL) == []


@BY_VENUE
@BY_MODES
async def test_an_outside_trade_stops_the_engine_naming_the_difference(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
    modes: str,
) -> None:
    r = rig(server, make_client, store, venue, MODES[modes])
    engine = await r.engine(r.config())
    await engine.reconcile()
    await r.run(engine, market_order(Side.BUY, "0.05"))
    leg = "long" if r.modes.hedge else None
    await outside_order(make_client, venue, "buy", "0.02", leg)
    with pytest.raises(PositionMismatch) as stopped:
        await r.run(engine)
    text = str(stopped.value)
    leg_text = " long" if r.modes.hedge else ""
    assert text.startswith(f"{SYMBOL}{leg_text}: ledger 0.05, venue 0.07 (outside trade: "
                           "venue order ")
    assert engine.status.position_differences == 1
    assert engine.status.last_position_difference == text


@BY_VENUE
async def test_an_adopted_outside_trade_books_the_venues_fills(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
) -> None:
    r = rig(server, make_client, store, venue, MODES["one-way-cross"])
    engine = await r.engine(r.config(policy=MismatchPolicy.ADOPT))
    await engine.reconcile()
    await r.run(engine, market_order(Side.BUY, "0.05"))
    await outside_order(make_client, venue, "buy", "0.02")
    await r.run(engine)
    status = engine.status
    assert status.position_differences == 1 and "outside trade" in (
        status.last_position_difference)
    [position] = status.positions
    assert position.amount == Decimal("0.07")
    fills = await r.store.list_fills(venue)
    assert [f.client_order_id.startswith("external-") for f in fills] == [False, True]
    assert status.fees == sum((f.fee for f in fills), Decimal(0))  # the venue's own fees
    await r.run(engine)  # agreed now: nothing more to report
    assert engine.status.position_differences == 1


@BY_VENUE
async def test_a_liquidation_is_detected_and_stops_the_engine(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
) -> None:
    r = rig(server, make_client, store, venue, AccountModes(MarginMode.ISOLATED, False))
    engine = await r.engine(r.config(leverage={SYMBOL: 50}))
    await engine.reconcile()
    await r.run(engine, market_order(Side.BUY, "0.05"))
    await r.run(engine)  # the venue's valuation of the position, read with the next refresh
    [position] = engine.status.positions
    assert position.liquidation_price is not None
    server.sim.set_price(SYMBOL, position.liquidation_price - 50)
    with pytest.raises(PositionMismatch) as stopped:
        await r.run(engine)
    assert str(stopped.value) == f"{SYMBOL}: ledger 0.05, venue 0 (liquidation)"
    assert engine.status.liquidations == 1


@BY_VENUE
async def test_funding_across_a_funding_time_is_booked_once(
    server: SimulatorServer, make_client: ClientMaker, store: SqlEngineStore, venue: str,
) -> None:
    r = rig(server, make_client, store, venue, MODES["one-way-cross"])
    engine = await r.engine(r.config())
    await engine.reconcile()
    await r.run(engine, market_order(Side.BUY, "0.1"))
    k = server.sim.set_funding_rate(SYMBOL, Decimal("0.001"))
    server.sim.advance(FUNDING_INTERVAL_MS / 1000)
    expected = -Decimal("0.1") * server.sim.funding.mark_at(SYMBOL, k) * Decimal("0.001")
    for _ in range(3):
        await r.run(engine)
        assert engine.status.funding_pnl == expected
    restarted = await r.engine(r.config())
    await restarted.reconcile()
    await r.run(restarted)
    assert restarted.status.funding_pnl == expected
    assert len(await store.list_funding(venue)) == 1
    assert restarted.status.realized_pnl == expected - restarted.status.fees
