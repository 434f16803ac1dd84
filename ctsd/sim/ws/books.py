"""Order-book and public-trade feeds, on `Market.books` and `Market.tape`.

A book feed keeps the snapshot it last pushed; when the book's sequence moves
(`Market.sequence`, every path second and on admin moves) it takes a new snapshot at
its depth and pushes `book.diff(old, new)`. Venues differ in what a diff carries —
Binance `U`/`u`/`pu` ranges of update ids that line up with the REST snapshot's
`lastUpdateId`, Bybit an update counter, OKX `seqId`/`prevSeqId` and a checksum,
Kraken a checksum — so the rendering is the venue's (`BookRender`), the bookkeeping
is here. A new subscriber of a venue that pushes snapshots gets the feed's current
state, so the diffs that follow apply to what it holds.

A trade feed pushes the tape's trades since the last push; the tape has one trade
per pair every 5 s of path time, with ids shared by the REST trade endpoints.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Hashable
from decimal import Decimal

from ctsd.sim.book import BookSnapshot, Level, diff
from ctsd.sim.market import Instrument
from ctsd.sim.tape import PublicTrade
from ctsd.sim.ws.protocol import Topic
from ctsd.sim.ws.sampler import Sampler


class BookRender:
    """A venue's book messages; subclasses keep the venue's own sequence numbers."""

    reports_depth_exits: bool = False
    """Whether a level pushed below the subscribed depth is sent with quantity 0 (Bybit,
    OKX keep exactly their depth) or left to the client to truncate (Kraken)."""

    def snapshot(self, snap: BookSnapshot) -> list[str]:
        """What a new subscriber gets (nothing, for venues that sync over REST)."""
        return []

    def update(self, old: BookSnapshot, new: BookSnapshot, bids: list[Level],
               asks: list[Level]) -> list[str]:
        raise NotImplementedError


class BookFeed(Topic):
    book = True

    def __init__(self, key: Hashable, interval_ms: int, inst: Instrument, depth: int,
                 render: BookRender) -> None:
        super().__init__(key, interval_ms)
        self.inst, self.depth, self.render = inst, depth, render
        self.last: BookSnapshot | None = None

    def _current(self, sampler: Sampler) -> BookSnapshot:
        return sampler.market.books.snapshot(self.inst, self.depth)

    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        """The diff since the last push; an unchanged book pushes nothing (and the next
        diff then spans the sequences in between)."""
        old = self.last
        if old is not None and sampler.market.sequence() == old.sequence:
            return []
        new = self._current(sampler)
        if old is None:
            self.last = new
            return []
        bids, asks = diff(old, new)
        if self.render.reports_depth_exits:
            bids += _exits(old.bids, new.bids, bids)
            asks += _exits(old.asks, new.asks, asks)
        if not bids and not asks:
            return []
        self.last = new
        return self.render.update(old, new, bids, asks)

    def snapshot(self, now_ms: int, sampler: Sampler) -> list[str]:
        if self.last is None:
            self.last = self._current(sampler)
        return self.render.snapshot(self.last)


def _exits(old: tuple[Level, ...], new: tuple[Level, ...], reported: list[Level]) -> list[Level]:
    """Levels of `old` absent from `new` that `diff` left out (they fell below the depth)."""
    kept = {lv.price for lv in new} | {lv.price for lv in reported}
    return [Level(lv.price, Decimal(0)) for lv in old if lv.price not in kept]


TradeRender = Callable[[list[PublicTrade]], list[str]]


class TradeFeed(Topic):
    """Public trades since the last push; `snapshot_size` recent ones to a new subscriber."""

    def __init__(self, key: Hashable, interval_ms: int, inst: Instrument, render: TradeRender,
                 snapshot: TradeRender | None = None, snapshot_size: int = 0) -> None:
        super().__init__(key, interval_ms)
        self.inst, self._render = inst, render
        self._snapshot, self._size = snapshot, snapshot_size
        self._sent: int | None = None

    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        tape = sampler.market.tape
        last = tape.last_id()
        if self._sent is None:
            self._sent = last
            return []
        if last <= self._sent:
            return []
        trades = tape.between(self.inst, self._sent + 1, last)
        self._sent = last
        return self._render(trades) if trades else []

    def snapshot(self, now_ms: int, sampler: Sampler) -> list[str]:
        if self._sent is None:
            self._sent = sampler.market.tape.last_id()
        if self._snapshot is None or not self._size:
            return []
        trades = sampler.market.tape.between(self.inst, self._sent - self._size + 1, self._sent)
        return self._snapshot(trades)


def crc32_signed(text: str) -> int:
    """OKX's checksum: CRC32 of the string as a signed 32-bit integer."""
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def crc32_unsigned(text: str) -> int:
    """Kraken's checksum: CRC32 of the string, unsigned."""
    return zlib.crc32(text.encode())

