"""The venue-neutral margin model: borrowing limits, orders that borrow and repay,
interest on the path clock, margin level and forced liquidation (`ctsd.sim.lending`,
`ctsd.sim.margin_liquidation`), in-process on a `ManualClock`."""

from __future__ import annotations

import random
from decimal import ROUND_UP, Decimal
from typing import Any

import pytest

from ctsd.sim import lending
from ctsd.sim.accounts import (
    SPOT_WALLET,
    Account,
    FeeSchedule,
    OrderType,
    Rejection,
    RejectKind,
    Side,
)
from ctsd.sim.clock import ManualClock
from ctsd.sim.loans import HOUR_MS, LoanKind, MarginTerms
from ctsd.sim.matching import OrderRequest
from ctsd.sim.state import Simulator
from tests.sim.conftest import API_KEY, sim_config, trader_spec

FEES = FeeSchedule(maker=Decimal("0.001"), taker=Decimal("0.001"))
T0 = 1_750_000_000_000 // HOUR_MS * HOUR_MS + 60_000
CROSS = MarginTerms(max_leverage=Decimal(3), liquidation_level=Decimal("1.1"),
                    charge_on_borrow=True)
POSITION = MarginTerms(max_leverage=Decimal(5), liquidation_level=Decimal("1.1"),
                       position=True)


def _interest(principal: Decimal, terms: MarginTerms, asset: str) -> Decimal:
    return (principal * lending.period_rate(terms, asset)).quantize(lending.AMOUNT_STEP,
                                                                     rounding=ROUND_UP)


def _sim(**spec: object) -> tuple[Simulator, ManualClock, Account]:
    clock = ManualClock(T0)
    sim = Simulator(sim_config(accounts=(trader_spec(**spec),)), clock)
    sim.set_price("BTC/USDT", Decimal("60000"))
    account = sim.accounts.get(API_KEY)
    assert account is not None
    return sim, clock, account


def _margin(sim: Simulator, account: Account, side: Side, qty: str, wallet: str = "margin",
            **fields: Any) -> Any:
    return sim.place_order(account, OrderRequest(
        "BTC/USDT", side, OrderType.MARKET, Decimal(qty), wallet=wallet, **fields), FEES)


def test_borrowing_stops_at_the_initial_level_and_pays_its_first_hour() -> None:
    sim, _clock, account = _sim(margin={"USDT": Decimal("1000")})
    lending.open_wallet(account, "margin", CROSS)
    assert lending.max_borrowable(account, sim.market, "margin", "USDT") == Decimal("2000")
    with pytest.raises(Rejection) as caught:
        lending.borrow(account, sim.market, "margin", "USDT", Decimal("2000.01"))
    assert caught.value.kind is RejectKind.BORROW_LIMIT
    lending.borrow(account, sim.market, "margin", "USDT", Decimal("2000"))
    usdt = account.holding("USDT", "margin")
    assert (usdt.free, usdt.borrowed) == (Decimal("3000"), Decimal("2000"))
    assert usdt.interest == _interest(Decimal("2000"), CROSS, "USDT")
    assert lending.value(account, sim.market, "margin").level == Decimal("3000") / usdt.debt


def test_an_order_borrows_what_it_lacks_and_its_fill_repays() -> None:
    sim, _clock, account = _sim(margin={"USDT": Decimal("30000")})
    lending.open_wallet(account, "margin", CROSS)
    with pytest.raises(Rejection):  # no side effect: spends only what the wallet holds
        _margin(sim, account, Side.SELL, "0.1")
    _margin(sim, account, Side.SELL, "0.5", auto_borrow=True)  # a short: BTC borrowed
    btc = account.holding("BTC", "margin")
    assert (btc.borrowed, btc.free) == (Decimal("0.5"), Decimal(0))
    sim.set_price("BTC/USDT", Decimal("50000"))
    _margin(sim, account, Side.BUY, "0.6", auto_repay=True)  # buys back and repays
    assert btc.borrowed == 0 and btc.interest == 0
    [repaid] = account.loans.history("margin", "BTC", frozenset({LoanKind.REPAY}))
    assert repaid.interest_part == _interest(Decimal("0.5"), CROSS, "BTC")
    assert btc.free == Decimal("0.1") - repaid.interest_part  # fees are in USDT here


def test_interest_is_charged_once_per_hour_of_the_path_clock() -> None:
    sim, clock, account = _sim(margin={"USDT": Decimal("1000")})
    lending.open_wallet(account, "margin", CROSS)
    lending.borrow(account, sim.market, "margin", "USDT", Decimal("1000"))
    clock.advance(3600)  # the server clock crosses one hour
    for _ in range(3):
        sim.touch(account)
    sim.advance(2 * 3600)  # the path jumps two more
    charges = account.loans.history("margin", "USDT", frozenset({LoanKind.INTEREST}))
    assert [c.on_borrow for c in charges] == [True, False, False, False]
    assert account.holding("USDT", "margin").interest == 4 * _interest(Decimal(1000), CROSS,
                                                                         "USDT")
    assert [c.time_ms for c in charges] == sorted(c.time_ms for c in charges)


