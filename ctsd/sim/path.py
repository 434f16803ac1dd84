"""One pair's seeded price path and the trade schedule laid on it.

Why a closed-form path instead of a stored random walk: any price, trade, candle
or book at any time is a pure function of (seed, pair, time), so two runs with
one seed agree on everything, history needs no storage, and a 2,000-market
catalog costs nothing until asked. The path is a sum of sines with seeded
periods and phases (trend-like swings from minutes to weeks) plus per-second
noise from a counter-based hash.

The market trades on a fixed schedule in *path time*: one public trade every
`TRADE_INTERVAL_MS`, trade `k` at path time `k * TRADE_INTERVAL_MS`, at the path's
price there, with a seeded quantity and aggressor side. The traded price is
therefore constant between two trades: the last trade, the ticker's last price,
the best bid and the close of the forming candle are one number at any moment.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from decimal import Decimal

STEP_MS = 1000
"""Resolution of the noise term and of the order book's size changes."""
TRADE_INTERVAL_MS = 5000
"""One public trade every five seconds of path time, on every pair."""
SLOTS_PER_MINUTE = 60_000 // TRADE_INTERVAL_MS

_MASK64 = (1 << 64) - 1
_QTY_STREAM = 0x51A7E5
_SIDE_STREAM = 0x5EED5
_NOISE_STREAM = 0


def stream_seed(seed: int, key: str) -> int:
    """A stable 64-bit seed for one named stream (Python's `hash()` is salted per process)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


_INC, _M1, _M2, _GOLDEN = (
    0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD1B54A32D192ED03)


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread counter-based hash."""
    x = (x + _INC) & _MASK64
    x = ((x ^ (x >> 30)) * _M1) & _MASK64
    x = ((x ^ (x >> 27)) * _M2) & _MASK64
    return x ^ (x >> 31)


def unit(stream: int, k: int) -> float:
    """Uniform in [0, 1) for counter `k` of a stream."""
    return mix64(stream ^ (k * _GOLDEN & _MASK64)) / 2.0**64


def slot_at(path_ms: int) -> int:
    """The last trade at or before `path_ms`."""
    return path_ms // TRADE_INTERVAL_MS


def first_slot_from(path_ms: int) -> int:
    """The first trade at or after `path_ms`."""
    return -(-path_ms // TRADE_INTERVAL_MS)


def slot_time(k: int) -> int:
    """Path time of trade `k`."""
    return k * TRADE_INTERVAL_MS


@dataclass(frozen=True, slots=True)
class PairPath:
    stream: int
    log_base: float
    waves: tuple[tuple[float, float, float], ...]  # (amplitude, angular speed per ms, phase)
    noise: float
    volume_per_s: float
    """Expected traded volume per second, in base units."""

    def log_price(self, t_ms: int) -> float:
        value = self.log_base
        for amplitude, speed, phase in self.waves:
            value += amplitude * math.sin(speed * t_ms + phase)
        return value + self.noise * (unit(self.stream ^ _NOISE_STREAM, t_ms // STEP_MS) - 0.5)

    def trade_raw_price(self, k: int) -> float:
        """Trade `k`'s price before scaling and rounding to the tick."""
        return math.exp(self.log_price(slot_time(k)))

    def trade_qty(self, k: int) -> float:
        """Trade `k`'s quantity in base units (half to one and a half times the mean)."""
        mean = self.volume_per_s * TRADE_INTERVAL_MS / 1000.0
        return mean * (0.5 + unit(self.stream ^ _QTY_STREAM, k))

    def trades(self, first: int, last: int) -> list[tuple[float, float]]:
        """(raw price, quantity) of trades `first..last`: `trade_raw_price` and
        `trade_qty` fused into one loop with the hash inlined (bit for bit the same
        numbers), because candles read thousands of trades."""
        waves, noise, base = self.waves, self.noise, self.log_base
        noise_stream, qty_stream = self.stream ^ _NOISE_STREAM, self.stream ^ _QTY_STREAM
        mean = self.volume_per_s * TRADE_INTERVAL_MS / 1000.0
        exp, sin, mask, scale = math.exp, math.sin, _MASK64, 2.0**64
        out = []
        for k in range(first, last + 1):
            t = k * TRADE_INTERVAL_MS
            value = base
            for amplitude, speed, phase in waves:
                value += amplitude * sin(speed * t + phase)
            x = ((noise_stream ^ (t // STEP_MS * _GOLDEN & mask)) + _INC) & mask
            x = ((x ^ (x >> 30)) * _M1) & mask
            x = ((x ^ (x >> 27)) * _M2) & mask
            y = ((qty_stream ^ (k * _GOLDEN & mask)) + _INC) & mask
            y = ((y ^ (y >> 30)) * _M1) & mask
            y = ((y ^ (y >> 27)) * _M2) & mask
            out.append((exp(value + noise * ((x ^ (x >> 31)) / scale - 0.5)),
                        mean * (0.5 + (y ^ (y >> 31)) / scale)))
        return out

    def trade_is_buy(self, k: int) -> bool:
        """Whether trade `k`'s aggressor (taker) bought."""
        return unit(self.stream ^ _SIDE_STREAM, k) < 0.5


def pair_path(seed: int, base: str, quote: str, price: Decimal) -> PairPath:
    stream = stream_seed(seed, f"{base}/{quote}")
    rng = random.Random(stream)
    daily_vol = rng.uniform(0.02, 0.06)
    waves = []
    for period_s in (300.0, 3600.0, 21600.0, 172800.0, 950400.0):
        period = period_s * rng.uniform(0.8, 1.25)
        amplitude = daily_vol * math.sqrt(period / 86400.0) * rng.uniform(0.4, 0.9)
        waves.append((amplitude, 2 * math.pi / (period * 1000.0), rng.uniform(0, 2 * math.pi)))
    volume_quote_per_day = 10 ** rng.uniform(6.0, 9.0)
    return PairPath(
        stream=stream,
        log_base=math.log(float(price)),
        waves=tuple(waves),
        noise=0.0008,
        volume_per_s=volume_quote_per_day / 86400.0 / float(price),
    )
