"""The public feeds every venue has, with the venue's rendering passed in.

A ticker feed pushes when the 24 h statistics moved; a candle feed pushes the
candle in progress when it changed, and the finished candle the moment a new one
opens. What differs between venues is the message, so each feed takes a render
function; what is the same (when to push, what "changed" means, the sampler that
makes one computation serve every venue) is here once.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from ctsd.sim.market import Candle, Instrument, TickerStats, Timeframe
from ctsd.sim.ws.protocol import Topic
from ctsd.sim.ws.sampler import Sampler

TickerRender = Callable[[TickerStats], list[str]]
CandleRender = Callable[[Candle, int, bool], str]
"""(candle, now_ms, closed) → message."""


class TickerFeed(Topic):
    """Pushes `render(stats)` each period the statistics changed; `snapshot` on subscribe."""

    def __init__(
        self, key: Hashable, interval_ms: int, inst: Instrument, render: TickerRender,
        snapshot: TickerRender | None = None,
    ) -> None:
        super().__init__(key, interval_ms)
        self.inst = inst
        self._render = render
        self._snapshot = snapshot
        self._last: tuple[object, ...] = ()

    @staticmethod
    def _state(stats: TickerStats) -> tuple[object, ...]:
        return (stats.last, stats.bid, stats.ask, stats.open, stats.high, stats.low,
                stats.volume)

    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        stats = sampler.ticker(self.inst.symbol)
        state = self._state(stats)
        if state == self._last:
            return []
        self._last = state
        return self._render(stats)

    def snapshot(self, now_ms: int, sampler: Sampler) -> list[str]:
        if self._snapshot is None:  # the first poll pushes the statistics
            return []
        stats = sampler.ticker(self.inst.symbol)
        if not self._last:  # the first subscriber: its snapshot is the feed's start
            self._last = self._state(stats)
        return self._snapshot(stats)


class CandleFeed(Topic):
    """The candle in progress when it changed; the closed one as soon as the next opens."""

    def __init__(
        self, key: Hashable, interval_ms: int, inst: Instrument, timeframe: Timeframe,
        render: CandleRender, snapshot: bool = False,
    ) -> None:
        super().__init__(key, interval_ms)
        self.inst, self.timeframe = inst, timeframe
        self._render = render
        self._snapshot = snapshot
        self._open_ms: int | None = None
        self._last: tuple[object, ...] = ()

    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        candle = sampler.candle(self.inst.symbol, self.timeframe)
        out = []
        if self._open_ms is not None and candle.open_ms > self._open_ms:
            closed = sampler.closed_candle(self.inst.symbol, self.timeframe, self._open_ms)
            out.append(self._render(closed, now_ms, True))
        state = (candle.open_ms, candle.close, candle.high, candle.low, candle.volume)
        if state != self._last:
            out.append(self._render(candle, now_ms, False))
        self._open_ms, self._last = candle.open_ms, state
        self.due_ms = min(self.due_ms, candle.close_ms + 1)
        return out

    def snapshot(self, now_ms: int, sampler: Sampler) -> list[str]:
        if not self._snapshot:  # the first poll pushes the candle in progress
            return []
        candle = sampler.candle(self.inst.symbol, self.timeframe)
        if self._open_ms is None:  # the first subscriber: its candle is the feed's start
            self._open_ms = candle.open_ms
            self._last = (candle.open_ms, candle.close, candle.high, candle.low, candle.volume)
        return [self._render(candle, now_ms, False)]
