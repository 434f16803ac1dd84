"""What an exchange is, as plain frozen data.

Venue modules (`ctsd/exchanges/<venue>/`) declare one `ExchangeSpec` each; no
code here talks to an exchange, so describing exchanges never imports ccxt.
Besides what `ListExchanges` shows (api types, limits), a spec carries the
tables the generic client reads: which limits each ccxt endpoint counts
against and with what weight (`EndpointRule`), which usage headers report
them, and the venue's ccxt profile (`ctsd.exchanges.profile.ClientProfile`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ctsd.ratelimit.model import Lane

if TYPE_CHECKING:
    from ctsd.exchanges.profile import ClientProfile


class ApiType(enum.Enum):
    """The market a connection trades on."""

    SPOT = "spot"
    MARGIN = "margin"
    PERPETUAL_FUTURES = "perpetual_futures"
    OPTIONS = "options"


class RateLimitScope(enum.Enum):
    """Who shares a bucket: the exchange counts per source IP or per account."""

    IP = "ip"
    ACCOUNT = "account"


@dataclass(frozen=True)
class RateLimitSpec:
    """One request budget: `limit` units per `interval_s`, shared per `scope`.

    `decaying`: the exchange keeps a counter capped at `limit` that drains
    `limit / interval_s` per second (Kraken) instead of counting per window.
    """

    name: str
    scope: RateLimitScope
    limit: float
    interval_s: float
    weighted: bool = False
    decaying: bool = False


@dataclass(frozen=True)
class UsageHeader:
    """Response headers in which the exchange reports its count of one limit."""

    used: str | None = None
    """Units used in the current window (Binance `X-MBX-USED-WEIGHT-1M`)."""
    remaining: str | None = None
    """Units left in the current window (Bybit `X-Bapi-Limit-Status`)."""
    limit: str | None = None
    """The limit the exchange applies (Bybit `X-Bapi-Limit`); a lower one is adopted."""


@dataclass(frozen=True)
class Charge:
    """What one request costs against one of the exchange's limits.

    With `per_cost`, the weight is ccxt's cost for the endpoint times
    `per_cost` (ccxt normalises every API family of an exchange to one
    budget; e.g. Binance spot costs are weight / 5), else `units`.
    """

    limit: str
    per_cost: float | None = None
    units: float = 1.0
    usage: UsageHeader | None = None

    def weight(self, cost: float) -> float:
        if self.per_cost is None:
            return self.units
        return round(cost * self.per_cost, 6)


@dataclass(frozen=True)
class EndpointRule:
    """Matches ccxt requests by api family, method and path; first match wins.

    Patterns are exact, or prefixes when they end with `*` (`"fapi*"`, `"*"`).
    `lane` forces a lane (orders and cancels) whatever the caller asked for.
    """

    charges: tuple[Charge, ...]
    api: str = "*"
    method: str = "*"
    path: str = "*"
    lane: Lane | None = None

    def matches(self, api: str, method: str, path: str) -> bool:
        return (_match(self.api, api) and _match(self.method, method.upper())
                and _match(self.path, path))


def _match(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


@dataclass(frozen=True)
class ApiTypeSupport:
    """What works on one api type of an exchange: what `ListExchanges` promises and what
    `StartEngine` holds to. `tests/api/test_exchange_list.py` proves every promise against
    the simulator, and fails when the list promises what it does not test."""

    api_type: ApiType
    key_test: bool = True
    paper: bool = False
    live: bool = False
    streams: bool = False
    note: str = ""
    """What does not work yet, or works differently; empty when all of the above do."""


@dataclass(frozen=True)
class ExchangeSpec:
    """The capabilities, default limits and client profile of one supported exchange."""

    id: str
    display_name: str
    api_types: tuple[ApiType, ...]
    testnet_supported: bool
    passphrase_required: bool
    rate_limits: tuple[RateLimitSpec, ...]
    endpoint_rules: tuple[EndpointRule, ...] = ()
    client: ClientProfile | None = None
    secret_is_base64: bool = False
    """The exchange hands out API secrets in base64 (Kraken): one that does not decode
    was copied wrong, and is refused when given rather than failing every request."""
    support: tuple[ApiTypeSupport, ...] = ()
    """What works on each of `api_types` (an api type without an entry: nothing)."""

    def offers(self, api_type: ApiType) -> bool:
        return api_type in self.api_types

    def support_of(self, api_type: ApiType) -> ApiTypeSupport:
        found = next((s for s in self.support if s.api_type is api_type), None)
        if found is None or not self.offers(api_type):
            return ApiTypeSupport(api_type, key_test=False,
                                  note=f"{self.display_name} does not offer {api_type.value}")
        return found

    def rate_limit(self, name: str) -> RateLimitSpec:
        for spec in self.rate_limits:
            if spec.name == name:
                return spec
        raise KeyError(f"{self.id} declares no rate limit {name!r}")

    def rule_for(self, api: str, method: str, path: str) -> EndpointRule | None:
        return next((r for r in self.endpoint_rules if r.matches(api, method, path)), None)
