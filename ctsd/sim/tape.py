"""The public trade tape: every pair's trades, read off the seeded price path.

Trade `k` of a pair happens at path time `k * TRADE_INTERVAL_MS` (`ctsd.sim.path`),
so its id is `k`: ids are contiguous, grow with time, and `advance` walks the tape
forward (the trades in between are passed, not skipped). A trade's price is the
path's price there on the instrument's tick, its quantity a seeded multiple of the
pair's mean volume, its aggressor side a seeded coin. Timestamps handed out are
server time (path time minus the admin `advance` offset).

Candles of an hour or shorter are built from this tape (`Market.candles`), so a
client that downloads trades and resamples them (Freqtrade on Kraken) gets the
very candles the kline endpoints serve. Groups of `SLOTS_PER_MINUTE` trades are
aggregated once and cached (keyed by the pair's scale, so `set_price` invalidates).

The simulator's own fills (`ctsd.sim.accounts.Fill`) are not printed on this tape:
an account trading does not move the simulated market.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from ctsd.sim.path import SLOTS_PER_MINUTE, first_slot_from, slot_at, slot_time

if TYPE_CHECKING:
    from ctsd.sim.market import Instrument, Market

GROUP_CACHE_MAX = 200_000
"""Cached trade groups (one path minute of one pair each, ~100 bytes): about 20 MB."""

_GroupKey = tuple[int, float, int, float, Decimal, Decimal]
_GROUPS: dict[_GroupKey, Bar] = {}
"""Shared by every simulator of the process: a group is a pure function of its path
(stream and base price fix every wave), its minute, the pair's scale and the
instrument's tick and step, so simulators with one seed (tests start many) scan each
minute once."""


@dataclass(frozen=True, slots=True)
class PublicTrade:
    """One trade of the public tape."""

    id: int
    time_ms: int
    """Server time (ms)."""
    price: Decimal
    qty: Decimal
    taker_buys: bool
    """The aggressor bought (Binance `m` = not this; Kraken "b"; Bybit/OKX side "Buy"/"buy")."""

    @property
    def buyer_is_maker(self) -> bool:
        return not self.taker_buys


@dataclass(frozen=True, slots=True)
class Bar:
    """An aggregate of consecutive trades in integer units of the instrument."""

    first: int
    last: int
    """Ids of the first and last trade."""
    open: int
    high: int
    low: int
    close: int
    """Prices in ticks."""
    volume: int
    """Base quantity in lot steps."""
    quote: int
    """Sum of ticks x steps: the quote volume in units of tick x step."""
    count: int

    def then(self, later: Bar) -> Bar:
        """This bar followed by `later`."""
        return Bar(self.first, later.last, self.open, max(self.high, later.high),
                   min(self.low, later.low), later.close, self.volume + later.volume,
                   self.quote + later.quote, self.count + later.count)


class Tape:
    """Trades, bars and price-crossing searches for every pair of one market."""

    def __init__(self, market: Market) -> None:
        self._market = market

    # --- ids and time ------------------------------------------------------------------

    def last_id(self, at_ms: int | None = None) -> int:
        """The id of the last trade at or before server time `at_ms` (default: now)."""
        return slot_at(self._market.path_ms(at_ms))

    def first_id_from(self, at_ms: int) -> int:
        """The id of the first trade at or after server time `at_ms`."""
        return first_slot_from(self._market.path_ms(at_ms))

    def time_of(self, trade_id: int) -> int:
        """Server time of a trade (ms)."""
        return slot_time(trade_id) - self._market.path_offset_ms

    # --- trades ------------------------------------------------------------------------

    def trade(self, inst: Instrument, k: int) -> PublicTrade:
        path = self._market.catalog.paths[inst.pair]
        return PublicTrade(
            id=k, time_ms=self.time_of(k),
            price=Decimal(self._market.trade_ticks(inst, k)) * inst.tick_size,
            qty=Decimal(self._qty_steps(inst, k)) * inst.step_size,
            taker_buys=path.trade_is_buy(k))

    def between(self, inst: Instrument, first_id: int, last_id: int) -> list[PublicTrade]:
        """Trades `first_id..last_id` (inclusive), oldest first, never past now."""
        last_id = min(last_id, self.last_id())
        return [self.trade(inst, k) for k in range(max(first_id, 0), last_id + 1)]

    def recent(self, inst: Instrument, limit: int) -> list[PublicTrade]:
        """The newest `limit` trades, oldest first."""
        last = self.last_id()
        return self.between(inst, last - limit + 1, last)

    def _qty_steps(self, inst: Instrument, k: int) -> int:
        qty = self._market.catalog.paths[inst.pair].trade_qty(k)
        return max(1, int(qty / float(inst.step_size)))

    # --- aggregates ----------------------------------------------------------------------

    def bar(self, inst: Instrument, first_id: int, last_id: int) -> Bar | None:
        """The aggregate of trades `first_id..last_id` (inclusive); None when empty."""
        result: Bar | None = None
        for part in self._parts(inst, first_id, last_id):
            result = part if result is None else result.then(part)
        return result

    def _parts(self, inst: Instrument, first_id: int, last_id: int) -> Iterator[Bar]:
        """Whole cached groups where the range covers them, scanned trades elsewhere."""
        k = first_id
        while k <= last_id:
            group = k // SLOTS_PER_MINUTE
            group_end = group * SLOTS_PER_MINUTE + SLOTS_PER_MINUTE - 1
            if k == group * SLOTS_PER_MINUTE and group_end <= last_id:
                yield self._group(inst, group)
            else:
                yield self._scan(inst, k, min(group_end, last_id))
            k = group_end + 1

    def _group(self, inst: Instrument, group: int) -> Bar:
        path = self._market.catalog.paths[inst.pair]
        key = (path.stream, path.log_base, group, self._market.scale_of(inst.pair),
               inst.tick_size, inst.step_size)
        cached = _GROUPS.get(key)
        if cached is None:
            if len(_GROUPS) >= GROUP_CACHE_MAX:
                for old in list(_GROUPS)[: GROUP_CACHE_MAX // 2]:
                    del _GROUPS[old]
            first = group * SLOTS_PER_MINUTE
            cached = _GROUPS[key] = self._scan(inst, first, first + SLOTS_PER_MINUTE - 1)
        return cached

    def _scan(self, inst: Instrument, first_id: int, last_id: int) -> Bar:
        per_tick = self._market.scale_of(inst.pair) / float(inst.tick_size)
        step = float(inst.step_size)
        ticks, steps = [], []
        for raw, qty in self._market.catalog.paths[inst.pair].trades(first_id, last_id):
            ticks.append(max(round(raw * per_tick), 1))
            steps.append(max(1, int(qty / step)))
        return Bar(first_id, last_id, ticks[0], max(ticks), min(ticks), ticks[-1], sum(steps),
                   sum(t * s for t, s in zip(ticks, steps, strict=True)), len(ticks))

    def first_through(
        self, inst: Instrument, after_id: int, last_id: int, *,
        at_or_below: int | None = None, at_or_above: int | None = None,
    ) -> PublicTrade | None:
        """The first trade in `after_id+1..last_id` priced at or below / at or above a
        level in ticks (either bound; both: whichever comes first), or None.

        What resting limits, stops and take-profits are matched against: every trade
        since the account was last looked at, not just the price now.
        """
        def crosses(low: int, high: int) -> bool:
            return (at_or_below is not None and low <= at_or_below) or (
                at_or_above is not None and high >= at_or_above)

        for part in self._parts(inst, after_id + 1, last_id):
            if not crosses(part.low, part.high):
                continue
            for k in range(part.first, part.last + 1):
                ticks = self._market.trade_ticks(inst, k)
                if crosses(ticks, ticks):
                    return self.trade(inst, k)
        return None
