"""The options model: a deterministic chain on the path calendar, Black-Scholes marks on
the underlying's path, limit orders against a spread around the mark, short margin, and
cash settlement at expiry on the path clock (`ctsd.sim.options`, `option_trading`)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.sim import option_trading
from ctsd.sim.accounts import Account, FeeSchedule, Rejection, RejectKind, Side
from ctsd.sim.clock import ManualClock
from ctsd.sim.option_trading import OptionSpec
from ctsd.sim.options import DAY_MS, OptionChain, OptionContract, black_scholes
from ctsd.sim.state import Simulator
from tests.sim.conftest import API_KEY, T0, sim_config

FEES = FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0003"))
SPEC = OptionSpec(tick=Decimal(5), step=Decimal("0.01"), min_qty=Decimal("0.01"),
                  wallet="spot")


def _sim() -> tuple[Simulator, ManualClock, Account]:
    clock = ManualClock(T0)
    sim = Simulator(sim_config(), clock)
    sim.set_price("BTC/USDT", Decimal(60000))
    account = sim.accounts.get(API_KEY)
    assert account is not None
    return sim, clock, account


def _nearest(sim: Simulator, call: bool = True) -> OptionContract:
    contracts = sim.options.contracts(underlying="BTC")
    first = min(c.expiry_ms for c in contracts)
    return min((c for c in contracts if c.expiry_ms == first and c.call is call),
               key=lambda c: abs(c.strike - 60000))


def test_the_chain_is_the_same_for_a_seed_and_its_strikes_do_not_move() -> None:
    sim, clock, _ = _sim()
    chain = sim.options.contracts()
    again = OptionChain(sim.market, sim.config.seed).contracts()
    assert chain == again and len({c.expiry_ms for c in chain}) >= 5
    assert {c.underlying for c in chain} == {"BTC", "ETH"}
    assert all(c.expiry_ms % DAY_MS == 8 * 3_600_000 for c in chain)
    first = _nearest(sim)
    assert first.symbol.startswith("BTC/USDT:USDT-250616-") and first.symbol.endswith("-C")
    sim.set_price("BTC/USDT", Decimal(70000))
    clock.advance(60)
    assert first in sim.options.contracts()  # listed strikes stay put


def test_black_scholes_parity_and_the_mark_follows_the_underlying() -> None:
    call, _ = black_scholes(60000, 60000, 0.1, 0.6, True)
    put, _ = black_scholes(60000, 60000, 0.1, 0.6, False)
    assert call == pytest.approx(put)  # put-call parity at the money, no rates
    sim, _, _ = _sim()
    contract = _nearest(sim)
    low, _ = sim.options.value(contract)
    sim.set_price("BTC/USDT", Decimal(62000))
    high, greeks = sim.options.value(contract)
    assert high > low and 0 < greeks.delta < 1 and greeks.theta < 0


def test_a_long_call_is_paid_its_intrinsic_value_at_expiry() -> None:
    sim, _clock, account = _sim()
    contract = _nearest(sim)
    _, _, ask = option_trading.quote(sim.options, contract, SPEC)
    usdt = account.spot["USDT"].free
    order = option_trading.place(account, sim.market, sim.options, contract, SPEC, Side.BUY,
                                 Decimal("0.1"), ask, FEES, 1, "c1")
    assert order.status.value == "filled"
    paid = usdt - account.spot["USDT"].free
    assert paid == Decimal("0.1") * ask * (1 + FEES.taker)
    sim.advance((contract.expiry_ms - sim.market.path_ms()) / 1000 + 60)
    book = option_trading.book_of(account)
    [settled] = book.settlements
    assert settled.settle_price == sim.options.settlement_price(contract)
    assert settled.payout == Decimal("0.1") * contract.intrinsic(settled.settle_price)
    assert book.open_positions() == []


def test_a_short_holds_margin_and_pays_at_expiry() -> None:
    sim, _clock, account = _sim()
    contract = _nearest(sim, call=False)
    _, bid, _ = option_trading.quote(sim.options, contract, SPEC)
    before = account.spot["USDT"].free
    option_trading.place(account, sim.market, sim.options, contract, SPEC, Side.SELL,
                         Decimal(1), bid, FEES, 1, "s1")
    pos = option_trading.book_of(account).positions[contract.symbol]
    assert pos.qty == -1 and pos.margin == Decimal(9000)  # 15 % of 60,000
    sim.set_price("BTC/USDT", Decimal(50000))
    sim.advance((contract.expiry_ms - sim.market.path_ms()) / 1000 + 60)
    [settled] = option_trading.book_of(account).settlements
    assert settled.payout == -contract.intrinsic(settled.settle_price)
    fee = (bid * FEES.taker).quantize(option_trading.AMOUNT_STEP)
    assert account.spot["USDT"].free == before + bid - fee + settled.payout


def test_orders_are_refused_as_the_venues_refuse_them() -> None:
    sim, _clock, account = _sim()
    contract = _nearest(sim)
    for qty, price, kind in ((Decimal("0.001"), Decimal(100), RejectKind.LOT_SIZE),
                             (Decimal("0.1"), Decimal(101), RejectKind.PRICE_FILTER),
                             (Decimal(100), Decimal(50000), RejectKind.INSUFFICIENT_FUNDS)):
        with pytest.raises(Rejection) as caught:
            option_trading.place(account, sim.market, sim.options, contract, SPEC, Side.BUY,
                                 qty, price, FEES, 1, "x")
        assert caught.value.kind is kind
