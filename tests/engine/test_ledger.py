from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.engine.ledger import Ledger, split_symbol
from ctsd.engine.orders import Fill
from ctsd.strategies.model import Side
from tests.support.virtual_clock import START_MS

DAY_MS = 86_400_000


def fill(side: Side, amount: str, price: str, fee: str = "0", fee_asset: str = "USDT",
         at_ms: int = START_MS, symbol: str = "BTC/USDT") -> Fill:
    return Fill(f"t{at_ms}{side.value}{amount}{price}", "c", symbol, side, Decimal(amount),
                Decimal(price), Decimal(fee), fee_asset, at_ms)


def test_average_price_and_realized_pnl_net_of_fees() -> None:
    ledger = Ledger()
    ledger.apply(fill(Side.BUY, "1", "100", fee="0.1"))
    ledger.apply(fill(Side.BUY, "1", "110", fee="0.11"))
    assert ledger.position("BTC/USDT").avg_price == Decimal(105)
    realized = ledger.apply(fill(Side.SELL, "1.5", "120", fee="0.18"))
    assert realized == Decimal("22.5") - Decimal("0.18")
    position = ledger.position("BTC/USDT")
    assert (position.amount, position.avg_price) == (Decimal("0.5"), Decimal(105))
    pnl = ledger.pnl({"BTC/USDT": Decimal(100)}, START_MS)
    assert pnl.realized == Decimal("22.5") - Decimal("0.39")
    assert pnl.unrealized == Decimal("-2.5")


def test_flat_resets_the_average_and_a_flip_opens_at_the_fill_price() -> None:
    ledger = Ledger([fill(Side.BUY, "1", "100")])
    ledger.apply(fill(Side.SELL, "1", "90"))
    assert ledger.position("BTC/USDT").avg_price == 0
    ledger.apply(fill(Side.BUY, "1", "100"))
    ledger.apply(fill(Side.SELL, "3", "110"))
    position = ledger.position("BTC/USDT")
    assert (position.amount, position.avg_price) == (Decimal(-2), Decimal(110))


def test_a_base_asset_fee_comes_out_of_the_units_a_buy_receives() -> None:
    """Binance, Bybit and OKX take a spot buy's fee from the base bought: the position is
    what the wallet holds, its average carries the whole cost, and selling it all leaves
    nothing behind and the fee in the realized PnL."""
    ledger = Ledger([fill(Side.BUY, "1", "100", fee="0.001", fee_asset="BTC")])
    position = ledger.position("BTC/USDT")
    assert position.amount == Decimal("0.999")
    assert position.avg_price * position.amount == pytest.approx(Decimal(100), abs=Decimal("1e-20"))
    assert ledger.pnl({}, START_MS).realized == 0
    assert ledger.fees == Decimal("0.1")  # valued at the fill price, whichever way paid
    realized = ledger.apply(fill(Side.SELL, "0.999", "100", fee="0.0999"))
    assert ledger.position("BTC/USDT").amount == 0
    assert realized == pytest.approx(Decimal("-0.1") - Decimal("0.0999"), abs=Decimal("1e-20"))


def test_a_base_asset_fee_on_a_sale_takes_that_much_more_of_the_position() -> None:
    ledger = Ledger([fill(Side.BUY, "1", "100")])
    realized = ledger.apply(fill(Side.SELL, "0.5", "120", fee="0.0005", fee_asset="BTC"))
    assert realized == Decimal(10) - Decimal("0.05")  # the fee's units at their cost, 100
    position = ledger.position("BTC/USDT")
    assert (position.amount, position.avg_price) == (Decimal("0.4995"), Decimal(100))


def test_a_fee_in_a_third_asset_is_not_counted() -> None:
    other = Ledger([fill(Side.BUY, "1", "100", fee="0.5", fee_asset="BNB")])
    assert other.pnl({}, START_MS).realized == 0
    assert other.position("BTC/USDT").amount == 1


def test_realized_today_starts_over_at_utc_midnight() -> None:
    yesterday = START_MS - START_MS % DAY_MS - 1
    ledger = Ledger([fill(Side.BUY, "1", "100", at_ms=yesterday - 10),
                     fill(Side.SELL, "1", "90", at_ms=yesterday)])
    assert ledger.pnl({}, yesterday).realized_today == Decimal(-10)
    assert ledger.pnl({}, START_MS).realized_today == 0
    assert ledger.pnl({}, START_MS).realized == Decimal(-10)


def test_replaying_fills_rebuilds_the_same_state() -> None:
    fills = [fill(Side.BUY, "2", "100", "0.2"), fill(Side.SELL, "1", "130", "0.13"),
             fill(Side.BUY, "0.5", "95", "0.05", at_ms=START_MS + 1)]
    live = Ledger()
    for f in fills:
        live.apply(f)
    replayed = Ledger(fills)
    marks = {"BTC/USDT": Decimal(120)}
    assert replayed.positions() == live.positions()
    assert replayed.pnl(marks, START_MS) == live.pnl(marks, START_MS)


def test_symbols_split_into_base_and_quote() -> None:
    assert split_symbol("BTC/USDT") == ("BTC", "USDT")
    assert split_symbol("ETH/USDT:USDT") == ("ETH", "USDT")
