"""Order placement and fills against the simulated price path.

Deliberately simple and deterministic: a market order fills at once at the
current price (taker fee); a limit order that crosses fills at once at the
current price (taker), otherwise it rests and fills at its limit (maker) the
first time the account is touched with the price through it. Spot orders hold
their funds while open; perpetual orders hold initial margin at their position's
leverage and move positions through `ctsd.sim.derivatives`. Fees are charged in
the quote (settle) asset.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from ctsd.sim import derivatives
from ctsd.sim.accounts import (
    Account,
    DerivativesBalance,
    FeeSchedule,
    Order,
    OrderStatus,
    OrderType,
    Rejection,
    RejectKind,
    Side,
    TimeInForce,
)
from ctsd.sim.market import Instrument, InstrumentKind, Market
from ctsd.sim.positions import MarginMode, PositionSide

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A venue-neutral order, after the venue has parsed its own parameters."""

    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None = None
    client_id: str | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    quote_qty: Decimal | None = None
    """Spot market buys by quote amount (Binance `quoteOrderQty`); `qty` is then ignored."""
    position_side: PositionSide | None = None
    """Perpetuals: the hedge-mode side the order trades (None: one-way)."""
    margin_mode: MarginMode | None = None
    """Perpetuals: set per order on OKX (`tdMode`); None takes the account's setting."""


def validate(inst: Instrument, qty: Decimal, price: Decimal | None, ref_price: Decimal) -> None:
    """The exchange filters: tick, lot size and minimum notional."""
    if qty <= 0 or qty % inst.step_size != 0 or not inst.min_qty <= qty <= inst.max_qty:
        raise Rejection(RejectKind.LOT_SIZE, f"quantity {qty}")
    if price is not None and (
        price <= 0 or price % inst.tick_size != 0 or not inst.min_price <= price <= inst.max_price
    ):
        raise Rejection(RejectKind.PRICE_FILTER, f"price {price}")
    if qty * (price if price is not None else ref_price) < inst.min_notional:
        raise Rejection(RejectKind.MIN_NOTIONAL, f"notional below {inst.min_notional}")


def place(
    account: Account, market: Market, req: OrderRequest, fees: FeeSchedule, order_id: int,
) -> Order:
    """Validate, hold funds, and fill what crosses; the order is stored even when filled."""
    inst = market.catalog.get(req.symbol)
    if inst is None:
        raise Rejection(RejectKind.UNKNOWN_SYMBOL, req.symbol)
    now = market.now_ms()
    current = market.price(inst.symbol)
    qty = req.qty
    if req.quote_qty is not None and req.type is OrderType.MARKET:
        qty = (req.quote_qty / current).quantize(inst.step_size, rounding="ROUND_DOWN")
    if req.type is OrderType.LIMIT and req.price is None:
        raise Rejection(RejectKind.BAD_PARAMETER, "price")
    validate(inst, qty, req.price if req.type is OrderType.LIMIT else None, current)
    if req.client_id is not None and account.has_client_id(req.client_id):
        raise Rejection(RejectKind.DUPLICATE_CLIENT_ID, req.client_id)
    order = Order(
        id=order_id, client_id=req.client_id or uuid.uuid4().hex[:20], symbol=inst.symbol,
        kind=inst.kind, side=req.side, type=req.type, qty=qty,
        price=req.price if req.type is OrderType.LIMIT else None,
        time_in_force=req.time_in_force, fees=fees, created_ms=now, updated_ms=now,
        reduce_only=req.reduce_only, fee_asset=inst.quote,
    )
    if inst.kind is InstrumentKind.LINEAR:
        derivatives.assign(account, order, req.position_side, req.margin_mode)
    hold_price = max(order.price or current, current)
    _hold(account, inst, order, hold_price, market)
    account.add_order(order)
    crosses = order.price is None or (
        order.price >= current if order.side is Side.BUY else order.price <= current
    )
    if crosses:
        _fill(account, market, inst, order, current, fees.taker, now)
    elif order.time_in_force is not TimeInForce.GTC:
        _release(account, inst, order, OrderStatus.EXPIRED, now)
    return order


def cancel(account: Account, market: Market, order: Order) -> Order:
    if not order.status.is_open:
        raise Rejection(RejectKind.ORDER_NOT_OPEN, str(order.id))
    inst = market.catalog.instruments[order.symbol]
    _release(account, inst, order, OrderStatus.CANCELED, market.now_ms())
    return order


def sync(account: Account, market: Market) -> None:
    """Fill resting limit orders the price has reached since the last look."""
    now = market.now_ms()
    for order in account.open_orders():
        assert order.price is not None
        price = market.price(order.symbol)
        through = price <= order.price if order.side is Side.BUY else price >= order.price
        if through:
            inst = market.catalog.instruments[order.symbol]
            if inst.kind is InstrumentKind.LINEAR and not derivatives.fill_allowed(
                    account, order, order.remaining):
                _release(account, inst, order, OrderStatus.EXPIRED, now)
                continue
            _fill(account, market, inst, order, order.price, order.fees.maker, now, maker=True)


def fill_liquidation(account: Account, market: Market, order: Order, price: Decimal) -> None:
    """Fill a liquidation order (built by `ctsd.sim.liquidation`) at `price`, as a taker."""
    inst = market.catalog.instruments[order.symbol]
    _fill(account, market, inst, order, price, order.fees.taker, market.now_ms())


def derivatives_balances(account: Account, market: Market) -> list[DerivativesBalance]:
    """Wallet, unrealised PnL and margins per settle asset (`ctsd.sim.derivatives.balances`)."""
    return derivatives.balances(account, market)


def _hold(account: Account, inst: Instrument, order: Order, price: Decimal, market: Market) -> None:
    if inst.kind is InstrumentKind.SPOT:
        if order.side is Side.BUY:
            asset, amount = inst.quote, order.qty * price * (1 + order.fees.taker)
        else:
            asset, amount = inst.base, order.qty
        holding = account.holding(asset)
        if holding.free < amount:
            raise Rejection(RejectKind.INSUFFICIENT_FUNDS, f"{asset} {holding.free} < {amount}")
        holding.free -= amount
        holding.locked += amount
        order.locked = amount
        return
    order.locked = derivatives.order_margin(account, market, inst, order, price)


def _release(
    account: Account, inst: Instrument, order: Order, status: OrderStatus, now: int,
) -> None:
    if inst.kind is InstrumentKind.SPOT:
        holding = account.holding(inst.quote if order.side is Side.BUY else inst.base)
        holding.locked -= order.locked
        holding.free += order.locked
    order.locked = _ZERO
    order.status = status
    order.updated_ms = now


def _fill(
    account: Account, market: Market, inst: Instrument, order: Order, price: Decimal,
    rate: Decimal, now: int, *, maker: bool = False,
) -> None:
    qty = order.remaining
    cost = qty * price
    fee = cost * rate
    if inst.kind is InstrumentKind.SPOT:
        base, quote = account.holding(inst.base), account.holding(inst.quote)
        if order.side is Side.BUY:
            quote.locked -= order.locked
            quote.free += order.locked - cost - fee
            base.free += qty
        else:
            base.locked -= order.locked
            quote.free += cost - fee
    else:
        derivatives.apply_fill(account, market, inst, order, qty, price, fee, now, maker=maker)
    order.locked = _ZERO
    order.filled += qty
    order.cost += cost
    order.fee += fee
    order.status = OrderStatus.FILLED
    order.updated_ms = order.fill_ms = now
