"""How a paper order meets the market, shared by PAPER spot and PAPER perpetuals.

An order's amount is first cut down to the venue's lot size, as the venue (and
ccxt before it) does with a live one.

Market orders and limits that cross on arrival fill as takers at the touch
(ask for buys, bid for sells) worsened by the configured slippage, but never
past a limit's own price; resting limits fill at their price on the first
ticker that crosses them (buy: ask <= price; sell: bid >= price).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import ROUND_DOWN, Decimal

from ctsd.engine.orders import Order, OrderStatus
from ctsd.strategies.model import Side, SymbolMarket

BPS = Decimal(10_000)


def taker_price(order: Order, market: SymbolMarket, slippage_bps: Decimal) -> Decimal:
    """The touch price worsened by slippage, but never past a limit order's own price."""
    slip = slippage_bps / BPS
    if order.side is Side.BUY:
        price = market.ticker.ask * (1 + slip)
        return min(price, order.price) if order.price is not None else price
    price = market.ticker.bid * (1 - slip)
    return max(price, order.price) if order.price is not None else price


def crosses(order: Order, market: SymbolMarket) -> bool:
    if order.price is None:
        return False
    if order.side is Side.BUY:
        return market.ticker.ask <= order.price
    return market.ticker.bid >= order.price


def finished(order: Order, status: OrderStatus, reason: str, now_ms: int) -> Order:
    return replace(order, status=status, reason=reason, updated_ms=now_ms)


def on_lot(order: Order, market: SymbolMarket) -> Order | None:
    """The order with its amount cut down to the lot size; None when nothing is left."""
    step = market.info.amount_step
    if not step:
        return order
    amount = (order.amount / step).to_integral_value(ROUND_DOWN) * step
    return replace(order, amount=amount) if amount > 0 else None
