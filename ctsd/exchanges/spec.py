"""What an exchange is, as plain frozen data.

Venue modules (`ctsd/exchanges/<venue>/`) declare one `ExchangeSpec` each; no
code here talks to an exchange, so describing exchanges never imports ccxt.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    """One request budget: `limit` units per `interval_s`, shared per `scope`."""

    name: str
    scope: RateLimitScope
    limit: float
    interval_s: float
    weighted: bool = False


@dataclass(frozen=True)
class ExchangeSpec:
    """The capabilities and default limits of one supported exchange."""

    id: str
    display_name: str
    api_types: tuple[ApiType, ...]
    testnet_supported: bool
    passphrase_required: bool
    rate_limits: tuple[RateLimitSpec, ...]

    def offers(self, api_type: ApiType) -> bool:
        return api_type in self.api_types
