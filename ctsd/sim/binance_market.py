"""Binance market data beyond tickers and klines: order books, public trades, book tickers.

Spot (`/api/v3`) prints numbers with 8 decimals, USDⓈ-M futures (`/fapi/v1`) plainly,
as everywhere on Binance. The book is `ctsd.sim.book` (`lastUpdateId` is its
sequence), trades are `ctsd.sim.tape` (one trade per aggregate: `a` = `f` = `l`).
Limits, weights and parameter rules are Binance's documented ones:

- `depth`: spot `limit` 1..5000 (default 100, larger truncated to 5000), weight 5/25/
  50/250 by size; futures `limit` one of 5, 10, 20, 50, 100, 500, 1000 (default 500),
  weight 2/5/10/20.
- `trades` (recent) and `historicalTrades` (`fromId`): `limit` default 500, max 1000.
- `aggTrades`: `fromId`, or `startTime`/`endTime` (both: at most an hour apart),
  `limit` default 500, max 1000; with neither, the most recent trades.
- `ticker/bookTicker`: one `symbol`, a `symbols` JSON list (spot), or every symbol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ctsd.sim import binance_wire as render
from ctsd.sim.book import Level
from ctsd.sim.tape import PublicTrade
from ctsd.sim.wire import fixed, plain

if TYPE_CHECKING:
    from ctsd.sim.binance import BinanceSim
    from ctsd.sim.binance_api import Call
    from ctsd.sim.market import Instrument

SPOT_DEPTH_MAX = 5000
FUTURES_DEPTHS = (5, 10, 20, 50, 100, 500, 1000)
TRADES_MAX = 1000
AGG_WINDOW_MS = 3_600_000


def spot_depth_weight(params: Mapping[str, str]) -> int:
    limit = _int_or(params.get("limit"), 100)
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def futures_depth_weight(params: Mapping[str, str]) -> int:
    limit = _int_or(params.get("limit"), 500)
    return 2 if limit < 100 else 5 if limit == 100 else 10 if limit == 500 else 20


def _int_or(raw: str | None, default: int) -> int:
    return int(raw) if raw and raw.lstrip("-").isdigit() else default


class BinanceMarketData:
    """The handlers; `state` gives the instrument maps and the simulator."""

    def __init__(self, state: BinanceSim) -> None:
        self.state = state

    def _number(self, call: Call) -> Callable[[Any], str]:
        return plain if call.futures else fixed

    def _limit(self, call: Call, name: str, default: int, high: int) -> int:
        raw = call.params.get(name)
        if raw is None or raw == "":
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise render.error(400, -1100, f"Illegal characters found in parameter '{name}'; "
                                           "legal range is '^[0-9]{1,20}$'.")
        return min(int(raw), high)

    async def depth(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        if call.futures:
            limit = self._limit(call, "limit", 500, 1000)
            if limit not in FUTURES_DEPTHS:
                raise render.error(400, -4021, "Invalid depth limit.")
        else:
            limit = self._limit(call, "limit", 100, SPOT_DEPTH_MAX)
        book = self.state.sim.market.books.snapshot(inst, limit)
        num = self._number(call)

        def side(levels: tuple[Level, ...]) -> list[list[str]]:
            return [[num(level.price), num(level.qty)] for level in levels]

        out: dict[str, Any] = {"lastUpdateId": book.sequence}
        if call.futures:
            out |= {"E": book.time_ms, "T": book.time_ms}
        return out | {"bids": side(book.bids), "asks": side(book.asks)}

    async def recent_trades(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        limit = self._limit(call, "limit", 500, TRADES_MAX)
        return [self._trade(call, t) for t in self.state.sim.market.tape.recent(inst, limit)]

    async def historical_trades(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        limit = self._limit(call, "limit", 500, TRADES_MAX)
        tape = self.state.sim.market.tape
        raw = call.params.get("fromId")
        if not raw:
            return [self._trade(call, t) for t in tape.recent(inst, limit)]
        first = _int_or(raw, 0)
        return [self._trade(call, t) for t in tape.between(inst, first, first + limit - 1)]

    def _trade(self, call: Call, t: PublicTrade) -> dict[str, Any]:
        num = self._number(call)
        out: dict[str, Any] = {"id": t.id, "price": num(t.price), "qty": num(t.qty),
                               "quoteQty": num(t.price * t.qty), "time": t.time_ms,
                               "isBuyerMaker": t.buyer_is_maker}
        if not call.futures:
            out["isBestMatch"] = True
        return out

    async def agg_trades(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        limit = self._limit(call, "limit", 500, TRADES_MAX)
        tape = self.state.sim.market.tape
        start, end = call.params.get("startTime"), call.params.get("endTime")
        from_id = call.params.get("fromId")
        if from_id:
            first = _int_or(from_id, 0)
            last = first + limit - 1
        elif start or end:
            if start and end and not 0 <= int(end) - int(start) <= AGG_WINDOW_MS:
                raise render.error(400, -1127, "More than 1 hours between startTime and "
                                               "endTime.")
            last = tape.last_id(int(end)) if end else tape.last_id()
            first = tape.first_id_from(int(start)) if start else last - limit + 1
            last = min(last, first + limit - 1)
        else:
            last = tape.last_id()
            first = last - limit + 1
        return [self._agg(call, t) for t in tape.between(inst, first, last)]

    def _agg(self, call: Call, t: PublicTrade) -> dict[str, Any]:
        num = self._number(call)
        out: dict[str, Any] = {"a": t.id, "p": num(t.price), "q": num(t.qty), "f": t.id,
                               "l": t.id, "T": t.time_ms, "m": t.buyer_is_maker}
        if not call.futures:
            out["M"] = True
        return out

    async def book_ticker(self, call: Call) -> Any:
        if call.params.get("symbol"):
            return self._book_ticker(call, self.state.instrument(call, call.params["symbol"]))
        listed = self.state.symbols[call.surface]
        if call.params.get("symbols") and not call.futures:
            try:
                names = json.loads(call.params["symbols"])
            except ValueError as exc:
                raise render.error(400, -1100, "Illegal characters found in parameter "
                                               "'symbols'.") from exc
            return [self._book_ticker(call, self.state.instrument(call, str(n))) for n in names]
        return [self._book_ticker(call, inst) for inst in listed.values()]

    def _book_ticker(self, call: Call, inst: Instrument) -> dict[str, Any]:
        market = self.state.sim.market
        bid, ask = market.books.top(inst)
        num = self._number(call)
        out: dict[str, Any] = {"symbol": render.market_id(inst), "bidPrice": num(bid.price),
                               "bidQty": num(bid.qty), "askPrice": num(ask.price),
                               "askQty": num(ask.qty)}
        if call.futures:
            out["time"] = market.now_ms()
        return out
