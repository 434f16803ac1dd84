"""An in-process simulator, and a client factory pointed at it for every venue (fixtures).

Real ccxt classes over real HTTP: nothing of ccxt is mocked. Every client is
closed at teardown, then the factory and the limiter, even when a test fails
(an unclosed aiohttp session is a warning, and warnings are errors).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest_asyncio

from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.settings import ExchangeSettings
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane, LimitOverride, RateLimiter, RateLimitOverrides
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from tests.sim.conftest import (
    API_KEY,
    CLIENT_TIMEOUT_S,
    PASSPHRASE,
    SECRET,
    sim_config,
    trader_spec,
)

VENUES = ("binance", "bybit", "okx", "kraken")
CREDENTIALS = ApiCredentials(API_KEY, SECRET, PASSPHRASE)
KRAKEN_CREDENTIALS = ApiCredentials(
    "sim-kraken-key-0001", base64.b64encode(b"sim-kraken-secret".ljust(64, b".")).decode())
"""Kraken secrets are base64 (ccxt decodes them before signing); SECRET is not."""


def credentials_for(exchange: str) -> ApiCredentials:
    return KRAKEN_CREDENTIALS if exchange == "kraken" else CREDENTIALS


def exchange_sim_config(**overrides: Any) -> SimulatorConfig:
    """The simulator's default account, plus a Kraken one with a base64 secret."""
    kraken = trader_spec(api_key=KRAKEN_CREDENTIALS.api_key, secret=KRAKEN_CREDENTIALS.secret)
    overrides.setdefault("accounts", (trader_spec(), kraken))
    return sim_config(**overrides)


@dataclass(frozen=True)
class Market:
    """One tradable market of a venue, as the conformance tests use it."""

    exchange: str
    api_type: ApiType
    symbol: str
    amount: str
    """An order size the venue accepts, in base units (the client turns it into OKX's
    contracts of 0.01 BTC)."""

    @property
    def id(self) -> str:
        return f"{self.exchange}-{self.api_type.value}"


MARKETS = (
    Market("binance", ApiType.SPOT, "BTC/USDT", "0.01"),
    Market("binance", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", "0.01"),
    Market("bybit", ApiType.SPOT, "BTC/USDT", "0.01"),
    Market("bybit", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", "0.01"),
    Market("okx", ApiType.SPOT, "BTC/USDT", "0.01"),
    Market("okx", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", "0.01"),
    Market("kraken", ApiType.SPOT, "BTC/USDT", "0.01"),
)

ClientMaker = Callable[..., Awaitable[ExchangeClient]]


TEST_OVERRIDES = RateLimitOverrides(
    limits={("kraken", "public_requests"): LimitOverride(limit=50)})
"""Kraken's public budget (1/s) would make these tests slow; the simulator does not count it."""


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(exchange_sim_config()) as srv:
        yield srv


def simulated(simulator_url: str, *exchanges: str) -> dict[str, ExchangeSettings]:
    """`[exchanges.<id>]` settings sending each of `exchanges` to the simulator."""
    return {x: ExchangeSettings.at_simulator(simulator_url, x) for x in exchanges}


def make_factory(server: SimulatorServer, limiter: RateLimiter, **kwargs: Any,
                 ) -> ExchangeClientFactory:
    kwargs.setdefault("timeout_s", CLIENT_TIMEOUT_S)
    return ExchangeClientFactory(
        limiter, exchanges=simulated(server.base_url, *VENUES), **kwargs)


@pytest_asyncio.fixture
async def factory(server: SimulatorServer) -> AsyncIterator[ExchangeClientFactory]:
    async with RateLimiter() as limiter, make_factory(server, limiter,
                                                      overrides=TEST_OVERRIDES) as built:
        yield built


@pytest_asyncio.fixture
async def make_client(factory: ExchangeClientFactory) -> AsyncIterator[ClientMaker]:
    """`await make_client(exchange, api_type, credentials=...)` → auto-closed client.

    Credentials default to the venue's simulated account; pass None for a public client.
    """
    opened: list[ExchangeClient] = []

    async def make(exchange: str, api_type: ApiType = ApiType.SPOT,
                   credentials: ApiCredentials | str | None = "default",
                   lane: Lane = Lane.TEST) -> ExchangeClient:
        creds = credentials_for(exchange) if credentials == "default" else credentials
        assert not isinstance(creds, str)
        client = await factory.client(ConnectionTarget(exchange, api_type), creds, lane=lane)
        opened.append(client)
        return client

    try:
        yield make
    finally:
        for client in opened:
            await client.close()
