"""Bybit v5 WebSocket message shapes: public topics and the private order, execution,
wallet and position topics.

The data items are the REST items (`ctsd.sim.bybit_wire`) wherever Bybit uses the
same shape on both (tickers, orders, the unified wallet), because ccxt parses the
stream with its REST parsers.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ctsd.sim import bybit_order_wire as rest_orders
from ctsd.sim import bybit_wire as rest
from ctsd.sim.accounts import Account, OrderType
from ctsd.sim.book import Level
from ctsd.sim.bybit_deriv import position_row, ticker_funding
from ctsd.sim.bybit_wallet import wallet_balance
from ctsd.sim.events import AccountUpdate, OrderUpdate
from ctsd.sim.market import Candle, Instrument, InstrumentKind, Market, TickerStats
from ctsd.sim.slots import symbol_slots
from ctsd.sim.state import Simulator
from ctsd.sim.tape import PublicTrade
from ctsd.sim.wire import dumps, plain

_ZERO = Decimal(0)


def category(inst: Instrument) -> str:
    return rest.SPOT if inst.kind is InstrumentKind.SPOT else rest.LINEAR


def ticker_data(inst: Instrument, stats: TickerStats, sim: Simulator) -> dict[str, Any]:
    """The ticker item as REST `/v5/market/tickers` answers it at the same instant."""
    if inst.kind is InstrumentKind.SPOT:
        return rest.spot_ticker(inst, stats)
    now = stats.close_ms
    hour_ago = sim.market.price(inst.symbol, at_ms=now - 3_600_000)
    rate, next_funding = ticker_funding(sim.funding, inst)
    data = rest.linear_ticker(inst, stats, hour_ago, next_funding, rate)
    data["tickDirection"] = "ZeroPlusTick"
    return data


def public(topic: str, kind: str, data: Any, ts: int, **extra: Any) -> str:
    return dumps({"topic": topic, "type": kind, "ts": ts, "data": data, **extra})


def kline(interval: str, candle: Candle, now_ms: int, closed: bool) -> dict[str, Any]:
    return {
        "start": candle.open_ms, "end": candle.close_ms, "interval": interval,
        "open": plain(candle.open), "close": plain(candle.close), "high": plain(candle.high),
        "low": plain(candle.low), "volume": plain(candle.volume),
        "turnover": plain(candle.quote_volume), "confirm": closed,
        "timestamp": now_ms,
    }


def public_trades(inst: Instrument, trades: list[PublicTrade]) -> list[dict[str, Any]]:
    spot = inst.kind is InstrumentKind.SPOT
    out = []
    for trade in trades:
        item: dict[str, Any] = {
            "T": trade.time_ms, "s": rest.market_id(inst), "S": "Buy" if trade.taker_buys
            else "Sell", "v": plain(trade.qty), "p": plain(trade.price),
            "L": "PlusTick" if trade.taker_buys else "MinusTick", "i": str(trade.id),
        }
        if not spot:
            item["BT"] = False
        item |= {"RPI": False, "seq": trade.id}
        out.append(item)
    return out


def book(inst: Instrument, bids: Sequence[Level], asks: Sequence[Level], update_id: int,
         sequence: int) -> dict[str, Any]:
    return {"s": rest.market_id(inst), "b": [[plain(lv.price), plain(lv.qty)] for lv in bids],
            "a": [[plain(lv.price), plain(lv.qty)] for lv in asks], "u": update_id,
            "seq": sequence}


def private(topic: str, data: list[dict[str, Any]], now_ms: int) -> str:
    return dumps({"id": f"{secrets.token_hex(12)}:{topic}", "topic": topic,
                  "creationTime": now_ms, "data": data})


def order(event: OrderUpdate, inst: Instrument) -> dict[str, Any]:
    quote_qty = event.order.quote_qty
    data = rest_orders.order(event.order, inst, "quoteCoin" if quote_qty else None, quote_qty)
    data["category"] = category(inst)
    data["feeCurrency"] = event.order.fee_asset if inst.kind is InstrumentKind.SPOT else ""
    return data


def execution(event: OrderUpdate, inst: Instrument) -> dict[str, Any] | None:
    fill = event.fill
    if fill is None:
        return None
    ord_ = event.order
    rate = ord_.fees.maker if fill.maker else ord_.fees.taker
    return {
        "category": category(inst), "symbol": rest.market_id(inst),
        "execFee": plain(fill.fee), "execId": str(fill.trade_id), "execPrice": plain(fill.price),
        "execQty": plain(fill.qty), "execType": "Trade", "execValue": plain(fill.quote_qty),
        "isMaker": fill.maker, "feeRate": plain(rate), "tradeIv": "", "markIv": "",
        "blockTradeId": "", "markPrice": plain(fill.price), "indexPrice": "",
        "underlyingPrice": "", "leavesQty": plain(ord_.remaining),
        "orderId": str(ord_.id), "orderLinkId": ord_.client_id,
        "orderPrice": plain(ord_.price or _ZERO), "orderQty": plain(ord_.qty),
        "orderType": "Market" if ord_.type is OrderType.MARKET else "Limit",
        "stopOrderType": "UNKNOWN", "side": ord_.side.value.capitalize(),
        "execTime": str(fill.time_ms), "isLeverage": "0", "closedSize": "",
        "seq": fill.trade_id, "feeCurrency": fill.fee_asset,
    }


def wallet(account: Account, market: Market) -> dict[str, Any]:
    """The whole UNIFIED wallet entry, as `/v5/account/wallet-balance` lists it."""
    entry: dict[str, Any] = wallet_balance(account, market, held_only=False)["list"][0]
    return entry


def positions(account: Account, market: Market, symbol: str) -> list[dict[str, Any]]:
    """The symbol's slots as `/v5/position/list` lists them, with the stream's names
    (`entryPrice` for REST's `avgPrice`, and the category)."""
    rows = []
    for slot in symbol_slots(account, market, market.catalog.instruments[symbol]):
        row = position_row(account, market, slot)
        row["entryPrice"] = row.pop("avgPrice")
        rows.append(row | {"category": rest.LINEAR})
    return rows


def account_messages(event: AccountUpdate, market: Market, topics: set[str]) -> list[str]:
    out = []
    if "wallet" in topics:
        out.append(private("wallet", [wallet(event.account, market)], event.at_ms))
    if "position" in topics and event.positions:
        out.append(private("position", [row for s in event.positions
                                        for row in positions(event.account, market, s)],
                           event.at_ms))
    return out
