"""Bybit v5 market data: order book, recent public trades, and klines with Bybit's window.

- `/v5/market/orderbook`: `limit` spot 1..200 (default 1), linear 1..500 (default 25),
  clamped; `u` and `seq` are the book's sequence (`ctsd.sim.book`).
- `/v5/market/recent-trade`: `limit` spot 1..60 (default 60), linear 1..1000 (default
  500), newest first; `execId` is the tape's trade id.
- `/v5/market/kline`: newest first, `limit` 1..1000 (default 200). Bybit's window
  differs from Binance's: `start` includes the candle that *contains* it (ccxt rounds
  `since` up for that reason), and given `start` alone the answer is the `limit`
  candles from `start` onward; given `end` (with or without `start`), the newest
  `limit` candles that open at or before `end` (and at or after `start`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctsd.sim import bybit_wire as render
from ctsd.sim.book import Level
from ctsd.sim.bybit_wire import LINEAR, SPOT
from ctsd.sim.market import TIMEFRAMES, Candle
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.bybit import BybitSim
    from ctsd.sim.bybit_wire import Call

BOOK_LIMITS = {SPOT: (1, 200), LINEAR: (25, 500)}
"""category → (default, maximum) depth."""
TRADE_LIMITS = {SPOT: (60, 60), LINEAR: (500, 1000)}
KLINE_DEFAULT, KLINE_MAX = 200, 1000


class BybitMarketData:
    def __init__(self, state: BybitSim) -> None:
        self.state = state

    def _category(self, call: Call) -> str:
        category = call.require("category")
        if category not in (SPOT, LINEAR):
            raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)
        return category

    async def orderbook(self, call: Call) -> Any:
        category = self._category(call)
        inst = self.state.listed(category, call.require("symbol"), call.now_ms)
        default, high = BOOK_LIMITS[category]
        book = self.state.sim.market.books.snapshot(
            inst, call.integer("limit", default, 1, high))

        def side(levels: tuple[Level, ...]) -> list[list[str]]:
            return [[plain(level.price), plain(level.qty)] for level in levels]

        return {"s": render.market_id(inst), "b": side(book.bids), "a": side(book.asks),
                "ts": book.time_ms, "u": book.sequence, "seq": book.sequence,
                "cts": book.time_ms}

    async def recent_trades(self, call: Call) -> Any:
        category = self._category(call)
        inst = self.state.listed(category, call.require("symbol"), call.now_ms)
        default, high = TRADE_LIMITS[category]
        trades = self.state.sim.market.tape.recent(inst, call.integer("limit", default, 1, high))
        return {"category": category, "list": [{
            "execId": str(t.id), "symbol": render.market_id(inst), "price": plain(t.price),
            "size": plain(t.qty), "side": "Buy" if t.taker_buys else "Sell",
            "time": str(t.time_ms), "isBlockTrade": False, "isRPITrade": False, "seq": str(t.id),
        } for t in reversed(trades)]}

    async def kline(self, call: Call) -> Any:
        category = call.text("category") or LINEAR  # Bybit's default
        inst = self.state.listed(category, call.require("symbol"), call.now_ms)
        interval = self.state.interval(call.require("interval"))
        if interval is None:
            raise render.error(10001, "Invalid period!", call.now_ms)
        timeframe = TIMEFRAMES[interval]
        limit = call.integer("limit", KLINE_DEFAULT, 1, KLINE_MAX)
        start, end = (call.integer(name, 0, 0, 2**62) for name in ("start", "end"))
        market = self.state.sim.market
        candles: list[Candle]
        if start and not end:
            candles = market.candles(inst.symbol, timeframe, start_ms=timeframe.floor(start),
                                     limit=limit)
        else:
            candles = market.candles(inst.symbol, timeframe, end_ms=end or None, limit=limit)
            if start:
                candles = [c for c in candles if c.open_ms >= timeframe.floor(start)]
        return {"symbol": render.market_id(inst), "category": category,
                "list": [render.kline(c) for c in reversed(candles)]}
