"""One subscription of the hub: its latest value, its health, and who listens.

A `Subscription` is shared by every engine that needs the same (target, kind,
key): one ticker of BTC/USDT on Binance spot serves a thousand engines. Its
`state` is what consumers act on: LIVE data is read from memory; anything
else sends them to REST (counted in `fallbacks`) until the stream is LIVE again.

Candles keep a bounded series keyed by open time: the stream only carries the
forming candle, so history is seeded from REST by the first consumer that
needs it (`CandleSeries.seed`), and a gap (a missed candle, an outage) marks
the series for a new seed instead of handing a strategy a hole.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ctsd.exchanges.model import Candle, ConnectionTarget, Ticker
from ctsd.exchanges.streams import OrderBook, PublicTrade, StreamKind


class StreamState(enum.Enum):
    STARTING = "starting"
    """Subscribed, no data yet."""
    LIVE = "live"
    STALE = "stale"
    """Data older than the stream's cadence: consumers use REST, the hub resubscribes."""
    DOWN = "down"
    """The connection failed; the hub reconnects."""
    FAILED = "failed"
    """The venue refused the subscription (or does not stream it): `error` says why."""


@dataclass(frozen=True)
class SubKey:
    target: ConnectionTarget
    kind: StreamKind
    key: Any
    """symbol (ticker, trades), (symbol, timeframe) (candles), (symbol, depth) (book)."""

    def describe(self) -> str:
        key = self.key if isinstance(self.key, str) else "/".join(str(k) for k in self.key)
        testnet = "-testnet" if self.target.testnet else ""
        return (f"{self.target.exchange}{testnet}:{self.target.api_type.value}:"
                f"{self.kind.value}:{key}")


Listener = Callable[["Subscription"], None]


@dataclass(frozen=True)
class StreamStatus:
    """One subscription as `cts status` and the metrics show it."""

    stream: str
    """`exchange:api_type:kind:key`, e.g. `binance:spot:ticker:BTC/USDT`."""
    state: StreamState
    users: int
    messages_per_s: float
    data_age_s: float | None
    reconnects: int
    fallbacks: int
    resyncs: int
    error: str


class CandleSeries:
    """Candles of one (symbol, timeframe) by open time, at most `keep` of them."""

    def __init__(self, length_ms: int, keep: int) -> None:
        self.length_ms = length_ms
        self.keep = keep
        self._rows: dict[int, Candle] = {}
        self.needs_seed = True

    def update(self, candles: Iterable[Candle]) -> bool:
        """Merge stream candles; True when a newer candle opened (the last one closed)."""
        newest = max(self._rows, default=None)
        opened = False
        for candle in candles:
            if newest is not None and candle.open_ms > newest + self.length_ms:
                self.needs_seed = True  # a candle was missed
            if newest is None or candle.open_ms > newest:
                opened = newest is not None
                newest = candle.open_ms
            self._rows[candle.open_ms] = candle
        self._trim()
        return opened

    def seed(self, candles: Iterable[Candle]) -> None:
        """History from REST; stream rows already held are newer and win."""
        for candle in candles:
            self._rows.setdefault(candle.open_ms, candle)
        self.needs_seed = False
        self._trim()

    def closed(self, now_ms: int, limit: int) -> tuple[Candle, ...] | None:
        """The last `limit` closed candles, oldest first; None if the series cannot say."""
        if self.needs_seed or limit > self.keep:
            return None
        rows = [self._rows[k] for k in sorted(self._rows) if k + self.length_ms <= now_ms]
        if len(rows) < limit:
            return None
        return tuple(rows[-limit:])

    def _trim(self) -> None:
        while len(self._rows) > self.keep + 2:
            del self._rows[min(self._rows)]


class Subscription:
    def __init__(self, key: SubKey, cadence_s: float, now: float) -> None:
        self.key = key
        self.cadence_s = cadence_s
        self.state = StreamState.STARTING
        self.error = ""
        self.users = 0
        self.listeners: set[Listener] = set()
        self.value: Any = None
        self.candles: CandleSeries | None = None
        self.trades: deque[PublicTrade] = deque(maxlen=100)
        self.subscribed_at = now
        """When it was last (re)subscribed: the data age of a new connection counts from it."""
        self.last_data = 0.0
        self.messages = 0
        self.reconnects = 0
        self.fallbacks = 0
        self.resyncs = 0
        self._rate_mark = (now, 0)
        self.rate = 0.0
        """Messages a second over the last rate window (see `sample_rate`)."""

    @property
    def live(self) -> bool:
        return self.state is StreamState.LIVE

    def age(self, now: float) -> float | None:
        return now - self.last_data if self.last_data else None

    def receive(self, value: Any, now: float) -> bool:
        """Take one value from the stream; True if listeners should hear of it: a change,
        or a ticker live again (its engines leave REST now, whether or not the market
        moved meanwhile; candle engines wait for the next closed candle, which they would
        read from REST anyway)."""
        back = self.state is not StreamState.LIVE and self.key.kind is StreamKind.TICKER
        self.messages += 1
        self.last_data = now
        self.state = StreamState.LIVE
        return self._take(value) or back

    def _take(self, value: Any) -> bool:
        kind = self.key.kind
        if kind is StreamKind.TICKER:
            changed = not _same_ticker(self.value, value)
            self.value = value
            return changed
        if kind is StreamKind.CANDLES:
            assert self.candles is not None
            return self.candles.update(value)
        if kind is StreamKind.BOOK:
            changed = not isinstance(self.value, OrderBook) or (
                self.value.bids[:1], self.value.asks[:1]) != (value.bids[:1], value.asks[:1])
            self.value = value
            return changed
        fresh = [t for t in value if not self.trades or (t.timestamp_ms >= self.trades[-1]
                 .timestamp_ms and t.id != self.trades[-1].id)]
        self.trades.extend(fresh)
        return bool(fresh)

    def interrupted(self, state: StreamState, error: str = "") -> None:
        """The stream stopped delivering: candles need a new seed once it is back."""
        if self.state is StreamState.FAILED:
            return
        self.state = state
        self.error = error
        if self.candles is not None:
            self.candles.needs_seed = True

    def sample_rate(self, now: float) -> None:
        since, count = self._rate_mark
        if now - since >= 1.0:
            self.rate = (self.messages - count) / (now - since)
            self._rate_mark = (now, self.messages)

    def status(self, now: float) -> StreamStatus:
        return StreamStatus(self.key.describe(), self.state, self.users, self.rate,
                            self.age(now), self.reconnects, self.fallbacks, self.resyncs,
                            self.error)

    def notify(self) -> None:
        for listener in tuple(self.listeners):
            listener(self)


def _same_ticker(old: Any, new: Ticker) -> bool:
    return isinstance(old, Ticker) and (old.last, old.bid, old.ask) == (new.last, new.bid,
                                                                         new.ask)
