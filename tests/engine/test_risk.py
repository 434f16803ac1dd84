from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.engine.config import RiskLimits
from ctsd.engine.ledger import PnL
from ctsd.engine.risk import RiskGate
from ctsd.strategies import model
from tests.strategies.helpers import snapshot, symbol_market
from tests.support.virtual_clock import VirtualClock

SYMBOL = "BTC/USDT"
MARKET = snapshot(symbol_market(SYMBOL, [Decimal(100)], spread=Decimal(2)))  # bid 99, ask 101
PERP = snapshot(symbol_market(SYMBOL, [Decimal(100)], spread=Decimal(2),
                              kind=model.MarketKind.PERPETUAL))
NO_LIMITS = RiskLimits(max_open_orders=None, max_orders_per_minute=None)


def buy(amount: str, price: str | None = None, **terms: object) -> model.OrderIntent:
    kind = model.OrderType.MARKET if price is None else model.OrderType.LIMIT
    return model.OrderIntent(SYMBOL, model.Side.BUY, kind, Decimal(amount),
                             None if price is None else Decimal(price),
                             "t", **terms)  # type: ignore[arg-type]


def sell(amount: str, **terms: object) -> model.OrderIntent:
    return model.OrderIntent(SYMBOL, model.Side.SELL, model.OrderType.MARKET, Decimal(amount),
                             None, "t", **terms)  # type: ignore[arg-type]


def reasons(limits: RiskLimits, intents: list[model.OrderIntent],
            portfolio: model.Portfolio | None = None, market: model.MarketSnapshot = MARKET,
            hedge: bool = False) -> list[str]:
    gate = RiskGate(limits, VirtualClock(), hedge=hedge)
    return [v.reason for v in gate.review(intents, market, portfolio or model.Portfolio())]


def test_max_order_notional_prices_market_orders_at_the_touch() -> None:
    limits = RiskLimits(max_order_notional=Decimal(100), max_open_orders=None)
    assert reasons(limits, [buy("1"), sell("1"), buy("1", "99")], market=PERP) == [
        "order notional 101.00 exceeds max_order_notional 100", "", ""]


def test_max_position_counts_holdings_resting_orders_and_this_cycle() -> None:
    limits = RiskLimits(max_position_notional=Decimal(450), max_open_orders=None)
    resting = model.OpenOrder("o", SYMBOL, model.Side.BUY, model.OrderType.LIMIT, Decimal(1),
                              Decimal(0), Decimal(100), "t")
    held = model.Portfolio(positions=(model.Position(SYMBOL, Decimal(2), Decimal(90)),),
                           open_orders=(resting,))
    found = reasons(limits, [buy("1", "100"), buy("1", "100"), sell("3")], held, PERP)
    assert found[0] == ""
    assert found[1].startswith("position notional 500.00 in BTC/USDT would exceed")
    assert found[2] == ""  # reducing exposure is always allowed


def test_max_open_orders_counts_only_orders_that_rest() -> None:
    limits = RiskLimits(max_open_orders=2)
    assert reasons(limits, [buy("1", "90"), buy("1", "80"), buy("1"), buy("1", "70")]) == [
        "", "", "", "2 open orders: max_open_orders 2 reached"]


@pytest.mark.asyncio
async def test_max_orders_per_minute_is_a_sliding_window_on_the_clock() -> None:
    clock = VirtualClock()
    gate = RiskGate(RiskLimits(max_orders_per_minute=2, max_open_orders=None), clock)
    assert [v.accepted for v in gate.review([buy("1")] * 3, MARKET, model.Portfolio())] == [
        True, True, False]
    await clock.advance(59)
    assert not gate.review([buy("1")], MARKET, model.Portfolio())[0].accepted
    await clock.advance(1)
    assert gate.review([buy("1")], MARKET, model.Portfolio())[0].accepted


def test_an_intent_without_a_price_is_refused() -> None:
    other = model.OrderIntent("ETH/USDT", model.Side.BUY, model.OrderType.MARKET, Decimal(1),
                              None, "t")
    assert reasons(NO_LIMITS, [other]) == ["no price for ETH/USDT"]


