"""The simulated market: a catalog of instruments and one seeded price path per pair.

The path itself, and the schedule of public trades laid on it, are in
`ctsd.sim.path`; the tape and its aggregates in `ctsd.sim.tape`; the order book in
`ctsd.sim.book`. `Market` ties them to the server clock and the admin overrides:
`advance` shifts every path in time (the tape walks forward), `set_price` rescales
one pair. Prices are computed in whole ticks, so every view of one trade (tape,
candle, ticker, book, fill) agrees to the digit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from ctsd.sim.book import OrderBooks
from ctsd.sim.clock import Clock
from ctsd.sim.path import STEP_MS, PairPath, pair_path, slot_at, stream_seed, unit
from ctsd.sim.tape import Tape

EXACT_CANDLE_MAX_S = 900
"""Candles up to 15 minutes are the exact aggregate of the tape (what a client that
resamples trades gets); longer ones are sampled from 13 of their trades, because an
exact hour reads 720 trades and Kraken's OHLC answers 720 candles at a time."""

# A realistic head of the catalog: (base asset, price in USDT around late 2024).
_KNOWN_PAIRS: tuple[tuple[str, str], ...] = (
    ("BTC", "65000"), ("ETH", "3200"), ("BNB", "580"), ("SOL", "150"), ("XRP", "0.52"),
    ("ADA", "0.45"), ("DOGE", "0.15"), ("TRX", "0.12"), ("AVAX", "35"), ("DOT", "7"),
    ("LINK", "15"), ("LTC", "80"), ("BCH", "450"), ("ATOM", "8"), ("UNI", "9"),
    ("XLM", "0.11"), ("ETC", "26"), ("FIL", "5.5"), ("APT", "9"), ("ARB", "1.1"),
    ("OP", "2.3"), ("NEAR", "6"), ("AAVE", "140"), ("INJ", "25"),
)


class InstrumentKind(StrEnum):
    """What is traded: the spot pair or its USDT-margined perpetual."""

    SPOT = "spot"
    LINEAR = "linear"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable market with the filters exchanges publish for it."""

    symbol: str
    """Unified ccxt symbol: `BTC/USDT` (spot) or `BTC/USDT:USDT` (linear perpetual)."""
    pair: str
    """`BASE/QUOTE`: the key of the price path; spot and perpetual share one path."""
    base: str
    quote: str
    kind: InstrumentKind
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_price: Decimal
    max_price: Decimal
    min_notional: Decimal
    listed_ms: int

    @property
    def settle(self) -> str | None:
        return self.quote if self.kind is InstrumentKind.LINEAR else None

    @property
    def price_decimals(self) -> int:
        return -int(self.tick_size.as_tuple().exponent)

    @property
    def qty_decimals(self) -> int:
        return -int(self.step_size.as_tuple().exponent)


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A candle length; weeks start on Monday as on every exchange."""

    seconds: int

    @property
    def ms(self) -> int:
        return self.seconds * 1000

    def floor(self, t_ms: int) -> int:
        """Open time of the candle containing `t_ms`."""
        offset = 4 * 86_400_000 if self.seconds == 7 * 86_400 else 0  # 1970-01-05 was a Monday
        return (t_ms - offset) // self.ms * self.ms + offset


TIMEFRAMES: dict[str, Timeframe] = {
    name: Timeframe(seconds)
    for name, seconds in {
        "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
        "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400, "3d": 259200,
        "1w": 604800,
    }.items()
}
"""Unified (ccxt) timeframe names; venues translate their own interval names to these."""


@dataclass(frozen=True, slots=True)
class Candle:
    open_ms: int
    close_ms: int
    """Last millisecond of the candle (open + length - 1), as Binance reports it."""
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class TickerStats:
    """Rolling 24 h statistics every venue's ticker is derived from."""

    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    bid: Decimal
    ask: Decimal
    bid_qty: Decimal
    ask_qty: Decimal
    """The book's top (`ctsd.sim.book`): bid is the last price, ask one tick above."""
    volume: Decimal
    quote_volume: Decimal
    trades: int

    @property
    def vwap(self) -> Decimal:
        return self.quote_volume / self.volume if self.volume else self.last


def _generated_base(index: int) -> str:
    """`QAAA`, `QAAB`, … : four letters, none an existing code or a Kraken X/Z alias."""
    letters = ""
    for _ in range(3):
        index, rem = divmod(index, 26)
        letters = chr(ord("A") + rem) + letters
    return "Q" + letters


def _instrument(base: str, quote: str, price: Decimal, kind: InstrumentKind) -> Instrument:
    magnitude = math.floor(math.log10(float(price)))
    price_decimals = min(max(5 - magnitude, 0), 8)
    qty_decimals = min(max(magnitude + 1, 0), 8)
    tick = Decimal(1).scaleb(-price_decimals)
    step = Decimal(1).scaleb(-qty_decimals)
    suffix = f":{quote}" if kind is InstrumentKind.LINEAR else ""
    return Instrument(
        symbol=f"{base}/{quote}{suffix}",
        pair=f"{base}/{quote}",
        base=base,
        quote=quote,
        kind=kind,
        tick_size=tick,
        step_size=step,
        min_qty=step,
        max_qty=Decimal(10) ** max(7 - magnitude, 1),
        min_price=tick,
        max_price=Decimal(10) ** (magnitude + 4),
        min_notional=Decimal(5),
        listed_ms=1_600_000_000_000,
    )


