"""Bybit v5 orders on the wire: the order as `/v5/order/realtime` lists it, create and
cancel acknowledgements, and `/v5/order/create`'s parameters decoded into a core
`OrderRequest` (category, side, type, time in force, `marketUnit`, `triggerPrice` with
`triggerDirection`, `positionIdx`, post-only)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from ctsd.sim.accounts import (
    Order,
    OrderStatus,
    OrderType,
    RejectKind,
    Side,
    TimeInForce,
    Trigger,
)
from ctsd.sim.bybit_wire import LINEAR, SPOT, Call, error, lack, market_id, rejection
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.positions import PositionSide
from ctsd.sim.wire import plain

_ZERO = Decimal(0)
_T = TypeVar("_T")


def status_name(order: Order) -> str:
    """`orderStatus`: New, PartiallyFilled, Filled, Cancelled, PartiallyFilledCanceled, and
    for conditional orders Untriggered (waiting) and Deactivated (cancelled while waiting)."""
    if order.untriggered:
        return "Untriggered" if order.status is OrderStatus.NEW else "Deactivated"
    if order.status is OrderStatus.NEW:
        return "PartiallyFilled" if order.filled else "New"
    if order.status is OrderStatus.FILLED:
        return "Filled"
    return "PartiallyFilledCanceled" if order.filled else "Cancelled"


def order(order: Order, inst: Instrument, market_unit: str | None, quote_qty: Decimal | None,
          ) -> dict[str, Any]:
    """An order as `/v5/order/realtime` and `/v5/order/history` list it.

    `market_unit`/`quote_qty` describe a spot market order placed by quote amount:
    its `qty` is then in quote coin, as Bybit reports it (ccxt reads `cost` then).
    Spot orders carry no `tpslMode`, which is how ccxt tells spot from contract
    when it lists orders without a market.
    """
    spot = inst.kind is InstrumentKind.SPOT
    qty = quote_qty if quote_qty is not None else order.qty
    average = order.average.quantize(inst.tick_size) if order.average else None
    is_market = order.type is OrderType.MARKET
    out: dict[str, Any] = {
        "orderId": str(order.id), "orderLinkId": order.client_id, "blockTradeId": "",
        "symbol": market_id(inst),
        "price": plain(order.price) if order.price is not None else "0",
        "qty": plain(qty), "side": order.side.value.capitalize(),
        "isLeverage": ("1" if order.auto_borrow else "0") if spot else "",
        "positionIdx": _IDX[order.position_side],
        "orderStatus": status_name(order),
        "cancelType": "CancelByUser" if order.status is OrderStatus.CANCELED else "UNKNOWN",
        "rejectReason": "EC_NoError",
        "avgPrice": plain(average) if average is not None else ("0" if spot else ""),
        "leavesQty": plain(order.remaining if order.status.is_open else _ZERO),
        "leavesValue": plain((order.remaining * (order.price or _ZERO))
                             if order.status.is_open else _ZERO),
        "cumExecQty": plain(order.filled), "cumExecValue": plain(order.cost),
        "cumExecFee": plain(order.fee),
        "timeInForce": "IOC" if is_market else order.time_in_force.value,
        "orderType": "Market" if is_market else "Limit",
        "stopOrderType": "Stop" if order.trigger is not None else "",
        "orderIv": "", "triggerPrice": plain(order.trigger.price) if order.trigger else "0",
        "takeProfit": "0", "stopLoss": "0", "tpTriggerBy": "", "slTriggerBy": "",
        "triggerDirection": (1 if order.trigger.rises else 2) if order.trigger else 0,
        "triggerBy": "LastPrice" if order.trigger is not None else "",
        "lastPriceOnCreated": "", "reduceOnly": order.reduce_only, "closeOnTrigger": False,
        "smpType": "None", "smpGroup": 0, "smpOrderId": "", "tpLimitPrice": "",
        "slLimitPrice": "", "placeType": "", "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
        "cumFeeDetail": {order.fee_asset: plain(order.fee)} if order.fee else {},
    }
    if spot:
        out["marketUnit"] = (market_unit or "baseCoin") if is_market else ""
    else:
        out["tpslMode"] = "UNKNOWN"
    return out


def order_ack(order: Order) -> dict[str, str]:
    """What create and cancel answer: the ids only (ccxt's order then has no status)."""
    return {"orderId": str(order.id), "orderLinkId": order.client_id}


def order_page(
    orders: Iterable[dict[str, Any]], category: str, next_cursor: str,
) -> dict[str, Any]:
    return {"list": list(orders), "nextPageCursor": next_cursor, "category": category}



def _pick(call: Call, name: str, choices: Mapping[str, _T], spot_error: tuple[int, str]) -> _T:
    value = choices.get(call.require(name))
    if value is None:
        code, msg = spot_error if call.text("category") == SPOT else (
            10001, f"params error: {name} invalid")
        raise error(code, msg, call.now_ms)
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
        raise error(10001, "params error: TP/SL attached to an order are not simulated", now)
    position_side = None
    if not spot:
        position_side = _POSITION_IDX.get(call.text("positionIdx") or "0")
        if position_side is None:
            raise error(10001, "params error: positionIdx invalid", now)
    post_only = call.text("timeInForce") == "PostOnly"
    tif = _pick(call, "timeInForce", {t.value: t for t in TimeInForce},
                (170115, "Invalid timeInForce.")) if call.text("timeInForce") and not post_only \
        else TimeInForce.GTC
    qty, price = call.decimal("qty"), call.decimal("price")
    if qty is None or qty <= 0:
        raise error(10001, lack("qty"), now)
    if kind is OrderType.LIMIT and price is None:
        raise error(10001, lack("price"), now)
    by_quote = False
    if spot and kind is OrderType.MARKET:
        unit = call.text("marketUnit") or ("quoteCoin" if side is Side.BUY else "baseCoin")
        if unit not in ("baseCoin", "quoteCoin"):
            raise rejection(RejectKind.BAD_PARAMETER, SPOT, "marketUnit", now)
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
            raise error(170130, "Data sent for parameter 'triggerPrice' is not valid.",
                        call.now_ms)
        return None
    if spot:
        return Trigger(price, rises=price > last_price)
    direction = call.text("triggerDirection")
    if direction not in ("1", "2"):
        raise error(10001, "TriggerDirection invalid", call.now_ms)
    return Trigger(price, rises=direction == "1")


def conditional_filter(order_filter: str | None, category: str | None) -> bool | None:
    """Which orders an `orderFilter` lists: conditional (True), plain (False), or all
    (None: a linear query without a filter); an unknown filter lists no plain order."""
    if order_filter in ("StopOrder", "tpslOrder"):
        return True
    if order_filter is None and category == LINEAR:
        return None
    return False


_POSITION_IDX = {"0": PositionSide.BOTH, "1": PositionSide.LONG, "2": PositionSide.SHORT}
"""`positionIdx`: 0 one-way, 1 hedge-mode buy side, 2 hedge-mode sell side."""
_IDX = {side: int(idx) for idx, side in _POSITION_IDX.items()}
