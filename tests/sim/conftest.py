"""Fixtures for simulator tests: an in-process server and ccxt clients pointed at it.

Every ccxt instance comes from `make_exchange` and is closed at teardown even when
the test fails (an unclosed aiohttp session is a warning, and warnings are errors).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest_asyncio

from ctsd.sim.accounts import DEFAULT_PERMISSIONS, AccountSpec, FeeSchedule
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig

API_KEY = "sim-key-0001"
SECRET = "sim-secret-0001"
PASSPHRASE = "sim-pass-0001"
T0 = 1_750_000_000_000
"""The simulator tests' fixed clock start: 2025-06-15 15:06:40 UTC, a Sunday."""
FEES = FeeSchedule(maker=Decimal("0.001"), taker=Decimal("0.002"))
"""The fees of an account a test builds by hand: maker 0.1 %, taker 0.2 %."""

ExchangeFactory = Callable[..., Any]


def trader_spec(**overrides: Any) -> AccountSpec:
    """A well-funded account with read and trade permissions."""
    fields: dict[str, Any] = {
        "api_key": API_KEY, "secret": SECRET, "passphrase": PASSPHRASE,
        "spot": {"USDT": Decimal("100000"), "BTC": Decimal("2"), "ETH": Decimal("20")},
        "derivatives": {"USDT": Decimal("50000")},
        "permissions": DEFAULT_PERMISSIONS,
    }
    fields.update(overrides)
    return AccountSpec(**fields)


def sim_config(**overrides: Any) -> SimulatorConfig:
    fields: dict[str, Any] = {"seed": 7, "markets": 30, "accounts": (trader_spec(),),
                              "limits": RateLimitConfig()}
    fields.update(overrides)
    return SimulatorConfig(**fields)


CLIENT_TIMEOUT_S = 10.0
"""Every test client's request timeout unless a test is about timeouts (and sets a short
one of its own, e.g. test_hung_request_is_timeout): the daemon's own. With both cores
busy the in-process simulator answered after more than 3 s, which read as the venue
timing out."""


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(sim_config()) as srv:
        yield srv


@contextlib.asynccontextmanager
async def pointed_clients() -> AsyncIterator[ExchangeFactory]:
    """`make(ccxt_class, base_url, **config)` → a ccxt or ccxt.pro client pointed at the
    simulator, every one closed on exit."""
    from ctsd.sim.ccxt_target import point_at_simulator

    created: list[Any] = []

    def make(cls: Any, base_url: str, **config: Any) -> Any:
        config.setdefault("timeout", int(CLIENT_TIMEOUT_S * 1000))
        # ccxt's client-side throttle would only slow these tests; the burst test
        # needs it off anyway to reach the server's limit.
        config.setdefault("enableRateLimit", False)
        exchange = cls(config)
        exchange.timeout_on_exit = 0  # its 250 ms grace is for TLS; loopback is plain HTTP
        created.append(exchange)
        return point_at_simulator(exchange, base_url)

    try:
        yield make
    finally:
        for exchange in created:
            await exchange.close()


@pytest_asyncio.fixture
async def make_exchange() -> AsyncIterator[ExchangeFactory]:
    """`make_exchange(ccxt_class, base_url, **config)` → a pointed, auto-closed instance."""
    async with pointed_clients() as make:
        yield make