class MarketCatalog:
    """The instruments: the known head, then generated pairs up to `count` pairs.

    Every pair is listed twice, as spot and as a USDT-margined perpetual, because
    the daemon's connections cover both API types.
    """

    def __init__(self, seed: int, count: int, quote: str = "USDT") -> None:
        if count < 1:
            raise ValueError("market count must be at least 1")
        rng = random.Random(stream_seed(seed, "catalog"))
        heads = [(base, Decimal(price)) for base, price in _KNOWN_PAIRS[:count]]
        for i in range(count - len(heads)):
            raw = 10 ** rng.uniform(-2.0, 2.5)
            heads.append((_generated_base(i), Decimal(f"{raw:.4g}")))
        self.quote = quote
        self.initial_prices: dict[str, Decimal] = {f"{b}/{quote}": p for b, p in heads}
        self.paths: dict[str, PairPath] = {
            f"{b}/{quote}": pair_path(seed, b, quote, p) for b, p in heads
        }
        self.instruments: dict[str, Instrument] = {}
        for kind in (InstrumentKind.SPOT, InstrumentKind.LINEAR):
            for base, price in heads:
                inst = _instrument(base, quote, price, kind)
                self.instruments[inst.symbol] = inst

    def of_kind(self, kind: InstrumentKind) -> list[Instrument]:
        return [i for i in self.instruments.values() if i.kind is kind]

    def get(self, symbol: str) -> Instrument | None:
        return self.instruments.get(symbol)

    @property
    def assets(self) -> list[str]:
        """Every asset code, quote first."""
        return [self.quote, *(pair.split("/")[0] for pair in self.paths)]


@dataclass
class _Overrides:
    offset_ms: int = 0
    scale: dict[str, float] = field(default_factory=dict)


