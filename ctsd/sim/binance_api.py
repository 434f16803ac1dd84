"""Binance's endpoint table types and per-surface settings, shared by the venue's
per-concern modules (`ctsd.sim.binance` and `binance_<concern>`).

Binance counts request weight separately per API family (`Surface`): spot with
`/sapi`, USDⓈ-M futures, and European options; each endpoint has a weight (fixed or
by its parameters) and a security type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum, StrEnum

from ctsd.sim import binance_wire as render
from ctsd.sim.accounts import Account, FeeSchedule, Permission
from ctsd.sim.endpoints import Handler, RequestCall, Route
from ctsd.sim.market import InstrumentKind
from ctsd.sim.ratelimit import RateRule
from ctsd.sim.wire import RequestData, VenueError


class Surface(StrEnum):
    """Binance counts weight separately per API family."""

    SPOT = "spot"
    FUTURES = "futures"
    OPTIONS = "options"
    """European options (`/eapi/v1`)."""


class Security(Enum):
    """Binance's endpoint security types, reduced to what we check."""

    NONE = None
    USER_STREAM = "user_stream"
    """An API key, no signature (listenKey endpoints)."""
    USER_DATA = Permission.READ
    TRADE = Permission.TRADE
    MARGIN = Permission.MARGIN
    """Borrowing, repaying and margin orders: the key's `enableMargin`."""
    OPTIONS = Permission.OPTIONS
    """Option orders: the key's `enableVanillaOptions`."""


WEIGHT_RULES = {Surface.SPOT: RateRule(1200, 60), Surface.FUTURES: RateRule(2400, 60),
                Surface.OPTIONS: RateRule(400, 60)}
"""REQUEST_WEIGHT per IP per minute (the prototype's 1,200 for spot; 2,400 futures; 400
options)."""
FEES = {
    Surface.SPOT: FeeSchedule(maker=Decimal("0.001"), taker=Decimal("0.001"),
                              base_fee_on_buy=True, decimals=8),
    Surface.FUTURES: FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0005"), decimals=8),
    Surface.OPTIONS: FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0003")),
}
"""Spot and futures charge each trade's commission in the 8 decimals they report it in
(`commission`, an execution report's `n`), as balances hold no more: a fee charged
exactly but reported rounded left the balances a few 1e-9 off what the trades say.
Options fees are a share of the underlying's notional (Binance: 0.02 % / 0.03 %)."""
KIND = {Surface.SPOT: InstrumentKind.SPOT, Surface.FUTURES: InstrumentKind.LINEAR}

Weight = int | Callable[[Mapping[str, str]], int]


def by_symbol(with_symbol: int, without: int) -> Weight:
    return lambda p: with_symbol if "symbol" in p else without


def kline_weight(params: Mapping[str, str]) -> int:
    limit = int(params.get("limit") or 500)
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


@dataclass(frozen=True, slots=True)
class Call(RequestCall):
    """What a handler gets: the parsed request, the surface and (signed) the account."""

    data: RequestData
    surface: Surface
    account: Account | None

    @property
    def futures(self) -> bool:
        return self.surface is Surface.FUTURES

    def missing(self, name: str) -> VenueError:
        return render.missing(name)

    def decimal(self, name: str) -> Decimal | None:
        raw = self.params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return Decimal(raw)
        except InvalidOperation as exc:
            raise render.error(
                400, -1100, f"Illegal characters found in parameter '{name}'.") from exc


@dataclass(frozen=True, slots=True)
class Endpoint(Route):
    surface: Surface
    weight: Weight
    security: Security
    handler: Handler[Call]
