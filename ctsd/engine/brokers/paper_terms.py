"""How a paper order meets the market, shared by PAPER spot and PAPER perpetuals.

An order's amount is first cut down to the venue's lot size and its limit price
rounded to the venue's tick, as the venue (and ccxt before it) does with a live one.

Market orders and limits that cross on arrival fill as takers at the touch
(ask for buys, bid for sells) worsened by the configured slippage, but never
past a limit's own price; resting limits fill at their price on the first
ticker that crosses them (buy: ask <= price; sell: bid >= price).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from ctsd.engine.orders import Execution, Order, OrderRequest, OrderStatus
from ctsd.strategies.model import MarketSnapshot, Side, SymbolMarket

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
    """The order with its amount cut down to the lot size and its limit price rounded to
    the tick, as ccxt sends a live one; None when no amount is left."""
    step, tick = market.info.amount_step, market.info.price_step
    if tick and order.price is not None:
        price = (order.price / tick).to_integral_value(ROUND_HALF_UP) * tick
        order = replace(order, price=price if price > 0 else tick)
    if not step:
        return order
    amount = (order.amount / step).to_integral_value(ROUND_DOWN) * step
    return replace(order, amount=amount) if amount > 0 else None


def admitted(request: OrderRequest, book: Mapping[str, Order], snapshot: MarketSnapshot | None,
             now_ms: int) -> Execution | tuple[Order, SymbolMarket]:
    """The order a paper broker goes on with (cut to the lot size) and its market, or the
    answer at once: the resting order of an id already placed (placed once), or a
    rejection (no market data yet, an amount below the lot size)."""
    existing = book.get(request.client_order_id)
    if existing is not None:
        return Execution(existing)
    order = Order.pending(request, now_ms)
    market = snapshot.get(order.symbol) if snapshot else None
    if market is None:
        return Execution(finished(order, OrderStatus.REJECTED, "no market data yet", now_ms))
    lot = on_lot(order, market)
    if lot is None:
        return Execution(finished(order, OrderStatus.REJECTED,
                                  "amount below the venue's lot size", now_ms))
    return lot, market
