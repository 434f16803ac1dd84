"""Funding rates and their settlement, at 00:00, 08:00 and 16:00 UTC of the market clock.

Which clock: funding belongs to the price path, so it runs on the path's time,
`market time = server clock + advance offset` (`Market.path_now_ms`). Without
`advance` the two are equal and funding happens at 00/08/16 UTC of the server
clock, as on the venues. `advance(s)` jumps the path ahead, and every funding time
the jump crosses is settled at once (at the mark price of that funding time on
the path). Funding time `k` is `k * FUNDING_INTERVAL_MS` of market time.

What clients see is always server-clock time (`FundingSchedule.stamp`): a funding
time reached by the clock is stamped when the clock passed it (`F - offset`); one
crossed by an `advance` is stamped with the server time of that `advance`, so a
ledger never shows funding before the fill that opened the position, and stamps
never go backwards. `nextFundingTime` is `F_next - offset`: how long until the
next funding, on the server clock.

Exactly once: every position remembers the last funding index that no longer
applies to it (`Position.funded_index`, the index current when it opened) and
`settle` pays each later index once, however many requests or advances follow;
positions only change when their account is touched, and `Simulator.touch` settles
funding before it fills resting orders, so each funding time sees the position
as it stood then. Rates are seeded per pair and funding time (mostly positive,
around Binance's 0.01 % default) unless the admin API sets one
(`Simulator.set_funding_rate`, `POST /admin/funding-rate`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from decimal import Decimal

from ctsd.sim.accounts import Account
from ctsd.sim.events import UpdateReason, publish_account
from ctsd.sim.market import Market
from ctsd.sim.positions import LedgerEntry, LedgerKind, MarginMode, Position

FUNDING_INTERVAL_MS = 8 * 3_600_000
FUNDING_INTERVAL_HOURS = 8
RATE_STEP = Decimal("0.000001")
AMOUNT_STEP = Decimal("0.00000001")
_ZERO = Decimal(0)


def funding_index(market: Market) -> int:
    """The index of the latest funding time at or before market time now."""
    return market.path_now_ms() // FUNDING_INTERVAL_MS


class FundingSchedule:
    """Funding times, their server-clock stamps and the rate of each (pair, time)."""

    def __init__(self, market: Market, seed: int) -> None:
        self.market = market
        self._seed = seed
        self._overrides: dict[tuple[str, int], Decimal] = {}
        self.reset()

    def reset(self) -> None:
        self._stamps: dict[int, int] = {}
        self._start = funding_index(self.market)
        """Funding times up to here predate the simulator (offset 0): stamped at F."""
        self._observed = self._start
        self._overrides.clear()

    # --- time ---------------------------------------------------------------------

    def observe(self) -> int:
        """Stamp the funding times the server clock passed; returns the current index."""
        now_index = funding_index(self.market)
        offset = self.market.offset_ms
        for k in range(self._observed + 1, now_index + 1):
            self._stamps[k] = k * FUNDING_INTERVAL_MS - offset
        self._observed = max(self._observed, now_index)
        return now_index

    def observe_jump(self) -> None:
        """After an `advance`: the funding times it crossed happened now."""
        now_index = funding_index(self.market)
        now = self.market.now_ms()
        for k in range(self._observed + 1, now_index + 1):
            self._stamps[k] = now
        self._observed = max(self._observed, now_index)

    def stamp(self, k: int) -> int:
        """Server-clock time of funding time `k` (a future one: when it is due)."""
        if k in self._stamps:
            return self._stamps[k]
        if k <= self._start:
            return k * FUNDING_INTERVAL_MS
        return k * FUNDING_INTERVAL_MS - self.market.offset_ms

    def next_index(self) -> int:
        return self.observe() + 1

    def next_time_ms(self) -> int:
        return self.stamp(self.next_index())

    def indexes(self, start_ms: int | None, end_ms: int | None, limit: int,
                newest_first: bool) -> list[int]:
        """Past funding times stamped in [start, end], `limit` of them (oldest from
        `start` if given and not `newest_first`, else the newest)."""
        last = self.observe()
        if end_ms is not None:
            if end_ms < self.stamp(self._start):
                last = min(last, max(end_ms // FUNDING_INTERVAL_MS, 0))
            while last > 0 and self.stamp(last) > end_ms:
                last -= 1
        if start_ms is not None and not newest_first:
            first = self._first_at_or_after(start_ms)
            return list(range(first, min(first + limit, last + 1)))
        found = []
        for k in range(last, max(last - limit, -1), -1):
            if start_ms is not None and self.stamp(k) < start_ms:
                break
            found.append(k)
        return found if newest_first else found[::-1]

    def _first_at_or_after(self, ms: int) -> int:
        k = max(-(-ms // FUNDING_INTERVAL_MS), 0)
        if k <= self._start:
            return k
        k = self._start + 1
        while k <= self._observed and self.stamp(k) < ms:
            k += 1
        return k

    # --- rates ---------------------------------------------------------------------

    def rate(self, pair: str, k: int) -> Decimal:
        """The rate paid at funding time `k`: seeded, or as the admin set it."""
        override = self._overrides.get((pair, k))
        if override is not None:
            return override
        digest = hashlib.blake2b(f"{self._seed}:funding:{pair}:{k}".encode(),
                                 digest_size=8).digest()
        unit = Decimal(int.from_bytes(digest, "big")) / Decimal(2**64)
        return (Decimal("0.0001") + (unit - Decimal("0.3")) * Decimal("0.0004")).quantize(
            RATE_STEP)

    def set_rate(self, pair: str, rate: Decimal, k: int | None = None) -> int:
        """Fix the rate of funding time `k` (default: the next one); returns `k`."""
        index = self.next_index() if k is None else k
        self._overrides[(pair, index)] = rate
        return index

    def mark_at(self, symbol: str, k: int) -> Decimal:
        """The mark price at funding time `k` (the path's price then)."""
        at = k * FUNDING_INTERVAL_MS - self.market.offset_ms
        return self.market.price(symbol, at_ms=at)


def settle(account: Account, market: Market, schedule: FundingSchedule) -> int:
    """Pay every funding time due on every open position, once; returns how many."""
    now_index = schedule.observe()
    paid = 0
    for pos in account.perp.open_positions():
        while pos.funded_index < now_index:
            pos.funded_index += 1
            _pay(account, market, schedule, pos, pos.funded_index)
            paid += 1
    return paid


def _pay(account: Account, market: Market, schedule: FundingSchedule, pos: Position,
         k: int) -> None:
    inst = market.catalog.instruments[pos.symbol]
    mark = schedule.mark_at(pos.symbol, k)
    rate = schedule.rate(inst.pair, k)
    amount = (-pos.qty * mark * rate).quantize(AMOUNT_STEP)
    wallet = account.derivatives.get(pos.settle, _ZERO) + amount
    account.derivatives[pos.settle] = wallet
    if pos.margin_mode is MarginMode.ISOLATED:
        pos.isolated_margin += amount
    pos.funding += amount
    perp = account.perp
    perp.cum_realized[pos.symbol] = perp.cum_realized.get(pos.symbol, _ZERO) + amount
    entry = LedgerEntry(
        perp.next_id(), schedule.stamp(k), LedgerKind.FUNDING, pos.settle, pos.symbol, amount,
        wallet, funding=amount, rate=rate, qty=pos.size, price=mark,
        side="buy" if pos.qty > 0 else "sell", position_side=pos.side,
        margin_mode=pos.margin_mode, position_after=pos.qty)
    perp.record(entry)
    publish_account(account, UpdateReason.FUNDING_FEE, derivative_assets=(pos.settle,),
                    positions=(pos.symbol,), at_ms=entry.time_ms)


def rate_history(schedule: FundingSchedule, pair: str, start_ms: int | None,
                 end_ms: int | None, limit: int, newest_first: bool,
                 ) -> Iterator[tuple[int, int, Decimal]]:
    """(index, stamp, rate) of past funding times, as `FundingSchedule.indexes` picks them."""
    for k in schedule.indexes(start_ms, end_ms, limit, newest_first):
        yield k, schedule.stamp(k), schedule.rate(pair, k)