def test_a_wallet_at_its_liquidation_level_is_closed_out() -> None:
    sim, _clock, account = _sim(margin={"USDT": Decimal("10000")})
    lending.open_wallet(account, "margin", CROSS)
    _margin(sim, account, Side.BUY, "0.45", auto_borrow=True)  # ~27,000 of BTC on 10,000
    assert account.holding("USDT", "margin").borrowed > 0
    sim.set_price("BTC/USDT", Decimal("45000"))  # level above 1.1: kept
    assert account.holding("BTC", "margin").free > 0
    sim.set_price("BTC/USDT", Decimal("40000"))  # level at or below 1.1: liquidated
    wallet = account.wallet("margin")
    assert all(h.debt == 0 for h in wallet.values()) and wallet["BTC"].free < Decimal("0.001")
    [order] = [o for o in account.orders.values() if o.liquidation]
    assert order.side is Side.SELL and order.wallet == "margin"
    assert order.client_id.startswith("autoclose-") and account.fills[-1].order_id == order.id


def test_a_position_wallet_takes_its_margin_from_spot_and_gives_it_back_when_flat() -> None:
    sim, _clock, account = _sim()
    wallet = "okx:cross:BTC/USDT"
    lending.open_wallet(account, wallet, POSITION)
    spot_before = account.spot["USDT"].free
    _margin(sim, account, Side.BUY, "1", wallet=wallet, auto_borrow=True, auto_repay=True,
            leverage=Decimal(5))  # a 5x long: a fifth of ~60,000 from spot
    moved = spot_before - account.spot["USDT"].free
    assert Decimal("12000") < moved < Decimal("12100")
    assert account.holding("BTC", wallet).free == Decimal(1)
    sim.set_price("BTC/USDT", Decimal("61000"))
    _margin(sim, account, Side.SELL, "1", wallet=wallet, auto_repay=True)
    assert account.wallets[wallet].get("USDT") is None or account.holding(
        "USDT", wallet).free == 0
    assert account.spot["USDT"].free > spot_before  # the gain, less fees and interest
    assert account.spot is account.wallets[SPOT_WALLET]


KRAKEN_LIKE = MarginTerms(max_leverage=Decimal(5), liquidation_level=Decimal(1),
                          period_ms=4 * HOUR_MS, charge_on_borrow=True,
                          period_rate=Decimal("0.0002"), position=True,
                          liquidation_margin=Decimal("0.4"))


def _snapshot(account: Account) -> tuple[object, ...]:
    wallets = {name: {asset: (h.free, h.locked, h.borrowed, h.interest)
                      for asset, h in holdings.items()}
               for name, holdings in account.wallets.items()}
    return wallets, len(account.loans.ledger), len(account.fills), len(account.orders)


def test_a_refused_margin_order_leaves_the_account_as_it_was() -> None:
    """Seeded walk of margin orders on a cross wallet and on position wallets (OKX- and
    Kraken-like) as the price moves: every refusal (borrow limit, margin not there,
    not enough to spend) changes nothing, not even a margin posted for a borrow then
    refused (which once stayed in the position wallet, and the parity bench's OKX row
    drifted from the paper account)."""
    rng = random.Random(15)
    sim, clock, account = _sim(spot={"USDT": Decimal("40000")},
                               margin={"USDT": Decimal("5000")})
    setups = [("margin", CROSS, None), ("okx:cross:BTC/USDT", POSITION, Decimal(5)),
              ("kraken:BTC/USDT", KRAKEN_LIKE, Decimal(5))]
    for wallet, terms, _ in setups:
        lending.open_wallet(account, wallet, terms)
    refused: dict[tuple[str, RejectKind], int] = {}
    price = Decimal(60000)
    for _ in range(600):
        wallet, _terms, leverage = rng.choice(setups)
        side = rng.choice((Side.BUY, Side.SELL))
        qty = Decimal(rng.randint(1, 25)) / 100
        before = _snapshot(account)
        try:
            _margin(sim, account, side, str(qty), wallet=wallet, auto_borrow=True,
                    auto_repay=True, leverage=leverage)
        except Rejection as exc:
            refused[wallet, exc.kind] = refused.get((wallet, exc.kind), 0) + 1
            assert _snapshot(account) == before, (wallet, side, qty, exc.kind)
        price = (price * Decimal(1 + rng.uniform(-0.03, 0.03))).quantize(Decimal("0.1"))
        clock.advance(600)
        sim.set_price("BTC/USDT", price)
    # the walk reached the cases: a borrow refused after a margin was due, on both
    # kinds of position wallet, and a margin the spot wallet could not post
    assert all(refused.get((w, RejectKind.BORROW_LIMIT), 0) > 0 for w, _, _ in setups), refused
    assert refused.get(("kraken:BTC/USDT", RejectKind.INSUFFICIENT_FUNDS), 0) > 0, refused
