"""European options on the catalog's majors: the chain of listed contracts and their mark.

Why generated and priced this way: like the price path, the chain is a pure function
of (seed, path time), so every venue, request and test sees the same contracts; a
contract's mark is Black-Scholes on the underlying's own path with a seeded implied
volatility (no rates, no smile), so it moves with the spot price a client watches.

The calendar is the path's (server clock + `advance` offset, `Market.path_ms`):
expiries are at 08:00 UTC — the next three days, the next two Fridays after those,
and the month's last Friday (or next month's when this one's is under a week away).
A contract's strikes are fixed when it is listed (3, 14 or 60 days before its expiry
for dailies, weeklies and monthlies): 11 strikes around the underlying's price then,
in steps of about 2 % of it, so they never move under an open order. At expiry the
contract settles in cash at the underlying's path price
(`ctsd.sim.option_trading`). Two families: USDT-margined (Binance, Bybit; prices
and premiums in USDT) and coin-margined (OKX; prices in the underlying coin).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from ctsd.sim.market import Market

DAY_MS = 86_400_000
YEAR_MS = 365 * DAY_MS
EXPIRY_HOUR = 8
UNDERLYINGS = ("BTC", "ETH")
STRIKES_EACH_SIDE = 5
LISTING_LEAD_DAYS = {"daily": 3, "weekly": 14, "monthly": 60}


@dataclass(frozen=True, slots=True)
class OptionContract:
    underlying: str
    quote: str
    """The price currency of the underlying (USDT)."""
    settle: str
    """USDT, or the underlying itself for a coin-margined contract (OKX)."""
    expiry_ms: int
    """On the path calendar (equal to the server clock until an `advance`)."""
    strike: Decimal
    call: bool
    listed_ms: int

    @property
    def coin_margined(self) -> bool:
        return self.settle == self.underlying

    @property
    def letter(self) -> str:
        return "C" if self.call else "P"

    @property
    def yymmdd(self) -> str:
        return datetime.fromtimestamp(self.expiry_ms / 1000, UTC).strftime("%y%m%d")

    @property
    def strike_text(self) -> str:
        return f"{self.strike.normalize():f}"

    @property
    def symbol(self) -> str:
        """ccxt's unified symbol: `BTC/USDT:USDT-250131-60000-C`, `BTC/USD:BTC-...`."""
        quote = "USD" if self.coin_margined else self.quote
        return (f"{self.underlying}/{quote}:{self.settle}-{self.yymmdd}-{self.strike_text}"
                f"-{self.letter}")

    @property
    def spot_symbol(self) -> str:
        return f"{self.underlying}/{self.quote}"

    def intrinsic(self, spot: Decimal) -> Decimal:
        """Per unit of the underlying, in the quote: what it pays at expiry."""
        return max(spot - self.strike, Decimal(0)) if self.call else max(
            self.strike - spot, Decimal(0))


@dataclass(frozen=True, slots=True)
class Greeks:
    delta: float
    gamma: float
    vega: float
    """Per volatility point (0.01)."""
    theta: float
    """Per day."""


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def black_scholes(spot: float, strike: float, years: float, vol: float,
                  call: bool) -> tuple[float, Greeks]:
    """Price (in the quote, per unit) and greeks, rates zero; at expiry the intrinsic."""
    if years <= 0 or vol <= 0:
        value = max(spot - strike, 0.0) if call else max(strike - spot, 0.0)
        delta = (1.0 if spot > strike else 0.0) if call else (-1.0 if spot < strike else 0.0)
        return value, Greeks(delta, 0.0, 0.0, 0.0)
    root = vol * math.sqrt(years)
    d1 = (math.log(spot / strike) + 0.5 * vol * vol * years) / root
    d2 = d1 - root
    if call:
        value, delta = spot * _ncdf(d1) - strike * _ncdf(d2), _ncdf(d1)
    else:
        value, delta = strike * _ncdf(-d2) - spot * _ncdf(-d1), _ncdf(d1) - 1.0
    gamma = _npdf(d1) / (spot * root)
    vega = spot * _npdf(d1) * math.sqrt(years) / 100.0
    theta = -spot * _npdf(d1) * vol / (2.0 * math.sqrt(years)) / 365.0
    return value, Greeks(delta, gamma, vega, theta)


def strike_step(price: Decimal) -> Decimal:
    """1, 2 or 5 times a power of ten, about 2 % of the price."""
    target = float(price) * 0.02
    power = 10 ** math.floor(math.log10(target))
    for unit in (1, 2, 5, 10):
        if unit * power >= target:
            return Decimal(str(unit * power)).normalize()
    return Decimal(str(10 * power))


