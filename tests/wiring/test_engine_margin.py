"""Spot-margin engines, PAPER and LIVE, on every venue's simulated margin with unmodified
ccxt: a short borrows the base, interest accrues per the venue's periods and is booked
once, buying back repays; settings at engine start; liquidations as the venue computes
them; an outside fill stops the engine or is adopted."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
import pytest_asyncio

from ctsd.engine.config import TradingMode
from ctsd.engine.perpetual import (
    AccountModes,
    MarginMode,
    MismatchPolicy,
    PaymentKind,
    SettingOutcome,
)
from ctsd.engine.position_check import PositionMismatch
from ctsd.errors import FailedPrecondition, InvalidArgument
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim import lending
from ctsd.sim.loans import LoanKind
from ctsd.sim.server import SimulatorServer
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.model import Side
from tests.support.market_rig import (
    MarketRig,
    account_spec,
    order,
    start_clock,
)

pytestmark = pytest.mark.asyncio
VENUES = ("binance", "bybit", "okx", "kraken")
MODES = (TradingMode.PAPER, TradingMode.LIVE)
SYMBOL = "BTC/USDT"
PRICE = Decimal(60_000)


def fresh_account(server: SimulatorServer, venue: str, name: str, **spec: object,
                  ) -> ApiCredentials:
    """An account of the test's own, holding USDT only (Kraken's secret is base64)."""
    secret = base64.b64encode(f"{name}-secret".encode().ljust(64, b".")).decode()
    credentials = ApiCredentials(f"{name}-key", secret, "sim-pass")
    spec.setdefault("spot", {"USDT": Decimal(20_000)})
    server.sim.provision(account_spec(credentials.api_key, secret=secret,
                                      passphrase=credentials.passphrase, **spec))
    return credentials


@pytest_asyncio.fixture
async def rigs(funded_server: SimulatorServer, funded_factory: ExchangeClientFactory,
               store: SqlEngineStore) -> AsyncIterator[dict[str, MarketRig]]:
    clock = start_clock(funded_server)
    funded_server.sim.set_price(SYMBOL, PRICE)
    made = {}
    for venue in VENUES:  # accounts that hold no BTC: a sell borrows all it sells
        credentials = fresh_account(funded_server, venue, f"{venue}-margin")
        made[venue] = MarketRig(funded_server, funded_factory, store, venue, ApiType.MARGIN,
                                SYMBOL, clock, credentials=credentials)
    try:
        yield made
    finally:
        for rig in made.values():
            await rig.close()


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("venue", VENUES)
async def test_a_short_borrows_pays_interest_per_period_and_closes(
    rigs: dict[str, MarketRig], venue: str, mode: TradingMode,
) -> None:
    rig = rigs[venue]
    engine = await rig.engine(rig.config(mode))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.2"))  # 0.2 BTC more than held: short
    [position] = [p for p in engine.status.positions if p.symbol == SYMBOL]
    assert position.amount == Decimal("-0.2")
    rig.clock.advance(5 * 3600)  # five hours: one Kraken rollover, five hourly charges
    await rig.run(engine)
    interest = engine.status.interest_pnl
    assert interest < 0, engine.status
    if mode is TradingMode.LIVE:  # every charge the venue made, the market clock ahead of
        # the server's (a history window on the server clock missed the later ones)
        charged = sum((e.amount for e in rig.venue_account().loans.ledger
                       if e.kind is LoanKind.INTEREST), Decimal(0))
        assert abs(interest + charged * PRICE) < Decimal("0.0001"), (interest, charged)
    assert engine.status.realized_pnl <= interest  # fees and interest, nothing gained yet
    await rig.run(engine, order(SYMBOL, Side.BUY, "0.2", reduce_only=True))
    [left] = [p.amount for p in engine.status.positions if p.symbol == SYMBOL] or [Decimal(0)]
    # what a fee taken in BTC kept from the repayment; on OKX, closed whole, the BTC
    # interest its close bought back too (booked as paid in USDT, so a dust long)
    assert -Decimal("0.0002") <= left <= (Decimal("0.00001") if venue == "okx" else 0)
    assert engine.status.orders_filled == 2 and not engine.status.last_error
    if mode is TradingMode.LIVE:
        held = rig.venue_account()
        owed = sum(h.debt for w in held.wallets.values() for a, h in w.items() if a == "BTC")
        assert owed < Decimal("0.0005")  # bought back: repaid but for fee and interest dust
        # a second position, opened and charged after the first closed: every charge of
        # both booked once (Kraken's were read from each open position and counted again
        # under each new position id)
        await rig.run(engine, order(SYMBOL, Side.SELL, "0.1"))
        rig.clock.advance(4 * 3600)
        await rig.run(engine)
        charges = [e for e in rig.venue_account().loans.ledger if e.kind is LoanKind.INTEREST]
        booked = [p for p in await rig.store.list_funding(f"{venue}-live")
                  if p.kind is PaymentKind.INTEREST]
        assert len(booked) == len({p.funding_id for p in booked}) == len(charges), (
            booked, charges)


# --- settings at engine start -----------------------------------------------------------------

async def test_bybit_switches_spot_margin_on_at_the_first_start_only(
    rigs: dict[str, MarketRig],
) -> None:
    rig = rigs["bybit"]
    await rig.engine(rig.config(leverage={SYMBOL: 4}))
    assert [(s.name, s.value, s.outcome) for s in rig.applied] == [
        ("spot margin", "on", SettingOutcome.CHANGED),
        ("spot margin leverage", "4x", SettingOutcome.CHANGED)]
    await rig.engine(rig.config(leverage={SYMBOL: 4}))
    assert {s.outcome for s in rig.applied} == {SettingOutcome.ALREADY_SET}


@pytest.mark.parametrize(("venue", "leverage", "says"), [
    ("binance", 3, "binance sets spot-margin leverage itself"),
    ("kraken", 7, "kraken spot margin takes 2 to 5x"),
    ("bybit", 11, "bybit spot margin takes 2 to 10x"),
])
@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
async def test_leverage_the_venue_does_not_take_is_refused_naming_the_field(
    rigs: dict[str, MarketRig], venue: str, leverage: int, says: str, mode: TradingMode,
) -> None:
    rig = rigs[venue]
    with pytest.raises(InvalidArgument) as raised:
        await rig.engine(rig.config(mode, leverage={SYMBOL: leverage}))
    assert raised.value.violations[0].field == f'config.leverage["{SYMBOL}"]'
    assert says in raised.value.violations[0].description
    assert rig.venue_account().orders == {}


async def test_kraken_orders_carry_the_configured_leverage(rigs: dict[str, MarketRig]) -> None:
    rig = rigs["kraken"]
    engine = await rig.engine(rig.config(leverage={SYMBOL: 3}))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.1"))
    assert [o.leverage for o in rig.venue_account().orders.values()] == [Decimal(3)]


async def test_an_isolated_connection_cannot_run_a_margin_engine(
    rigs: dict[str, MarketRig],
) -> None:
    rig = rigs["okx"]
    rig.modes = AccountModes(MarginMode.ISOLATED)
    with pytest.raises(FailedPrecondition) as raised:
        await rig.engine(rig.config())
    assert "margin engines trade cross margin" in raised.value.message
    assert raised.value.violations[0].field == "connection.margin_mode"


# --- liquidation as the venue computes it -----------------------------------------------------

@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
async def test_a_short_the_price_runs_over_is_liquidated_at_the_venues_level(
    rigs: dict[str, MarketRig], mode: TradingMode,
) -> None:
    """Binance cross margin (3x, liquidation at level 1.1): 20,000 USDT of collateral and
    a 0.5 BTC short at 60,000 hold 50,000 against the 0.5 BTC owed; from about 90,900 the
    level is at 1.1. At 88,000 nothing happens; at 95,000 the position is bought back."""
    rig = rigs["binance"]
    engine = await rig.engine(rig.config(mode))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.5"))
    rig.server.sim.set_price(SYMBOL, Decimal(88_000))
    await rig.run(engine)
    assert engine.status.liquidations == 0
    rig.server.sim.set_price(SYMBOL, Decimal(95_000))
    await rig.run(engine)
    status = engine.status
    assert status.liquidations == 1, status
    assert all(abs(p.amount) <= Decimal("0.0001") for p in status.positions)  # interest dust
    assert status.realized_pnl < Decimal(-15_000)  # bought back near 95,000: ~-17,500
    if mode is TradingMode.LIVE:
        btc = rig.venue_account().wallet("margin").get("BTC")
        assert btc is None or not btc.debt


# --- fills the engine did not place ---------------------------------------------------------

@pytest.mark.parametrize("policy", list(MismatchPolicy), ids=[p.value for p in MismatchPolicy])
async def test_an_outside_fill_stops_the_engine_or_is_adopted(
    rigs: dict[str, MarketRig], policy: MismatchPolicy,
) -> None:
    rig = rigs["binance"]
    engine = await rig.engine(rig.config(on_position_mismatch=policy))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.1"))
    assert rig.credentials is not None
    other = await rig.factory.client(ConnectionTarget("binance", ApiType.MARGIN),
                                     rig.credentials, lane=Lane.ORDER)
    try:
        await other.create_order(SYMBOL, "buy", "market", Decimal("0.05"),
                                 extra_params={"marginMode": "cross"})
    finally:
        await other.close()
    if policy is MismatchPolicy.STOP:
        with pytest.raises(PositionMismatch, match="not the engine's"):
            await rig.run(engine)
        return
    await rig.run(engine)
    [position] = [p for p in engine.status.positions if p.symbol == SYMBOL]
    assert position.amount == Decimal("-0.05005")  # the outside buy's fee is in BTC


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
async def test_a_kraken_short_grows_past_its_order_leverage_as_the_venue_allows(
    rigs: dict[str, MarketRig], mode: TradingMode,
) -> None:
    """Each Kraken order posts margin at the configured 2x; what the position may borrow
    is bounded by the pair's 5x. A short the price went against (below 2x's level) may
    still grow: PAPER once checked the borrow at 2x and refused what the venue fills."""
    rig = rigs["kraken"]
    engine = await rig.engine(rig.config(mode))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.1"))
    rig.server.sim.set_price(SYMBOL, PRICE * Decimal("1.02"))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.1"))
    assert engine.status.orders_filled == 2 and engine.status.orders_rejected == 0
    [position] = [p for p in engine.status.positions if p.symbol == SYMBOL]
    assert position.amount == Decimal("-0.2")


SHORT_OVER_COLLATERAL = {2: "0.5", 5: "1.5"}
"""Leverage → a short its 20,000 USDT hold only at cost/leverage: 15,000 and 18,000."""
POSITION_WALLETS = {"kraken": f"kraken:{SYMBOL}", "okx": f"okx:cross:{SYMBOL}"}
"""The simulator's wallet of each position venue's BTC/USDT position (OKX: cross, what a
margin engine trades)."""


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
@pytest.mark.parametrize("leverage", SHORT_OVER_COLLATERAL, ids=["2x", "5x"])
@pytest.mark.parametrize("venue", POSITION_WALLETS)
async def test_a_short_posts_its_cost_over_its_leverage(
    rigs: dict[str, MarketRig], venue: str, mode: TradingMode, leverage: int,
) -> None:
    """A short's margin is its cost over its leverage, as a long's: Kraken's used margin
    (support.kraken.com 203053156), OKX's initial margin ("Short positions: initial
    margin = open amount / leverage * open price", okx.com/help-center/6997123251341).
    20,000 USDT hold a 2x short of 0.5 BTC at 60,000 (15,000 of margin) and a 5x short
    of 1.5 BTC (18,000). The simulator and PAPER posted 1/(leverage - 1) of a short's
    cost (30,000 and 22,500) and refused both, and judged a 5x short's borrow at a
    long's opening level (1.25, where a short posting cost/5 opens at 1.2). PAPER's
    wallet opens at 1 + 1/leverage less the fee; LIVE's venue position posts
    cost/leverage."""
    rig = rigs[venue]
    amount = SHORT_OVER_COLLATERAL[leverage]
    engine = await rig.engine(rig.config(mode, leverage={SYMBOL: leverage}))
    await rig.run(engine, order(SYMBOL, Side.SELL, amount))
    status = engine.status
    assert (status.orders_filled, status.orders_rejected) == (1, 0), status.last_error
    cost = Decimal(amount) * PRICE
    if mode is TradingMode.PAPER:
        level = engine._broker.level(SYMBOL)  # type: ignore[attr-defined]
        assert level == pytest.approx(1 + Decimal(1) / leverage, abs=Decimal("0.01"))
    else:
        posted = lending.posted_margin(rig.venue_account(), POSITION_WALLETS[venue])
        assert posted == pytest.approx(cost / leverage, rel=Decimal("0.005"))


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
async def test_a_kraken_short_bought_back_by_its_volume_is_settled_before_the_next_long(
    rigs: dict[str, MarketRig], mode: TradingMode,
) -> None:
    """Kraken closes a position with an opposing order for its volume and settles what
    is left "in an amount denominated in the quote currency" (support.kraken.com
    202966956): the short's fees, owed in BTC, are paid out of its USDT and the wallet
    empties, so the long opened next posts its own margin, what it pays over the default
    2x, as it does on the venue. Before, PAPER and the simulator kept the short's margin and
    profit in the wallet, owing its fees, and the long posted nothing (that paid it)."""
    rig = rigs["kraken"]
    engine = await rig.engine(rig.config(mode))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.2"))
    rig.clock.advance(5 * 3600)  # a rollover on top of the opening fee
    rig.server.sim.set_price(SYMBOL, PRICE - 1000)
    await rig.run(engine, order(SYMBOL, Side.BUY, "0.2", reduce_only=True))
    await rig.run(engine, order(SYMBOL, Side.BUY, "0.1"))
    status = engine.status
    assert (status.orders_filled, status.orders_rejected) == (3, 0), status.last_error
    long = (await rig.store.list_fills(f"kraken-{mode.value}"))[-1]
    fresh = (long.amount * long.price + long.fee) / 2  # a buy posts for its fee too
    if mode is TradingMode.PAPER:
        wallet = engine._broker._account.wallet(SYMBOL)  # type: ignore[attr-defined]
        posted = wallet.posted
    else:
        posted = lending.posted_margin(rig.venue_account(), POSITION_WALLETS["kraken"])
    assert posted == pytest.approx(fresh, abs=Decimal("0.00000001"))


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
async def test_an_okx_short_closed_whole_owes_nothing_and_the_next_long_opens_fresh(
    rigs: dict[str, MarketRig], mode: TradingMode,
) -> None:
    """OKX takes a buy's fee in BTC and charges the short's interest in BTC, so a buy of
    the short's size repays less than it owes. The engine's buy of the whole short (the
    ledger's) closes it as OKX's own close does (`trade/close-position`: LIVE through
    ccxt, PAPER alike): all it owes, interest included, bought back grossed up by the
    fee. Nothing is owed afterwards and the position wallet is empty, so the long opened
    next posts its own margin, its cost over the default 5x, as a fresh account's does.
    Before, the wallet kept owing the fee and the interest in BTC with the short's USDT
    in it, and the long traded on those (posting next to nothing)."""
    rig = rigs["okx"]
    engine = await rig.engine(rig.config(mode))
    await rig.run(engine, order(SYMBOL, Side.SELL, "0.2"))
    rig.clock.advance(5 * 3600)  # five hourly charges, in BTC
    rig.server.sim.set_price(SYMBOL, PRICE - 1000)
    await rig.run(engine, order(SYMBOL, Side.BUY, "0.2", reduce_only=True))
    if mode is TradingMode.PAPER:
        wallet = engine._broker._account.wallet(SYMBOL)  # type: ignore[attr-defined]
        assert not wallet.owes() and not any(wallet.free.values())
    else:
        held = rig.venue_account()
        assert not any(h.debt for w in held.wallets.values() for h in w.values())
        assert not any(h.total for h in held.wallet(POSITION_WALLETS["okx"]).values())
    await rig.run(engine, order(SYMBOL, Side.BUY, "0.1"))
    status = engine.status
    assert (status.orders_filled, status.orders_rejected) == (3, 0), status.last_error
    long = (await rig.store.list_fills(f"okx-{mode.value}"))[-1]
    fresh = long.amount * long.price / 5
    if mode is TradingMode.PAPER:
        posted = engine._broker._account.wallet(SYMBOL).posted  # type: ignore[attr-defined]
    else:
        posted = lending.posted_margin(rig.venue_account(), POSITION_WALLETS["okx"])
    assert posted == pytest.approx(fresh, abs=Decimal("0.00000001"))
