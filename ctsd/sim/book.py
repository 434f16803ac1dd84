"""A deterministic order book around each pair's price path.

What the book is, at any moment (a pure function of path time and the pair's
scale, like everything else in the market):

- The top: the best bid is the last traded price (`Market.price`), the best ask
  one tick above it. Tickers report exactly these two (`TickerStats.bid/ask` and
  their sizes), and matching fills a market buy, or a buy limit at or above the
  ask, at the best ask, and a sell at the best bid (`ctsd.sim.matching`). The
  displayed sizes never limit a fill: the simulated touch is as deep as needed.
- Below the top, every tick is a potential level; a level is present or not, and
  sized, by a hash of its absolute price and a time bucket of its own (5 to 60 s),
  so most levels stay put from one second to the next and a move of the price
  shifts which of them are bids or asks. Sizes grow away from the touch.
- `sequence` (`Market.sequence`) is the book's update id: it grows every path
  second and on every admin `set_price`/`advance`/`reset`, never goes back, and two
  snapshots with one sequence are identical. WebSocket diffs are `diff(old, new)`
  between two snapshots, tagged with their sequences; checksums (OKX, Kraken) are
  computed over a snapshot's levels as the venue prints them.

Depth: a snapshot has up to `MAX_DEPTH` levels a side (Binance spot's 5,000); each
venue clamps to its own documented limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ctsd.sim.path import STEP_MS, mix64

if TYPE_CHECKING:
    from ctsd.sim.market import Instrument, Market

MAX_DEPTH = 5000
DENSITY = 0.75
"""Share of ticks below the top that carry a level at any moment."""
LEVEL_SECONDS_OF_VOLUME = 2.0
"""A level near the touch holds about two seconds of the pair's mean traded volume."""
_BOOK_STREAM = 0xB00C
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Level:
    price: Decimal
    qty: Decimal


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    """One side-by-side view of a pair's book, best levels first."""

    symbol: str
    sequence: int
    """The book's update id when taken (`Market.sequence`)."""
    time_ms: int
    """Server time when taken."""
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


def diff(old: BookSnapshot, new: BookSnapshot) -> tuple[list[Level], list[Level]]:
    """What changed from `old` to `new`, per side, as a venue's diff message carries it:
    levels of `new` that are new or resized, and levels of `old` gone from `new` with
    quantity 0. A level that merely fell below the depth of `new` (worse than its last
    level) is not reported as removed."""
    return _side_diff(old.bids, new.bids, bids=True), _side_diff(old.asks, new.asks, bids=False)


def _side_diff(old: tuple[Level, ...], new: tuple[Level, ...], *, bids: bool) -> list[Level]:
    before = {level.price: level.qty for level in old}
    after = {level.price: level.qty for level in new}
    changed = [level for level in new if before.get(level.price) != level.qty]
    if new:
        worst = new[-1].price
        gone = [Level(price, Decimal(0)) for price in before if price not in after
                and (price >= worst if bids else price <= worst)]
    else:
        gone = [Level(price, Decimal(0)) for price in before]
    return changed + gone


class OrderBooks:
    """Every pair's book, derived on demand; the last snapshot per depth is reused
    while the sequence stands still."""

    def __init__(self, market: Market) -> None:
        self._market = market
        self._last: dict[tuple[str, int], BookSnapshot] = {}

    def snapshot(self, inst: Instrument, depth: int) -> BookSnapshot:
        """The book now, `depth` levels a side (1..MAX_DEPTH)."""
        depth = max(1, min(depth, MAX_DEPTH))
        market = self._market
        sequence = market.sequence()
        cached = self._last.get((inst.symbol, depth))
        if cached is not None and cached.sequence == sequence:
            return cached
        top = market.price_ticks(inst)
        second = market.path_ms() // STEP_MS
        snap = BookSnapshot(
            symbol=inst.symbol, sequence=sequence, time_ms=market.now_ms(),
            bids=tuple(self._levels(inst, top, -1, depth, second)),
            asks=tuple(self._levels(inst, top + 1, 1, depth, second)))
        self._last[(inst.symbol, depth)] = snap
        return snap

    def top(self, inst: Instrument) -> tuple[Level, Level]:
        """Best bid and best ask now."""
        top = self._market.price_ticks(inst)
        second = self._market.path_ms() // STEP_MS
        bid = self._level(inst, top, 0, second, -1)
        ask = self._level(inst, top + 1, 0, second, 1)
        assert bid is not None and ask is not None
        return bid, ask

    def _levels(
        self, inst: Instrument, start: int, direction: int, depth: int, second: int,
    ) -> list[Level]:
        levels: list[Level] = []
        ticks, distance = start, 0
        while len(levels) < depth and ticks > 0:
            level = self._level(inst, ticks, distance, second, direction)
            if level is not None:
                levels.append(level)
            ticks += direction
            distance += 1
        return levels

    def _level(
        self, inst: Instrument, ticks: int, distance: int, second: int, side: int,
    ) -> Level | None:
        """The level at `ticks` (absolute) `distance` ticks from the touch, if present."""
        path = self._market.catalog.paths[inst.pair]
        h = mix64(path.stream ^ _BOOK_STREAM ^ (ticks * 0x9E3779B97F4A7C15 & _MASK64) ^ side)
        period = 5 + h % 56
        bucket = (second + (h >> 8) % period) // period
        r = mix64(h ^ (bucket * 0xD1B54A32D192ED03 & _MASK64))
        if distance and (r & 0xFFFF) >= DENSITY * 65536:
            return None
        mean = path.volume_per_s * LEVEL_SECONDS_OF_VOLUME * (1 + distance / 20)
        qty = mean * (0.2 + 1.6 * (r >> 16) / 2.0**48)
        steps = max(1, int(qty / float(inst.step_size)))
        return Level(Decimal(ticks) * inst.tick_size, Decimal(steps) * inst.step_size)
