"""OKX v5 orders on the wire: `trade/order`'s order objects decoded into a core
`OrderRequest` with the `OrderTags` OKX echoes back (ordType, tdMode, clOrdId, tag,
tgtCcy), and orders as `trade/order` and `trade/orders-pending` return them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ctsd.sim.accounts import Order, OrderStatus, OrderType, Side, TimeInForce
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.okx_wire import (
    MIN_AMOUNT,
    OrderFailure,
    contract_value,
    inst_id,
    inst_type,
    size,
)
from ctsd.sim.positions import PositionSide
from ctsd.sim.wire import order_status, plain


def order_inst_type(inst: Instrument, tags: OrderTags) -> str:
    """A spot order traded on margin (`tdMode` cross or isolated) is a MARGIN order."""
    if inst.kind is InstrumentKind.SPOT and tags.td_mode in ("cross", "isolated"):
        return "MARGIN"
    return inst_type(inst)


def tags_of(order: Order, inst: Instrument) -> OrderTags:
    """The tags kept on the order at placement (`Order.note`), or those OKX would show
    for an order placed without any."""
    return order.note if isinstance(order.note, OrderTags) else default_tags(order, inst)


@dataclass(frozen=True, slots=True)
class OrderTags:
    """What OKX echoes back about an order that the venue-neutral `Order` does not keep."""

    ord_type: str
    td_mode: str
    cl_ord_id: str = ""
    tag: str = ""
    tgt_ccy: str = ""
    quote_sz: Decimal | None = None
    """Spot market orders sized in the quote currency (`tgtCcy=quote_ccy`): `sz` as sent."""


ORD_TYPES = {"market": OrderType.MARKET, "optimal_limit_ioc": OrderType.MARKET,
             "limit": OrderType.LIMIT, "ioc": OrderType.LIMIT, "fok": OrderType.LIMIT}
"""Simulated `ordType`s; post_only, mmp and the algo types answer 51000."""
_TIME_IN_FORCE = {"ioc": TimeInForce.IOC, "fok": TimeInForce.FOK}
_CL_ORD_ID = re.compile(r"[A-Za-z0-9]{1,32}")


def order_request(inst: Instrument, entry: dict[str, Any], *, closes: bool = False,
                  ) -> tuple[OrderRequest, OrderTags]:
    """Parse one order object of `trade/order` or `trade/batch-orders`, OKX's checks first.
    `closes`: the venue's own order that closes a whole position (`trade/close-position`),
    sized by what the position owes, not to the lot.

    `sz` is base units on spot (quote units for a `quote_ccy` market order) and
    contracts on swaps; the core trades base units, so swap sizes are multiplied out.
    """
    spot = inst.kind is InstrumentKind.SPOT
    side, ord_type = str(entry.get("side") or ""), str(entry.get("ordType") or "")
    td_mode = str(entry.get("tdMode") or "")
    tgt_ccy = str(entry.get("tgtCcy") or "base_ccy") if spot else ""
    for name, value, allowed in (
        ("tdMode", td_mode, ("cash", "cross", "isolated") if spot else ("cross", "isolated")),
        ("side", side, ("buy", "sell")),
        ("ordType", ord_type, tuple(ORD_TYPES)),
        ("posSide", str(entry.get("posSide") or "net"),
         ("net",) if spot else ("net", "long", "short")),
        ("tgtCcy", tgt_ccy or "-", ("base_ccy", "quote_ccy") if spot else ("-",)),
    ):
        if not value:
            raise OrderFailure("50014", f"Parameter {name} can not be empty")
        if value not in allowed:
            raise OrderFailure("51000", f"Parameter {name} error")
    sz = decimal_field(entry, "sz")
    if sz is None:
        raise OrderFailure("50014", "Parameter sz can not be empty")
    order_type = ORD_TYPES[ord_type]
    price = decimal_field(entry, "px") if order_type is OrderType.LIMIT else None
    if order_type is OrderType.LIMIT and price is None:
        raise OrderFailure("50014", "Parameter px can not be empty")
    quote_sz = sz if tgt_ccy == "quote_ccy" else None
    if quote_sz is not None and order_type is not OrderType.MARKET:
        raise OrderFailure("51000", "Parameter tgtCcy error")
    ct_val = Decimal(1) if spot else contract_value(inst)
    if quote_sz is None and sz % (inst.step_size / ct_val) and not closes:
        raise OrderFailure("51121", "Order quantity must be a multiple of the lot size.")
    if quote_sz is None and sz < inst.min_qty / ct_val and not closes:
        raise OrderFailure(*MIN_AMOUNT)
    cl_ord_id = str(entry.get("clOrdId") or "")
    if cl_ord_id and not _CL_ORD_ID.fullmatch(cl_ord_id):
        raise OrderFailure("51000", "Parameter clOrdId error")
    request = OrderRequest(
        symbol=inst.symbol, side=Side(side), type=order_type,
        qty=Decimal(0) if quote_sz is not None else sz * ct_val, price=price,
        client_id=cl_ord_id or None,
        time_in_force=_TIME_IN_FORCE.get(ord_type, TimeInForce.GTC),
        reduce_only=entry.get("reduceOnly") in (True, "true"), quote_qty=quote_sz,
        closes_position=closes)
    tags = OrderTags(ord_type, td_mode, cl_ord_id, str(entry.get("tag") or ""), tgt_ccy, quote_sz)
    return request, tags


def decimal_field(entry: dict[str, Any], name: str) -> Decimal | None:
    raw = entry.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation as exc:
        raise OrderFailure("51000", f"Parameter {name} error") from exc
    if not value.is_finite() or value <= 0:
        raise OrderFailure("51000", f"Parameter {name} error")
    return value


def default_tags(order: Order, inst: Instrument) -> OrderTags:
    """Tags for an order this venue did not place (the account is shared between venues)."""
    ord_type = "market" if order.type is OrderType.MARKET else {
        TimeInForce.GTC: "limit", TimeInForce.IOC: "ioc", TimeInForce.FOK: "fok",
    }[order.time_in_force]
    spot = inst.kind is InstrumentKind.SPOT
    return OrderTags(ord_type, "cash" if spot else "cross", order.client_id, "",
                     "base_ccy" if spot else "")


_POS_SIDE = {PositionSide.BOTH: "net", PositionSide.LONG: "long", PositionSide.SHORT: "short"}
_STATE = {
    OrderStatus.NEW: "live", OrderStatus.FILLED: "filled",
    OrderStatus.CANCELED: "canceled", OrderStatus.EXPIRED: "canceled",
}


def _status(order: Order) -> str:
    return order_status(order, _STATE, "partially_filled")


def pos_side(o: Order) -> str:
    """A swap order's `posSide`: `net` in one-way mode, else `long` or `short`."""
    return _POS_SIDE[o.position_side]