def test_daily_loss_counts_realized_today_plus_open_pnl() -> None:
    gate = RiskGate(RiskLimits(daily_loss_limit=Decimal(50)), VirtualClock())
    assert gate.daily_loss_breach(PnL(Decimal(-1000), Decimal(-20), Decimal(-29))) is None
    assert gate.daily_loss_breach(PnL(Decimal(0), Decimal(-20), Decimal(-30))) == (
        "daily loss 50.00 reached daily_loss_limit 50")
    assert RiskGate(NO_LIMITS, VirtualClock()).daily_loss_breach(
        PnL(Decimal(0), Decimal(-10**9), Decimal(0))) is None


def test_position_limits_count_leveraged_notional_on_each_hedge_leg() -> None:
    """Notional is amount times price whatever the leverage; hedge legs count apart."""
    limits = RiskLimits(max_position_notional=Decimal(250), max_open_orders=None)
    legs = model.Portfolio(positions=(
        model.Position(SYMBOL, Decimal(2), Decimal(90), model.PositionSide.LONG),
        model.Position(SYMBOL, Decimal(-2), Decimal(90), model.PositionSide.SHORT)))
    found = reasons(limits, [buy("1"), sell("1"), sell("1", reduce_only=True)], legs, PERP,
                    hedge=True)
    assert found[0].startswith("position notional 303.00 in BTC/USDT would exceed")
    assert found[1].startswith("position notional 297.00 in BTC/USDT would exceed")
    assert found[2] == ""  # closes part of the long leg


def test_what_a_market_cannot_do_is_refused_naming_the_field() -> None:
    one = model.Portfolio(positions=(model.Position(SYMBOL, Decimal(1), Decimal(90)),))
    assert reasons(NO_LIMITS, [sell("1"), sell("1")], one) == [
        "", "side: selling 1 BTC exceeds the 0 held; spot cannot go short"]
    assert reasons(NO_LIMITS, [sell("1", reduce_only=True),
                               buy("1", position_side=model.PositionSide.LONG)], one) == [
        "reduce_only: spot has no position to reduce",
        "position_side: spot has no long position"]
    assert reasons(NO_LIMITS, [buy("1", position_side=model.PositionSide.LONG), sell("5")],
                   market=PERP) == [
        "position_side: long needs a hedge-mode account; this one is one-way", ""]
    assert reasons(NO_LIMITS, [buy("1", position_side=model.PositionSide.BOTH)], market=PERP,
                   hedge=True) == [
        "position_side: a hedge-mode account trades the long or the short leg"]


def _option(premium: str, underlying: str | None) -> model.MarketSnapshot:
    """A contract quoted at `premium` ± 1, with the underlying's price the venue quotes."""
    found = symbol_market(SYMBOL, [Decimal(premium)], spread=Decimal(2),
                          kind=model.MarketKind.OPTION)
    ticker = replace(found.ticker, underlying=None if underlying is None else Decimal(underlying))
    return snapshot(replace(found, ticker=ticker))


def test_an_option_buy_counts_the_underlying_notional_and_a_sell_its_premium() -> None:
    """A contract's exposure is the underlying's notional (its premium where that is more,
    a deep put; the premium alone where the venue quotes no underlying); a sell takes
    contracts back and counts its premium."""
    limits = RiskLimits(max_order_notional=Decimal(5000), max_position_notional=Decimal(7000),
                        max_open_orders=None)
    call = _option("1000", "60000")
    assert reasons(limits, [buy("0.1", "1000")], market=call) == [
        "order notional 6000.00 (underlying at 60000) exceeds max_order_notional 5000"]
    held = model.Portfolio(positions=(model.Position(SYMBOL, Decimal("0.1"), Decimal(900)),))
    found = reasons(limits, [buy("0.02", "1000"), sell("0.1")], held, call)
    assert found[0] == ("position notional 7200.00 (underlying at 60000) in BTC/USDT would "
                        "exceed max_position_notional 7000")
    assert found[1] == ""  # 0.1 x the bid 999, its premium (6000 underlying: not counted)
    deep = _option("70000", "60000")  # a put struck far above: the premium is the risk
    assert reasons(limits, [buy("0.1", "70000")], market=deep) == [
        "order notional 7000.00 (premium) exceeds max_order_notional 5000"]
    assert reasons(limits, [buy("0.1", "1000")], market=_option("1000", None)) == [""]
