"""Kraken public market data: `Depth` and `Trades`.

- `Depth`: `count` 1..500 (default 100); levels `[price, volume, timestamp (s)]`.
- `Trades`: `count` 1..1000 (default 1000), oldest first, each `[price, volume, time
  (s, fractional), "b"/"s", "m"/"l", misc, trade_id]`; `since` in nanoseconds (as
  `last` is given back) returns the trades strictly after it, in seconds those from
  that second on; and
  `last` is the nanosecond time of the last trade returned, to pass as the next
  `since`. It is the only way Freqtrade can download Kraken history (its OHLC keeps
  720 candles), so the trades resample exactly into the simulator's candles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctsd.sim import kraken_wire as render
from ctsd.sim.book import Level
from ctsd.sim.wire import fixed

if TYPE_CHECKING:
    from ctsd.sim.kraken import Call, KrakenSim

DEPTH_DEFAULT, DEPTH_MAX = 100, 500
TRADES_MAX = 1000
_NS_SINCE = 10**15
"""A `since` above this is nanoseconds (Kraken's `last`), else seconds."""


class KrakenMarketData:
    def __init__(self, state: KrakenSim) -> None:
        self.state = state

    def _count(self, call: Call, default: int, high: int) -> int:
        count = call.integer("count")
        if count is None:
            return default
        if count < 1:
            raise render.error(f"{render.INVALID_ARGUMENTS}:count")
        return min(count, high)

    async def depth(self, call: Call) -> Any:
        pair = self.state.pair(call.require("pair"))
        book = self.state.sim.market.books.snapshot(
            pair.inst, self._count(call, DEPTH_DEFAULT, DEPTH_MAX))
        stamp = book.time_ms // 1000

        def side(levels: tuple[Level, ...]) -> list[list[Any]]:
            return [[pair.price(level.price), fixed(level.qty, render.VOLUME_DECIMALS), stamp]
                    for level in levels]

        return {pair.key: {"asks": side(book.asks), "bids": side(book.bids)}}

    async def trades(self, call: Call) -> Any:
        pair = self.state.pair(call.require("pair"))
        count = self._count(call, TRADES_MAX, TRADES_MAX)
        tape = self.state.sim.market.tape
        since = call.integer("since")
        if since is None:
            chosen = tape.recent(pair.inst, count)
        else:
            # nanoseconds: strictly after (no overlap with the page before); seconds:
            # from the start of that second
            first = tape.first_id_from(since // 1_000_000 + 1 if since > _NS_SINCE
                                       else since * 1000)
            chosen = tape.between(pair.inst, first, first + count - 1)
        rows = [[pair.price(t.price), fixed(t.qty, render.VOLUME_DECIMALS),
                 round(t.time_ms / 1000, 4), "b" if t.taker_buys else "s", "m", "", t.id]
                for t in chosen]
        last = chosen[-1].time_ms * 1_000_000 if chosen else (since or 0)
        return {pair.key: rows, "last": str(last)}