class Market:
    """Prices, trades, candles, tickers and books as functions of the simulator's clock."""

    def __init__(self, catalog: MarketCatalog, clock: Clock) -> None:
        self.catalog = catalog
        self.clock = clock
        self._overrides = _Overrides()
        self._revision = 0
        """Added to the book sequence so it never goes back (`sequence`)."""
        self.tape = Tape(self)
        self.books = OrderBooks(self)

    def now_ms(self) -> int:
        return self.clock.now_ms()

    # --- path time and overrides --------------------------------------------------------

    @property
    def path_offset_ms(self) -> int:
        """How far `advance` has moved every path ahead of the server clock."""
        return self._overrides.offset_ms

    def path_ms(self, at_ms: int | None = None) -> int:
        """Path time of server time `at_ms` (default: now)."""
        return (self.now_ms() if at_ms is None else at_ms) + self._overrides.offset_ms

    def scale_of(self, pair: str) -> float:
        return self._overrides.scale.get(pair, 1.0)

    def sequence(self) -> int:
        """A number that grows whenever any book may have changed: once per path second,
        and on every `set_price`, `advance` and `reset` (which never take it back)."""
        return self.path_ms() // STEP_MS + self._revision
    @property
    def offset_ms(self) -> int:
        """How far `advance` has moved the price paths ahead of the server clock."""
        return self._overrides.offset_ms

    def path_now_ms(self) -> int:
        """The time the price paths are evaluated at now (server clock + offset)."""
        return self.clock.now_ms() + self._overrides.offset_ms

    def reset(self) -> None:
        self._revision += abs(self._overrides.offset_ms) // STEP_MS + 1
        self._overrides = _Overrides()

    def advance(self, seconds: float) -> None:
        """Move every price path forward in time without touching the server clock."""
        shift = round(seconds * 1000)
        if shift < 0:
            self._revision += -shift // STEP_MS + 1
        self._overrides.offset_ms += shift

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Rescale the pair's whole path so that its price now equals `price`."""
        inst = self._instrument(symbol)
        raw = self.catalog.paths[inst.pair].trade_raw_price(slot_at(self.path_ms()))
        self._overrides.scale[inst.pair] = float(price) / raw
        self._revision += 1

    # --- prices -----------------------------------------------------------------------

    def trade_ticks(self, inst: Instrument, k: int) -> int:
        """Trade `k`'s price in whole ticks of `inst` (at least one)."""
        raw = self.catalog.paths[inst.pair].trade_raw_price(k) * self.scale_of(inst.pair)
        return max(round(raw / float(inst.tick_size)), 1)

    def price_ticks(self, inst: Instrument, at_ms: int | None = None) -> int:
        return self.trade_ticks(inst, slot_at(self.path_ms(at_ms)))

    def price(self, symbol: str, at_ms: int | None = None) -> Decimal:
        """The last traded price at server time `at_ms` (default: now), on the tick."""
        inst = self._instrument(symbol)
        return Decimal(self.price_ticks(inst, at_ms)) * inst.tick_size

    def candles(
        self, symbol: str, timeframe: Timeframe, *, start_ms: int | None = None,
        end_ms: int | None = None, limit: int = 500,
    ) -> list[Candle]:
        """Candles opening in [start, end], oldest first, never past the current one."""
        inst = self._instrument(symbol)
        now = self.now_ms()
        last_open = timeframe.floor(min(now, end_ms) if end_ms is not None else now)
        if start_ms is not None:
            first_open = timeframe.floor(start_ms)
            if first_open < start_ms:
                first_open += timeframe.ms
            opens = range(first_open, min(last_open, first_open + (limit - 1) * timeframe.ms) + 1,
                          timeframe.ms)
        else:
            opens = range(max(last_open - (limit - 1) * timeframe.ms, 0), last_open + 1,
                          timeframe.ms)
        if timeframe.seconds <= EXACT_CANDLE_MAX_S:
            return [self._tape_candle(inst, timeframe, t0, now) for t0 in opens]
        return [self._sampled_candle(inst, timeframe, t0, now) for t0 in opens]

    def ticker(self, symbol: str) -> TickerStats:
        """Rolling 24 h statistics sampled from the tape (49 trades, half-hourly)."""
        inst = self._instrument(symbol)
        now = self.now_ms()
        start = now - 86_400_000
        prices = [self.price(symbol, start + i * 1_800_000) for i in range(48)]
        prices.append(self.price(symbol, now))
        volume, quote_volume = self._volume(inst, prices, 86_400.0, start)
        last = prices[-1]
        bid, ask = self.books.top(inst)
        return TickerStats(
            open_ms=start, close_ms=now, open=prices[0], high=max(prices), low=min(prices),
            last=last, bid=bid.price, ask=ask.price, bid_qty=bid.qty, ask_qty=ask.qty,
            volume=volume, quote_volume=quote_volume,
            trades=int(volume / inst.step_size) % 1_000_000 + 1000,
        )

    def instrument(self, symbol: str) -> Instrument:
        """The instrument of a unified symbol; KeyError when not listed."""
        return self._instrument(symbol)

    def _instrument(self, symbol: str) -> Instrument:
        inst = self.catalog.get(symbol)
        if inst is None:
            raise KeyError(symbol)
        return inst

    def _tape_candle(self, inst: Instrument, tf: Timeframe, t0: int, now: int) -> Candle:
        first = self.tape.first_id_from(t0)
        bar = self.tape.bar(inst, first, self.tape.last_id(min(t0 + tf.ms - 1, now)))
        if bar is None:  # nothing traded yet: the previous trade's price, no volume
            price = Decimal(self.trade_ticks(inst, first - 1)) * inst.tick_size
            return Candle(t0, t0 + tf.ms - 1, price, price, price, price, Decimal(0),
                          Decimal(0), 0)
        tick = inst.tick_size
        return Candle(
            open_ms=t0, close_ms=t0 + tf.ms - 1, open=Decimal(bar.open) * tick,
            high=Decimal(bar.high) * tick, low=Decimal(bar.low) * tick,
            close=Decimal(bar.close) * tick, volume=Decimal(bar.volume) * inst.step_size,
            quote_volume=Decimal(bar.quote) * (tick * inst.step_size), trades=bar.count,
        )

    def _sampled_candle(self, inst: Instrument, tf: Timeframe, t0: int, now: int) -> Candle:
        end = min(t0 + tf.ms - STEP_MS, now)
        samples = 12
        times = [t0 + (end - t0) * i // samples for i in range(samples + 1)]
        prices = [self.price(inst.symbol, t) for t in times]
        seconds = max((end - t0) / 1000.0 + 1.0, 1.0)
        volume, quote_volume = self._volume(inst, prices, seconds, t0)
        return Candle(
            open_ms=t0, close_ms=t0 + tf.ms - 1, open=prices[0], high=max(prices),
            low=min(prices), close=prices[-1], volume=volume, quote_volume=quote_volume,
            trades=max(int(seconds / 5), 1),
        )

    def _volume(
        self, inst: Instrument, prices: list[Decimal], seconds: float, t0: int,
    ) -> tuple[Decimal, Decimal]:
        """Seeded volume spread over the sampled prices, so that vwap lies in [low, high]."""
        path = self.catalog.paths[inst.pair]
        total = path.volume_per_s * seconds * (0.5 + unit(path.stream ^ 0x5EED, t0 // 1000))
        share = Decimal(repr(total / len(prices))).quantize(inst.step_size)
        if share <= 0:
            share = inst.step_size
        volume = share * len(prices)
        quote_volume = sum((p * share for p in prices), Decimal(0))
        return volume, quote_volume.quantize(inst.tick_size * inst.step_size)
