"""OKX v5 WebSocket message shapes: pushes, subscription events, errors.

Data items are the REST items (`ctsd.sim.okx_wire`) where OKX uses one shape for
both (tickers, candles, orders, the trading account), because ccxt parses the
pushes with its REST parsers; an order push adds the execution fields
(`fillPx`, `fillSz`, `tradeId`, `fillFee`, `execType`) of the fill it reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ctsd.sim import derivatives
from ctsd.sim import okx_order_wire as rest_orders
from ctsd.sim import okx_wire as rest
from ctsd.sim.accounts import Account
from ctsd.sim.book import Level
from ctsd.sim.events import OrderUpdate
from ctsd.sim.market import Instrument, InstrumentKind, Market, TickerStats
from ctsd.sim.okx_deriv import position_row
from ctsd.sim.slots import closed_now
from ctsd.sim.tape import PublicTrade
from ctsd.sim.wire import dumps, plain
from ctsd.sim.ws.books import crc32_signed

_ZERO = Decimal(0)
DAY_MS = 86_400_000


def push(arg: dict[str, Any], data: list[Any], **extra: Any) -> str:
    return dumps({"arg": arg, **extra, "data": data})


def event(name: str, conn_id: str, arg: dict[str, Any] | None = None,
          request_id: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {}
    if request_id is not None:
        body["id"] = request_id
    body["event"] = name
    if arg is not None:
        body["arg"] = arg
    return dumps({**body, **extra, "connId": conn_id})


def error(code: str, msg: str, conn_id: str, request_id: str | None = None) -> str:
    return event("error", conn_id, request_id=request_id, code=code, msg=msg)


def ticker(inst: Instrument, stats: TickerStats, market: Market) -> dict[str, Any]:
    """The `market/ticker` item at the instant the statistics were taken."""
    now = stats.close_ms
    utc0 = now - now % DAY_MS
    utc8 = (now + 8 * 3_600_000) // DAY_MS * DAY_MS - 8 * 3_600_000
    return rest.ticker(inst, stats, market.price(inst.symbol, at_ms=utc0),
                       market.price(inst.symbol, at_ms=utc8))


def trades(inst: Instrument, tape: list[PublicTrade]) -> list[dict[str, Any]]:
    return [{"instId": rest.inst_id(inst), "tradeId": str(t.id), "px": plain(t.price),
             "sz": rest.size(inst, t.qty), "side": "buy" if t.taker_buys else "sell",
             "source": "0", "ts": str(t.time_ms), "count": "1", "seqId": t.id}
            for t in tape]


def levels(inst: Instrument, side: Sequence[Level]) -> list[list[str]]:
    """`[px, sz, "0", orders]` as OKX prints them (sz in contracts on swaps)."""
    return [[plain(lv.price), rest.size(inst, lv.qty), "0", "1"] for lv in side]


def checksum(bids: list[list[str]], asks: list[list[str]]) -> int:
    """CRC32 (signed) of the best 25 levels, `bid:size:ask:size:…` interleaved."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    return crc32_signed(":".join(parts))


def order(update: OrderUpdate, inst: Instrument, leverage: Decimal) -> dict[str, Any]:
    """An `orders` push item: the REST order, with the execution it reports (if any)."""
    o = update.order
    data = rest_orders.order(o, inst, rest_orders.tags_of(o, inst), leverage)
    fill = update.fill
    if fill is None:
        data |= {"fillPx": "", "fillSz": "0", "tradeId": "", "fillTime": "",
                 "fillFee": "0", "fillFeeCcy": "", "execType": ""}
    else:
        data |= {"fillPx": plain(fill.price), "fillSz": rest.size(inst, fill.qty),
                 "tradeId": str(fill.trade_id), "fillTime": str(fill.time_ms),
                 "fillFee": plain(-fill.fee), "fillFeeCcy": fill.fee_asset,
                 "execType": "M" if fill.maker else "T"}
    data |= {"amendResult": "", "code": "0", "msg": "", "reqId": "",
             "fillNotionalUsd": "", "notionalUsd": ""}
    return data


def positions(account: Account, market: Market, symbol: str | None = None,
              at_ms: int | None = None) -> list[dict[str, Any]]:
    """Open positions (of `symbol`) as `account/positions` lists them, and those a change
    at `at_ms` closed, with size 0, as OKX pushes a close."""
    found = derivatives.views(account, market, symbol)
    if symbol is not None and at_ms is not None:
        found += closed_now(account, market, symbol, at_ms)
    return [position_row(account, market, v) for v in found]


def is_swap(inst: Instrument) -> bool:
    return inst.kind is InstrumentKind.LINEAR
