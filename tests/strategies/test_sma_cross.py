from __future__ import annotations

from decimal import Decimal

from ctsd.strategies.base import Strategy, resolve_params
from ctsd.strategies.model import (
    OpenOrder,
    OrderIntent,
    OrderType,
    Portfolio,
    Position,
    Side,
)
from ctsd.strategies.sma_cross import SMA_CROSS
from tests.strategies.helpers import d, snapshot, symbol_market

SYMBOL = "BTC/USDT"
# fast=2, slow=3. Sign of SMA2 - SMA3 at each index from 2 on:
#   idx:   2  3  4  5  6  7  8  9 10 11 12
#   sign:  0  0  +  +  +  +  -  -  -  +  +
# so a golden cross at 4 and 11, a death cross at 8.
CLOSES = [d(x) for x in (10, 10, 10, 10, 11, 12, 13, 12, 10, 9, 9, 10, 12)]


def strategy(fast: int = 2, slow: int = 3, quote_amount: str = "100") -> Strategy:
    params = resolve_params(SMA_CROSS, {"fast": fast, "slow": slow, "quote_amount": quote_amount})
    return SMA_CROSS.create(params)


def test_the_exact_intents_on_a_fixed_series_are_known_in_advance() -> None:
    sma = strategy()
    held = Decimal(0)
    emitted: list[tuple[int, OrderIntent]] = []
    for end in range(1, len(CLOSES) + 1):
        market = snapshot(symbol_market(SYMBOL, CLOSES[max(0, end - sma.needs.candles):end]))
        portfolio = Portfolio(positions=(Position(SYMBOL, held, d(0)),))
        for intent in sma.decide(market, portfolio):
            assert isinstance(intent, OrderIntent)
            emitted.append((end - 1, intent))
            held += intent.amount if intent.side is Side.BUY else -intent.amount
    assert emitted == [
        (4, OrderIntent(SYMBOL, Side.BUY, OrderType.MARKET, d("9.09090909"), None,
                        "sma_cross:BTC/USDT:long")),
        (8, OrderIntent(SYMBOL, Side.SELL, OrderType.MARKET, d("9.09090909"), None,
                        "sma_cross:BTC/USDT:flat")),
        (11, OrderIntent(SYMBOL, Side.BUY, OrderType.MARKET, d("10"), None,
                         "sma_cross:BTC/USDT:long")),
    ]


def test_needs_one_candle_more_than_the_slow_average() -> None:
    assert strategy(fast=5, slow=20).needs.candles == 21
    assert strategy().decide(snapshot(symbol_market(SYMBOL, CLOSES[2:5])), Portfolio()) == ()


def test_a_trend_already_under_way_is_not_bought() -> None:
    rising = [d(x) for x in (10, 11, 12, 13, 14)]
    assert strategy().decide(snapshot(symbol_market(SYMBOL, rising)), Portfolio()) == ()


def test_no_second_buy_while_long_or_while_an_entry_is_working() -> None:
    market = snapshot(symbol_market(SYMBOL, CLOSES[1:5]))
    long = Portfolio(positions=(Position(SYMBOL, d(1), d(10)),))
    working = Portfolio(open_orders=(OpenOrder("x", SYMBOL, Side.BUY, OrderType.MARKET, d(1),
                                               d(0), None, "sma_cross:BTC/USDT:long"),))
    assert strategy().decide(market, long) == ()
    assert strategy().decide(market, working) == ()
    assert len(strategy().decide(market, Portfolio())) == 1


def test_symbols_are_decided_independently_in_snapshot_order() -> None:
    market = snapshot(symbol_market("ETH/USDT", CLOSES[1:5]), symbol_market(SYMBOL, CLOSES[1:5]))
    intents = strategy().decide(market, Portfolio())
    assert [i.symbol for i in intents] == ["ETH/USDT", SYMBOL]
