"""Markets are loaded once per target, shared by reference, refreshed on schedule."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from typing import Any

import pytest

from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import RateLimiter
from ctsd.sim.server import SimulatorServer
from tests.support.exchange_clients import credentials_for, exchange_sim_config, make_factory

SPOT = ConnectionTarget("binance", ApiType.SPOT)


def ccxt_of(client: ExchangeClient) -> Any:
    return client._exchange  # the test looks inside on purpose


@pytest.mark.asyncio
async def test_clients_of_a_target_share_one_load_and_the_same_dicts(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    clients = [await factory.client(SPOT, ApiCredentials(f"key-{i:04d}", "secret"))
               for i in range(8)]
    before = server.sim.snapshot()["requests"].get("binance", 0)
    counts = await asyncio.gather(*(c.load_markets() for c in clients))
    after = server.sim.snapshot()["requests"]["binance"]
    assert set(counts) == {30} and after - before == 1  # one exchangeInfo for all eight
    markets = {id(ccxt_of(c).markets) for c in clients}
    assert len(markets) == 1
    futures = await factory.client(ConnectionTarget("binance", ApiType.PERPETUAL_FUTURES))
    await futures.load_markets()
    assert "BTC/USDT:USDT" in ccxt_of(futures).markets
    assert "BTC/USDT:USDT" not in ccxt_of(clients[0]).markets
    for client in [*clients, futures]:
        await client.close()


@pytest.mark.asyncio
async def test_refresh_swaps_in_new_markets_that_clients_adopt(server: SimulatorServer) -> None:
    async with RateLimiter() as limiter, make_factory(
            server, limiter, market_refresh_s=0.1) as factory, await factory.client(
            SPOT, credentials_for("binance")) as client:
        await client.load_markets()
        first = ccxt_of(client).markets
        cache = await factory.markets(SPOT)
        async with asyncio.timeout(2):
            while cache.version < 2:  # noqa: ASYNC110 - the cache has no event to wait on
                await asyncio.sleep(0.02)
        await client.fetch_ticker("BTC/USDT")
        assert ccxt_of(client).markets is not first
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("markets")]


@pytest.mark.asyncio
async def test_prices_are_shared_for_a_few_seconds(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    one = await factory.client(SPOT, ApiCredentials("key-one-0001", "s"))
    two = await factory.client(SPOT, ApiCredentials("key-two-0002", "s"))
    first = await one.prices(["BTC", "ETH"], "USDT")
    before = server.sim.snapshot()["requests"]["binance"]
    assert await two.prices(["ETH", "BTC"], "USDT") == first
    assert server.sim.snapshot()["requests"]["binance"] == before
    await one.close()
    await two.close()


@pytest.mark.asyncio
async def test_an_extra_connection_costs_far_less_than_half_a_megabyte() -> None:
    """The memory benchmark's per-connection target, measured on ccxt's allocations."""
    async with SimulatorServer(exchange_sim_config(markets=200)) as srv, \
            RateLimiter() as limiter, make_factory(srv, limiter) as factory:
        first = await factory.client(SPOT, credentials_for("binance"))
        assert await first.load_markets() == 200
        gc.collect()
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            clients = [await factory.client(SPOT, ApiCredentials(f"key-{i:04d}", "s"))
                       for i in range(6)]
            for client in clients:
                await client.load_markets()
            gc.collect()
            end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        per_client = (end - start) / len(clients)
        assert per_client < 400_000, f"{per_client / 1e3:.0f} kB per connection"
        for client in [first, *clients]:
            await client.close()
