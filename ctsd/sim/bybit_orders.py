"""Bybit v5 order parameters decoded into a core order: `/v5/order/create`'s side, type,
time in force, quantity (in quote coin for a spot market buy by `marketUnit`),
`positionIdx`, PostOnly, and conditional orders (`triggerPrice` with
`triggerDirection`; spot ones by `orderFilter`, firing in the direction of the trigger
from the last price), and which orders an `orderFilter` lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TypeVar

from ctsd.sim import bybit_wire as render
from ctsd.sim.accounts import OrderType, RejectKind, Side, TimeInForce, Trigger
from ctsd.sim.bybit_wire import LINEAR, SPOT, Call
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.positions import PositionSide

_T = TypeVar("_T")


def _pick(call: Call, name: str, choices: Mapping[str, _T], spot_error: tuple[int, str]) -> _T:
    value = choices.get(call.require(name))
    if value is None:
        code, msg = spot_error if call.text("category") == SPOT else (
            10001, f"params error: {name} invalid")
        raise render.error(code, msg, call.now_ms)
    return value


def order_request(call: Call, inst: Instrument, last_price: Decimal) -> OrderRequest:
    """`/v5/order/create`'s parameters as a core order (market and limit only).

    A spot market order's `qty` is in quote coin when `marketUnit=quoteCoin`,
    Bybit's default for buys; ccxt always says which it means.
    """
    now, spot = call.now_ms, inst.kind is InstrumentKind.SPOT
    side = _pick(call, "side", {"Buy": Side.BUY, "Sell": Side.SELL}, (170117, "Invalid side."))
    kind = _pick(call, "orderType", {"Market": OrderType.MARKET, "Limit": OrderType.LIMIT},
                 (170116, "Invalid orderType."))
    if any(call.text(p) for p in ("takeProfit", "stopLoss")):
        raise render.error(10001, "params error: TP/SL attached to an order are not simulated", now)
    position_side = None
    if not spot:
        position_side = render.POSITION_IDX.get(call.text("positionIdx") or "0")
        if position_side is None:
            raise render.error(10001, "params error: positionIdx invalid", now)
    post_only = call.text("timeInForce") == "PostOnly"
    tif = _pick(call, "timeInForce", {t.value: t for t in TimeInForce},
                (170115, "Invalid timeInForce.")) if call.text("timeInForce") and not post_only \
        else TimeInForce.GTC
    qty, price = call.decimal("qty"), call.decimal("price")
    if qty is None or qty <= 0:
        raise render.error(10001, render.lack("qty"), now)
    if kind is OrderType.LIMIT and price is None:
        raise render.error(10001, render.lack("price"), now)
    by_quote = False
    if spot and kind is OrderType.MARKET:
        unit = call.text("marketUnit") or ("quoteCoin" if side is Side.BUY else "baseCoin")
        if unit not in ("baseCoin", "quoteCoin"):
            raise render.rejection(RejectKind.BAD_PARAMETER, SPOT, "marketUnit", now)
        by_quote = unit == "quoteCoin"
    return OrderRequest(
        symbol=inst.symbol, side=side, type=kind, qty=Decimal(0) if by_quote else qty,
        price=price if kind is OrderType.LIMIT else None, client_id=call.text("orderLinkId"),
        time_in_force=tif, reduce_only=call.text("reduceOnly") == "true" and not spot,
        quote_qty=qty if by_quote else None, trigger=_trigger(call, spot, last_price),
        post_only=post_only,
        position_side=None if position_side is PositionSide.BOTH else position_side)


def _trigger(call: Call, spot: bool, last_price: Decimal) -> Trigger | None:
    """`triggerPrice` with `triggerDirection` (1 rises to, 2 falls to); spot conditional
    orders (`orderFilter` StopOrder/tpslOrder) take no direction: Bybit compares the
    trigger with the last price."""
    price = call.decimal("triggerPrice")
    if price is None:
        if spot and call.text("orderFilter") in ("StopOrder", "tpslOrder"):
            raise render.error(170130, "Data sent for parameter 'triggerPrice' is not valid.",
                        call.now_ms)
        return None
    if spot:
        return Trigger(price, rises=price > last_price)
    direction = call.text("triggerDirection")
    if direction not in ("1", "2"):
        raise render.error(10001, "TriggerDirection invalid", call.now_ms)
    return Trigger(price, rises=direction == "1")


def conditional_filter(order_filter: str | None, category: str | None) -> bool | None:
    """Which orders an `orderFilter` lists: conditional (True), plain (False), or all
    (None: a linear query without a filter); an unknown filter lists no plain order."""
    if order_filter in ("StopOrder", "tpslOrder"):
        return True
    if order_filter is None and category == LINEAR:
        return None
    return False
