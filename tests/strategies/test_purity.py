"""Property tests: every built-in strategy is a pure, deterministic function of its inputs."""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ctsd.strategies import model
from ctsd.strategies.base import Strategy, resolve_params
from ctsd.strategies.grid import GRID
from ctsd.strategies.sma_cross import SMA_CROSS
from tests.strategies.helpers import snapshot, symbol_market

SYMBOLS = ("BTC/USDT", "ETH/USDT")
prices = st.integers(min_value=50, max_value=150).map(Decimal)
amounts = st.integers(min_value=0, max_value=5).map(Decimal)


@st.composite
def markets(draw: st.DrawFn) -> model.MarketSnapshot:
    chosen = draw(st.lists(st.sampled_from(SYMBOLS), min_size=1, max_size=2, unique=True))
    spread = draw(st.sampled_from([Decimal(0), Decimal("0.5"), Decimal(2)]))
    return snapshot(*(symbol_market(s, draw(st.lists(prices, min_size=1, max_size=30)), spread)
                      for s in chosen))


@st.composite
def portfolios(draw: st.DrawFn) -> model.Portfolio:
    positions = tuple(model.Position(s, draw(amounts), draw(prices)) for s in SYMBOLS)
    tags = st.sampled_from(["grid:BTC/USDT:-1:buy", "grid:BTC/USDT:+2:sell",
                            "sma_cross:BTC/USDT:long", "manual"])
    orders = tuple(
        model.OpenOrder(f"o{i}", "BTC/USDT", draw(st.sampled_from(model.Side)),
                        model.OrderType.LIMIT, Decimal(1), Decimal(0), draw(prices), draw(tags))
        for i in range(draw(st.integers(0, 3))))
    balances = (model.Balance("USDT", Decimal(draw(st.integers(0, 2000))), Decimal(2000)),)
    return model.Portfolio(positions, orders, balances)


@st.composite
def built_ins(draw: st.DrawFn) -> Strategy:
    if draw(st.booleans()):
        fast = draw(st.integers(1, 5))
        slow = draw(st.integers(fast + 1, 10))
        return SMA_CROSS.create(resolve_params(SMA_CROSS, {
            "fast": fast, "slow": slow, "quote_amount": draw(st.sampled_from(["10", "99.5"]))}))
    return GRID.create(resolve_params(GRID, {
        "reference_price": str(draw(prices)), "spacing_pct": draw(st.sampled_from(["0.5", "2"])),
        "levels": draw(st.integers(1, 6)), "amount": "1"}))


@settings(max_examples=150, deadline=None)
@given(built_ins(), markets(), portfolios())
def test_same_inputs_give_the_same_intents_and_inputs_are_untouched(
    strategy: Strategy, market: model.MarketSnapshot, portfolio: model.Portfolio
) -> None:
    market_before, portfolio_before = copy.deepcopy(market), copy.deepcopy(portfolio)
    first = strategy.decide(market, portfolio)
    again = strategy.decide(copy.deepcopy(market), copy.deepcopy(portfolio))
    assert first == again
    assert market == market_before and portfolio == portfolio_before


@settings(max_examples=150, deadline=None)
@given(built_ins(), markets(), portfolios())
def test_intents_are_well_formed_and_never_sell_what_is_not_held(
    strategy: Strategy, market: model.MarketSnapshot, portfolio: model.Portfolio
) -> None:
    intents = strategy.decide(market, portfolio)
    orders = [i for i in intents if isinstance(i, model.OrderIntent)]
    listed = {m.info.symbol for m in market.symbols}
    for order in orders:
        assert order.symbol in listed
        assert order.amount > 0
        assert (order.price is None) == (order.type is model.OrderType.MARKET)
        assert order.price is None or order.price > 0
        assert order.tag.split(":")[0] in ("grid", "sma_cross")
    cancelled = {i.client_order_id for i in intents if isinstance(i, model.CancelIntent)}
    for symbol in listed:
        # Spot: new sells plus this strategy's sells left resting never exceed the holding.
        kept = sum((o.remaining for o in portfolio.orders_for(symbol)
                    if o.side is model.Side.SELL and o.client_order_id not in cancelled
                    and o.tag.split(":")[0] in {x.tag.split(":")[0] for x in orders}),
                   Decimal(0))
        sold = sum((o.amount for o in orders if o.symbol == symbol and o.side is model.Side.SELL),
                   Decimal(0))
        assert sold <= max(Decimal(0), portfolio.position(symbol).amount - kept)
