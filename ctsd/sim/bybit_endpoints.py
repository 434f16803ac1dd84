"""Bybit's endpoint table entries and per-category settings, shared by the venue's
handler modules (`ctsd.sim.bybit` and its per-concern modules).

An endpoint is a method, a path, a handler, and for signed ones a permission and a
per-UID limit (Bybit's published table; some limits differ by category).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from ctsd.sim.accounts import FeeSchedule, Permission
from ctsd.sim.bybit_wire import LINEAR, SPOT, Call
from ctsd.sim.endpoints import Handler, Route
from ctsd.sim.market import InstrumentKind
from ctsd.sim.ratelimit import RateRule


@dataclass(frozen=True, slots=True)
class UidLimit:
    """Requests per second per UID for one endpoint; some differ by category."""

    per_second: float
    by_category: Mapping[str, float] = field(default_factory=dict)

    def rule(self, category: str) -> tuple[str, RateRule]:
        """The counter's key suffix and its rule: per category only where Bybit splits."""
        if category in self.by_category:
            return category, RateRule(self.by_category[category], 1.0)
        return "", RateRule(self.per_second, 1.0)


IP_RULE = RateRule(600, 5.0)
IP_BAN_S = 600.0
"""Bybit: 600 requests per 5 s per IP, then "wait for at least 10 minutes"."""
ORDER_WRITE = UidLimit(10, {SPOT: 20})
ORDER_READ = UidLimit(50)
FEES = {SPOT: FeeSchedule(maker=Decimal("0.001"), taker=Decimal("0.001"), base_fee_on_buy=True),
        LINEAR: FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.00055")),
        "option": FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0003"))}
"""Options fees are a share of the premium here (Bybit charges on the index, capped)."""
KIND = {SPOT: InstrumentKind.SPOT, LINEAR: InstrumentKind.LINEAR}
UNSIMULATED_CATEGORIES = ("inverse",)
"""Answered with empty lists, so ccxt's default `load_markets` works (options are
`ctsd.sim.bybit_options`)."""
INTERVALS = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h",
             "120": "2h", "240": "4h", "360": "6h", "720": "12h", "D": "1d", "W": "1w"}
RECV_WINDOW_DEFAULT = "5000"
ORDER_PAGE_DEFAULT, ORDER_PAGE_MAX = 20, 50
RECENT_CLOSED_MAX = 500
"""Bybit keeps the last 500 closed orders under `/v5/order/realtime`."""


@dataclass(frozen=True, slots=True)
class Endpoint(Route):
    handler: Handler[Call]
    permission: Permission | None = None
    """None: a public endpoint (no signature, no UID limit)."""
    limit: UidLimit | None = None
