"""OKX v5 market data: order books, public trades, every ticker of a type.

- `market/books`: `sz` 1..400 (default 1); `market/books-full`: 1..5000. Each level
  is `[px, sz, "0", orders]`, sizes in contracts on swaps, like every OKX size.
- `market/trades`: `limit` 1..500 (default 100), newest first, `tradeId` the tape's.
- `market/tickers`: every instrument of `instType` (SPOT, SWAP; the other valid types
  list nothing).

Each table row is `(method, path, permission, handler, RateRule, scope)`; `okx.py`
turns it into an endpoint with OKX's limit for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctsd.sim import okx_wire as render
from ctsd.sim.book import Level
from ctsd.sim.ratelimit import RateRule
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.market import Instrument
    from ctsd.sim.okx import Call, OkxSim

BOOKS_MAX, BOOKS_FULL_MAX = 400, 5000
TRADES_DEFAULT, TRADES_MAX = 100, 500


class OkxMarketData:
    def __init__(self, state: OkxSim) -> None:
        self.state = state

    def rows(self) -> list[tuple[Any, ...]]:
        return [
            ("GET", "market/books", None, self.books, RateRule(40, 2), "IP"),
            ("GET", "market/books-full", None, self.books_full, RateRule(10, 2), "IP"),
            ("GET", "market/trades", None, self.trades, RateRule(100, 2), "IP"),
            ("GET", "market/tickers", None, self.tickers, RateRule(20, 2), "IP"),
        ]

    def _size(self, call: Call, name: str, default: int, high: int) -> int:
        raw = call.params.get(name)
        if not raw:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= high:
            raise render.bad_param(name)
        return int(raw)

    async def books(self, call: Call) -> Any:
        return self._book(call, BOOKS_MAX)

    async def books_full(self, call: Call) -> Any:
        return self._book(call, BOOKS_FULL_MAX)

    def _book(self, call: Call, high: int) -> Any:
        inst = self.state.instrument(call.require("instId"))
        book = self.state.sim.market.books.snapshot(inst, self._size(call, "sz", 1, high))

        def side(levels: tuple[Level, ...]) -> list[list[str]]:
            return [[plain(level.price), render.size(inst, level.qty), "0", "1"]
                    for level in levels]

        return render.ok([{"asks": side(book.asks), "bids": side(book.bids),
                           "ts": str(book.time_ms), "seqId": book.sequence}])

    async def trades(self, call: Call) -> Any:
        inst = self.state.instrument(call.require("instId"))
        limit = self._size(call, "limit", TRADES_DEFAULT, TRADES_MAX)
        trades = self.state.sim.market.tape.recent(inst, limit)
        return render.ok([{
            "instId": render.inst_id(inst), "side": "buy" if t.taker_buys else "sell",
            "sz": render.size(inst, t.qty), "px": plain(t.price), "source": "0",
            "tradeId": str(t.id), "ts": str(t.time_ms),
        } for t in reversed(trades)])

    async def tickers(self, call: Call) -> Any:
        inst_type = call.require("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise render.bad_param("instType")
        if inst_type == "OPTION":
            return self.state.option.tickers(call)
        listed: list[Instrument] = [i for i in self.state.by_id.values()
                                    if render.inst_type(i) == inst_type]
        return render.ok([self.state.ticker_of(i) for i in listed])
