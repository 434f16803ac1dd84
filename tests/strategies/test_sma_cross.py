from __future__ import annotations

from decimal import Decimal

from ctsd.strategies.base import Strategy, resolve_params
from ctsd.strategies.model import (
    MarketKind,
    OpenOrder,
    OrderIntent,
    OrderType,
    Portfolio,
    Position,
    PositionSide,
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


def run_series(sma: Strategy, kind: MarketKind) -> list[tuple[int, OrderIntent]]:
    """Every intent over CLOSES, each filled at once (the net position follows them)."""
    held = Decimal(0)
    emitted: list[tuple[int, OrderIntent]] = []
    for end in range(1, len(CLOSES) + 1):
        closes = CLOSES[max(0, end - sma.needs.candles):end]
        market = snapshot(symbol_market(SYMBOL, closes, kind=kind))
        portfolio = Portfolio(positions=(Position(SYMBOL, held, d(0)),))
        for intent in sma.decide(market, portfolio):
            assert isinstance(intent, OrderIntent)
            emitted.append((end - 1, intent))
            held += intent.amount if intent.side is Side.BUY else -intent.amount
    return emitted


def test_on_a_perpetual_a_death_cross_goes_short_and_a_golden_cross_covers() -> None:
    emitted = run_series(strategy(), MarketKind.PERPETUAL)
    assert [(i, o.side, o.amount, o.reduce_only, o.tag.split(":")[-1]) for i, o in emitted] == [
        (4, Side.BUY, d("9.09090909"), False, "long"),
        (8, Side.SELL, d("9.09090909"), True, "flat"),
        (8, Side.SELL, d(10), False, "short"),
        (11, Side.BUY, d(10), True, "cover"),
        (11, Side.BUY, d(10), False, "long"),
    ]


def test_long_only_stays_flat_on_a_perpetual_and_long_short_asks_for_shorts() -> None:
    params: dict[str, str | int] = {"fast": 2, "slow": 3, "quote_amount": "100"}
    long_only = SMA_CROSS.create(resolve_params(SMA_CROSS, {**params, "direction": "long_only"}))
    emitted = run_series(long_only, MarketKind.PERPETUAL)
    assert [o.tag.split(":")[-1] for _, o in emitted] == ["long", "flat", "long"]
    both = SMA_CROSS.create(resolve_params(SMA_CROSS, {**params, "direction": "long_short"}))
    assert both.needs.shorts and not strategy().needs.shorts


def test_hedge_legs_are_closed_leg_by_leg() -> None:
    """A hedge-mode portfolio: a death cross closes the long leg, then opens a short."""
    market = snapshot(symbol_market(SYMBOL, CLOSES[5:9], kind=MarketKind.PERPETUAL))
    legs = Portfolio(positions=(Position(SYMBOL, d(2), d(10), PositionSide.LONG),
                                Position(SYMBOL, d(0), d(0), PositionSide.SHORT)))
    intents = strategy().decide(market, legs)
    assert [(o.side, o.amount, o.reduce_only) for o in intents
            if isinstance(o, OrderIntent)] == [(Side.SELL, d(2), True),
                                               (Side.SELL, d(10), False)]