class OptionChain:
    """The listed contracts at a path time, and their marks."""

    def __init__(self, market: Market, seed: int) -> None:
        self.market = market
        self._seed = seed
        self._strikes: dict[tuple[str, int], tuple[Decimal, ...]] = {}

    # --- the calendar -----------------------------------------------------------------

    @staticmethod
    def expiries(path_ms: int) -> list[tuple[int, str]]:
        """(expiry, kind) of the contracts listed at `path_ms`, soonest first."""
        now = datetime.fromtimestamp(path_ms / 1000, UTC)
        first = now.replace(hour=EXPIRY_HOUR, minute=0, second=0, microsecond=0)
        if first <= now:
            first += timedelta(days=1)
        found: dict[datetime, str] = {first + timedelta(days=n): "daily" for n in range(3)}
        friday = first + timedelta(days=(4 - first.weekday()) % 7)
        while friday in found:
            friday += timedelta(days=7)
        for n in range(2):
            found.setdefault(friday + timedelta(days=7 * n), "weekly")
        found.setdefault(_monthly(now), "monthly")
        return sorted((int(t.timestamp() * 1000), kind) for t, kind in found.items())

    def strikes(self, underlying: str, expiry_ms: int, kind: str) -> tuple[Decimal, ...]:
        key = (underlying, expiry_ms)
        cached = self._strikes.get(key)
        if cached is None:
            listed = expiry_ms - LISTING_LEAD_DAYS[kind] * DAY_MS
            anchor = self.market.price(f"{underlying}/{self.market.catalog.quote}",
                                       at_ms=listed - self.market.path_offset_ms)
            step = strike_step(anchor)
            middle = (anchor / step).to_integral_value(ROUND_HALF_UP) * step
            cached = tuple(middle + k * step for k in range(-STRIKES_EACH_SIDE,
                                                            STRIKES_EACH_SIDE + 1)
                           if middle + k * step > 0)
            self._strikes[key] = cached
        return cached

    def contracts(self, path_ms: int | None = None, *, coin_margined: bool = False,
                  underlying: str | None = None) -> list[OptionContract]:
        at = self.market.path_ms() if path_ms is None else path_ms
        quote = self.market.catalog.quote
        out = []
        for expiry, kind in self.expiries(at):
            listed = expiry - LISTING_LEAD_DAYS[kind] * DAY_MS
            for u in UNDERLYINGS:
                if underlying not in (None, u):
                    continue
                settle = u if coin_margined else quote
                for strike in self.strikes(u, expiry, kind):
                    out += [OptionContract(u, quote, settle, expiry, strike, call, listed)
                            for call in (True, False)]
        return out

    def expired(self, path_ms: int, days: int = 7) -> list[OptionContract]:
        """The USDT-margined contracts that expired in the `days` before `path_ms`, oldest
        expiry first: what the venues' public settlement histories list."""
        quote = self.market.catalog.quote
        expiries = {e: k for day in range(days, 0, -1)
                    for e, k in self.expiries(path_ms - day * DAY_MS) if e <= path_ms}
        return [OptionContract(u, quote, quote, expiry, strike, call, 0)
                for expiry, kind in sorted(expiries.items()) for u in UNDERLYINGS
                for strike in self.strikes(u, expiry, kind) for call in (True, False)]

    # --- prices ---------------------------------------------------------------------

    def implied_vol(self, underlying: str) -> float:
        digest = hashlib.blake2b(f"{self._seed}:iv:{underlying}".encode(),
                                 digest_size=4).digest()
        return 0.45 + (int.from_bytes(digest, "big") % 3000) / 10_000

    def spot(self, contract: OptionContract, path_ms: int | None = None) -> Decimal:
        at = None if path_ms is None else path_ms - self.market.path_offset_ms
        return self.market.price(contract.spot_symbol, at_ms=at)

    def value(self, contract: OptionContract, path_ms: int | None = None,
              ) -> tuple[Decimal, Greeks]:
        """The model price per unit of the underlying, in the contract's settle currency
        (unrounded), and its greeks."""
        at = self.market.path_ms() if path_ms is None else path_ms
        spot = self.spot(contract, at)
        years = (contract.expiry_ms - at) / YEAR_MS
        price, greeks = black_scholes(float(spot), float(contract.strike), years,
                                      self.implied_vol(contract.underlying), contract.call)
        value = Decimal(str(round(price, 8)))
        if contract.coin_margined:
            value = value / spot
        return value, greeks

    def settlement_price(self, contract: OptionContract) -> Decimal:
        """The underlying's path price at expiry (Binance settles on an index average;
        here the price itself)."""
        return self.spot(contract, contract.expiry_ms)


def _monthly(now: datetime) -> datetime:
    """The last Friday of this month at 08:00, or next month's if under a week away."""
    for months in (0, 1, 2):
        year, month = now.year + (now.month - 1 + months) // 12, (now.month - 1 + months) % 12 + 1
        last = datetime(year + month // 12, month % 12 + 1, 1, EXPIRY_HOUR, tzinfo=UTC) - \
            timedelta(days=1)
        last -= timedelta(days=(last.weekday() - 4) % 7)
        if last - now >= timedelta(days=7):
            return last
    raise AssertionError("a last Friday is always within three months")