def order(o: Order, inst: Instrument, tags: OrderTags, leverage: Decimal,
          last_trade_id: int | None = None) -> dict[str, Any]:
    """An order as `trade/order` and `trade/orders-pending` return it; `tradeId` is its
    last fill's (`Fill.trade_id`, as in `trade/fills`)."""
    spot = inst.kind is InstrumentKind.SPOT
    filled = size(inst, o.filled)
    average = plain(o.average.quantize(inst.tick_size)) if o.average else ""
    sz = plain(tags.quote_sz) if tags.quote_sz is not None else size(inst, o.qty)
    return {
        "accFillSz": filled, "algoClOrdId": "", "algoId": "", "attachAlgoClOrdId": "",
        "attachAlgoOrds": [], "avgPx": average, "cTime": str(o.created_ms),
        "cancelSource": "", "cancelSourceReason": "", "category": "normal", "ccy": "",
        "clOrdId": tags.cl_ord_id, "fee": plain(-o.fee), "feeCcy": o.fee_asset,
        "fillPx": average, "fillSz": filled if o.filled else "0",
        "fillTime": str(o.fill_ms) if o.fill_ms else "", "instId": inst_id(inst),
        "instType": order_inst_type(inst, tags), "isTpLimit": "false",
        "lever": "" if spot else plain(leverage),
        "linkedAlgoOrd": {"algoId": ""}, "ordId": str(o.id), "ordType": tags.ord_type,
        "pnl": "0", "posSide": "" if spot else _POS_SIDE[o.position_side],
        "px": plain(o.price) if o.price else "",
        "pxType": "", "pxUsd": "", "pxVol": "", "quickMgnType": "", "rebate": "0",
        "rebateCcy": inst.quote, "reduceOnly": "true" if o.reduce_only else "false",
        "side": o.side.value, "slOrdPx": "", "slTriggerPx": "", "slTriggerPxType": "",
        "source": "", "state": _status(o), "stpId": "", "stpMode": "cancel_maker",
        "sz": sz, "tag": tags.tag, "tdMode": tags.td_mode, "tgtCcy": tags.tgt_ccy,
        "tpOrdPx": "", "tpTriggerPx": "", "tpTriggerPxType": "",
        "tradeId": str(last_trade_id) if last_trade_id is not None else "",
        "uTime": str(o.updated_ms),
    }


def placed(o: Order, tags: OrderTags, now_ms: int) -> dict[str, Any]:
    return {"clOrdId": tags.cl_ord_id, "ordId": str(o.id), "sCode": "0",
            "sMsg": "Order placed", "tag": tags.tag, "ts": str(now_ms)}


def canceled(o: Order, tags: OrderTags, now_ms: int) -> dict[str, Any]:
    return {"clOrdId": tags.cl_ord_id, "ordId": str(o.id), "sCode": "0", "sMsg": "",
            "ts": str(now_ms)}


def failed(entry: Mapping[str, Any], exc: OrderFailure, now_ms: int) -> dict[str, Any]:
    return {"clOrdId": str(entry.get("clOrdId") or ""), "ordId": str(entry.get("ordId") or ""),
            "sCode": exc.code, "sMsg": exc.msg, "tag": str(entry.get("tag") or ""),
            "ts": str(now_ms)}
