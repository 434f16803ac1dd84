"""Kraken WebSocket v2 message shapes: channel pushes, method answers, executions.

v2 speaks normalised JSON: symbols as `BTC/USD` (the unified symbol, not the v1
`XBT/USD` wsname), numbers as JSON numbers, times as RFC 3339. Ids in the
`executions` channel are the REST ids (`OXXXXX-…` orders, `TXXXXX-…` trades), so
a fill seen on the stream is the fill `QueryOrders` lists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ctsd.sim import kraken_wire as rest
from ctsd.sim.accounts import Account, Fill, Order, OrderStatus
from ctsd.sim.book import Level
from ctsd.sim.events import ExecKind, OrderUpdate
from ctsd.sim.kraken_orders import tags_of
from ctsd.sim.market import Candle, Instrument, TickerStats
from ctsd.sim.tape import PublicTrade
from ctsd.sim.wire import dumps, order_status
from ctsd.sim.ws.books import crc32_unsigned

_ZERO = Decimal(0)
_STATUS = {OrderStatus.NEW: "new", OrderStatus.FILLED: "filled",
           OrderStatus.CANCELED: "canceled", OrderStatus.EXPIRED: "expired"}


def _status(order: Order) -> str:
    return order_status(order, _STATUS, "partially_filled")


def number(value: Decimal) -> float:
    return float(value)


def rfc3339(ms: int, digits: int = 6) -> str:
    at = dt.datetime.fromtimestamp(ms // 1000, dt.UTC)
    fraction = f"{ms % 1000:03d}".ljust(digits, "0")
    return f"{at:%Y-%m-%dT%H:%M:%S}.{fraction}Z"


def channel(name: str, kind: str, data: list[Any], **extra: Any) -> str:
    return dumps({"channel": name, "type": kind, "data": data, **extra})


def answer(method: str, req_id: Any, now_ms: int, *, result: dict[str, Any] | None = None,
           error: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {"method": method}
    if req_id is not None:
        body["req_id"] = req_id
    if error is not None:
        body |= {"error": error, "success": False, **extra}
    else:
        body |= {"result": result or {}, "success": True}
    stamp = rfc3339(now_ms)
    return dumps({**body, "time_in": stamp, "time_out": stamp})


def status(connection_id: int) -> str:
    return channel("status", "update", [{
        "api_version": "v2", "connection_id": connection_id, "system": "online",
        "version": "2.0.10",
    }])


def ticker(inst: Instrument, stats: TickerStats) -> dict[str, Any]:
    change = stats.last - stats.open
    qty = inst.min_qty * 10
    return {
        "symbol": inst.symbol, "bid": number(stats.bid), "bid_qty": number(qty),
        "ask": number(stats.ask), "ask_qty": number(qty), "last": number(stats.last),
        "volume": number(stats.volume),
        "vwap": number(stats.vwap.quantize(inst.tick_size)), "low": number(stats.low),
        "high": number(stats.high), "change": number(change),
        "change_pct": round(float(change / stats.open * 100), 2),
    }


def ohlc(inst: Instrument, interval: int, candle: Candle, now_ms: int) -> dict[str, Any]:
    vwap = candle.quote_volume / candle.volume if candle.volume else candle.close
    return {
        "symbol": inst.symbol, "open": number(candle.open), "high": number(candle.high),
        "low": number(candle.low), "close": number(candle.close), "trades": candle.trades,
        "volume": number(candle.volume), "vwap": number(vwap.quantize(inst.tick_size)),
        "interval_begin": rfc3339(candle.open_ms, 9), "interval": interval,
        "timestamp": rfc3339(min(now_ms, candle.close_ms + 1)),
    }


def trades(inst: Instrument, tape: list[PublicTrade]) -> list[dict[str, Any]]:
    return [{"symbol": inst.symbol, "side": "buy" if t.taker_buys else "sell",
             "price": number(t.price), "qty": number(t.qty), "ord_type": "market",
             "trade_id": t.id, "timestamp": rfc3339(t.time_ms)} for t in tape]


def book_levels(side: Sequence[Level]) -> list[dict[str, float]]:
    return [{"price": number(lv.price), "qty": number(lv.qty)} for lv in side]


def book_checksum(inst: Instrument, bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """CRC32 of the best 10 asks then the best 10 bids, each as price and quantity at the
    pair's precision with the point and leading zeros removed (docs "Book checksum")."""

    def digits(value: Decimal, places: int) -> str:
        return f"{value:.{places}f}".replace(".", "").lstrip("0")

    text = "".join(digits(lv.price, inst.price_decimals) + digits(lv.qty, inst.qty_decimals)
                   for lv in (*asks[:10], *bids[:10]))
    return crc32_unsigned(text)


