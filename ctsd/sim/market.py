"""The simulated market: a catalog of instruments and one seeded price path per pair.

Why a closed-form path instead of a stored random walk: any price, candle or
24 h ticker at any time is a pure function of (seed, pair, time), so two runs with
one seed agree on every candle, history needs no storage, and a 2,000-market
catalog costs nothing until asked. The path is a sum of sines with seeded
periods and phases (trend-like swings from minutes to weeks) plus per-second
noise from a counter-based hash; admin calls shift it in time (`advance`) or
rescale one pair (`set_price`).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from ctsd.sim.clock import Clock

STEP_MS = 1000
"""Resolution of the noise term: the price changes at most once a second."""

_MASK64 = (1 << 64) - 1

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
    volume: Decimal
    quote_volume: Decimal
    trades: int

    @property
    def vwap(self) -> Decimal:
        return self.quote_volume / self.volume if self.volume else self.last


def stream_seed(seed: int, key: str) -> int:
    """A stable 64-bit seed for one named stream (Python's `hash()` is salted per process)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread counter-based hash."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _unit(stream: int, k: int) -> float:
    """Uniform in [0, 1) for step `k` of a stream."""
    return _mix64(stream ^ (k * 0xD1B54A32D192ED03 & _MASK64)) / 2.0**64


@dataclass(frozen=True, slots=True)
class _PairPath:
    stream: int
    log_base: float
    waves: tuple[tuple[float, float, float], ...]  # (amplitude, angular speed per ms, phase)
    noise: float
    volume_per_s: float  # in base units

    def log_price(self, t_ms: int) -> float:
        value = self.log_base
        for amplitude, speed, phase in self.waves:
            value += amplitude * math.sin(speed * t_ms + phase)
        return value + self.noise * (_unit(self.stream, t_ms // STEP_MS) - 0.5)


def _pair_path(seed: int, base: str, quote: str, price: Decimal) -> _PairPath:
    stream = stream_seed(seed, f"{base}/{quote}")
    rng = random.Random(stream)
    daily_vol = rng.uniform(0.02, 0.06)
    waves = []
    for period_s in (300.0, 3600.0, 21600.0, 172800.0, 950400.0):
        period = period_s * rng.uniform(0.8, 1.25)
        amplitude = daily_vol * math.sqrt(period / 86400.0) * rng.uniform(0.4, 0.9)
        waves.append((amplitude, 2 * math.pi / (period * 1000.0), rng.uniform(0, 2 * math.pi)))
    volume_quote_per_day = 10 ** rng.uniform(6.0, 9.0)
    return _PairPath(
        stream=stream,
        log_base=math.log(float(price)),
        waves=tuple(waves),
        noise=0.0008,
        volume_per_s=volume_quote_per_day / 86400.0 / float(price),
    )


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
        self.paths: dict[str, _PairPath] = {
            f"{b}/{quote}": _pair_path(seed, b, quote, p) for b, p in heads
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
    """Prices, candles and tickers as functions of the simulator's clock."""

    def __init__(self, catalog: MarketCatalog, clock: Clock) -> None:
        self.catalog = catalog
        self.clock = clock
        self._overrides = _Overrides()

    def now_ms(self) -> int:
        return self.clock.now_ms()

    @property
    def offset_ms(self) -> int:
        """How far `advance` has moved the price paths ahead of the server clock."""
        return self._overrides.offset_ms

    def path_now_ms(self) -> int:
        """The time the price paths are evaluated at now (server clock + offset)."""
        return self.clock.now_ms() + self._overrides.offset_ms

    def reset(self) -> None:
        self._overrides = _Overrides()

    def advance(self, seconds: float) -> None:
        """Move every price path forward in time without touching the server clock."""
        self._overrides.offset_ms += round(seconds * 1000)

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Rescale the pair's whole path so that its price now equals `price`."""
        inst = self._instrument(symbol)
        self._overrides.scale.pop(inst.pair, None)
        raw = self._raw(inst.pair, self.now_ms())
        self._overrides.scale[inst.pair] = float(price) / raw

    def price(self, symbol: str, at_ms: int | None = None) -> Decimal:
        """The traded price, on the instrument's tick."""
        inst = self._instrument(symbol)
        at = self.now_ms() if at_ms is None else at_ms
        return self._quantize(self._raw(inst.pair, at), inst.tick_size)

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
        return [self._candle(inst, timeframe, t0, now) for t0 in opens]

    def ticker(self, symbol: str) -> TickerStats:
        """Rolling 24 h statistics sampled from the path (49 points, half-hourly)."""
        inst = self._instrument(symbol)
        now = self.now_ms()
        start = now - 86_400_000
        prices = [self._tick_price(inst, start + i * 1_800_000) for i in range(48)]
        prices.append(self._tick_price(inst, now))
        volume, quote_volume = self._volume(inst, prices, 86_400.0, start)
        last = prices[-1]
        return TickerStats(
            open_ms=start, close_ms=now, open=prices[0], high=max(prices), low=min(prices),
            last=last, bid=last, ask=last + inst.tick_size, volume=volume,
            quote_volume=quote_volume, trades=int(volume / inst.step_size) % 1_000_000 + 1000,
        )

    def _instrument(self, symbol: str) -> Instrument:
        inst = self.catalog.get(symbol)
        if inst is None:
            raise KeyError(symbol)
        return inst

    def _raw(self, pair: str, at_ms: int) -> float:
        path = self.catalog.paths[pair]
        value = math.exp(path.log_price(at_ms + self._overrides.offset_ms))
        return value * self._overrides.scale.get(pair, 1.0)

    def _tick_price(self, inst: Instrument, at_ms: int) -> Decimal:
        return self._quantize(self._raw(inst.pair, at_ms), inst.tick_size)

    @staticmethod
    def _quantize(value: float, step: Decimal) -> Decimal:
        quantized = Decimal(repr(value)).quantize(step)
        return quantized if quantized > 0 else step

    def _candle(self, inst: Instrument, tf: Timeframe, t0: int, now: int) -> Candle:
        end = min(t0 + tf.ms - STEP_MS, now)
        samples = max(min(tf.seconds // (STEP_MS // 1000), 12), 1)
        times = [t0 + (end - t0) * i // samples for i in range(samples + 1)]
        prices = [self._tick_price(inst, t) for t in times]
        seconds = max((end - t0) / 1000.0 + 1.0, 1.0)
        volume, quote_volume = self._volume(inst, prices, seconds, t0)
        return Candle(
            open_ms=t0, close_ms=t0 + tf.ms - 1, open=prices[0], high=max(prices),
            low=min(prices), close=prices[-1], volume=volume, quote_volume=quote_volume,
            trades=max(int(seconds * 0.7), 1),
        )

    def _volume(
        self, inst: Instrument, prices: list[Decimal], seconds: float, t0: int,
    ) -> tuple[Decimal, Decimal]:
        """Seeded volume spread over the sampled prices, so that vwap lies in [low, high]."""
        path = self.catalog.paths[inst.pair]
        total = path.volume_per_s * seconds * (0.5 + _unit(path.stream ^ 0x5EED, t0 // 1000))
        share = Decimal(repr(total / len(prices))).quantize(inst.step_size)
        if share <= 0:
            share = inst.step_size
        volume = share * len(prices)
        quote_volume = sum((p * share for p in prices), Decimal(0))
        return volume, quote_volume.quantize(inst.tick_size * inst.step_size)