def balances(account: Account) -> list[dict[str, Any]]:
    return [balance_entry(asset, account) for asset in sorted(account.spot)]


def balance_entry(asset: str, account: Account) -> dict[str, Any]:
    holding = account.spot.get(asset)
    total = holding.total if holding else _ZERO
    return {"asset": asset, "asset_class": "currency", "balance": number(total),
            "wallets": [{"type": "spot", "id": "main", "balance": number(total)}]}


def order_entry(order: Order, exec_type: str, at_ms: int) -> dict[str, Any]:
    """An open or newly placed order, as `pending_new`/`new` and the snapshot carry it."""
    tags = tags_of(order)
    entry: dict[str, Any] = {
        "order_id": rest.order_txid(order.id), "order_userref": tags.userref or 0,
        "symbol": order.symbol, "order_qty": number(order.qty),
        "cum_qty": number(order.filled), "cum_cost": number(order.cost),
        "time_in_force": order.time_in_force.value, "exec_type": exec_type,
        "side": order.side.value, "order_type": order.type.value,
        "limit_price_type": "static", "stop_price": 0.0,
        "order_status": "pending_new" if exec_type == "pending_new" else _status(order),
        "fee_usd_equiv": number(order.fee), "fee_ccy_pref": "fciq",
        "timestamp": rfc3339(at_ms),
    }
    if order.price is not None:
        entry["limit_price"] = number(order.price)
    if tags.cl_ord_id is not None:
        entry["cl_ord_id"] = tags.cl_ord_id
    return entry


def executions(update: OrderUpdate) -> list[dict[str, Any]]:
    """The `executions` updates one order event makes (one message each)."""
    order, at = update.order, update.at_ms
    txid = rest.order_txid(order.id)
    if update.kind is ExecKind.NEW:
        return [order_entry(order, "pending_new", at),
                {"order_id": txid, "symbol": order.symbol, "exec_type": "new",
                 "order_status": "new", "order_userref": tags_of(order).userref or 0,
                 "timestamp": rfc3339(at)}]
    closing = {"order_id": txid, "symbol": order.symbol, "order_status": _status(order),
               "order_userref": tags_of(order).userref or 0, "cum_qty": number(order.filled),
               "cum_cost": number(order.cost),
               "avg_price": number(order.average or _ZERO), "fee_usd_equiv": number(order.fee),
               "timestamp": rfc3339(at)}
    if update.kind is ExecKind.TRADE and update.fill is not None:
        fill = update.fill
        trade = {
            "order_id": txid, "exec_id": rest.trade_txid(fill.trade_id), "exec_type": "trade",
            "trade_id": fill.trade_id, "symbol": order.symbol, "side": order.side.value,
            "last_qty": number(fill.qty), "last_price": number(fill.price),
            "liquidity_ind": "m" if fill.maker else "t", "cost": number(fill.quote_qty),
            "order_userref": tags_of(order).userref or 0, "order_status": _status(order),
            "order_type": order.type.value, "fee_usd_equiv": number(fill.fee),
            "fees": [{"asset": fill.fee_asset, "qty": number(fill.fee)}],
            "timestamp": rfc3339(fill.time_ms),
        }
        return [trade, {**closing, "exec_type": "filled"}]
    reason = {"cancel_reason": "User requested", "reason": "User requested"}
    if update.kind is ExecKind.EXPIRED:
        reason = {"reason": "Order expired"}
    return [{**closing, "exec_type": update.kind.value, **reason}]


def trade_snapshot(fill: Fill, order: Order) -> dict[str, Any]:
    """A past fill in the `snap_trades` snapshot."""
    return {
        "order_id": rest.order_txid(fill.order_id), "exec_id": rest.trade_txid(fill.trade_id),
        "exec_type": "trade", "trade_id": fill.trade_id, "symbol": fill.symbol,
        "side": fill.side.value, "last_qty": number(fill.qty),
        "last_price": number(fill.price), "liquidity_ind": "m" if fill.maker else "t",
        "cost": number(fill.quote_qty), "order_status": _status(order),
        "order_type": order.type.value, "fee_usd_equiv": number(fill.fee),
        "fees": [{"asset": fill.fee_asset, "qty": number(fill.fee)}],
        "timestamp": rfc3339(fill.time_ms),
    }
