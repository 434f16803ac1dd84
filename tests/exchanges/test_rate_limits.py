"""The limiter against the simulator's violation counter: many connections, zero violations.

The simulator's limits are scaled down (and its windows shortened) so a few
hundred requests hit them within seconds; the limiter gets the same scaled
numbers through `RateLimitOverrides`, as an operator would configure a tier.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import pytest

from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane, LimitOverride, RateLimiter, RateLimitOverrides
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import trader_spec
from tests.support.exchange_clients import VENUES, credentials_for, exchange_sim_config, simulated


def scaled(config: RateLimitConfig, **extra: LimitOverride) -> RateLimitOverrides:
    """Every exchange limit scaled as the simulator scales it."""
    limits = {}
    for spec in ExchangeRegistry.default().all():
        for limit in spec.rate_limits:
            limits[(spec.id, limit.name)] = LimitOverride(
                limit=max(1, math.floor(limit.limit * config.scale)),
                interval_s=limit.interval_s * config.window_scale)
    return RateLimitOverrides(limits=limits)


@pytest.mark.asyncio
async def test_many_binance_connections_never_exceed_the_ip_weight() -> None:
    config = RateLimitConfig(scale=0.2, window_scale=1 / 60)  # 240 weight per second
    keys = [f"binance-key-{i:03d}" for i in range(20)]
    accounts = tuple(trader_spec(api_key=k) for k in keys)
    async with SimulatorServer(exchange_sim_config(limits=config, accounts=accounts)) as srv, \
            RateLimiter() as limiter, ExchangeClientFactory(
                limiter, exchanges=simulated(srv.base_url, "binance"),
                overrides=scaled(config)) as factory, contextlib.AsyncExitStack() as stack:
        target = ConnectionTarget("binance", ApiType.SPOT)
        clients = [await stack.enter_async_context(await factory.client(
            target, ApiCredentials(k, "sim-secret-0001"), lane=Lane.TEST)) for k in keys]

        async def work(index: int) -> None:
            for _ in range(3):
                await clients[index].fetch_ticker("BTC/USDT")  # weight 2
            if index % 2:
                await clients[index].fetch_holdings()  # weight 20

        started = time.monotonic()
        await asyncio.gather(*(work(i) for i in range(len(clients))))
        elapsed = time.monotonic() - started
        stats: dict[str, dict[str, int]] = srv.sim.snapshot()
        usage = {u.key.limit: u for u in limiter.snapshot()}
    assert stats["violations"] == {}
    weight = usage["request_weight"]
    assert weight.waits > 0 and weight.rejections == 0  # the limiter did the holding back
    total = 20 + 20 * 3 * 2 + 10 * 20  # exchangeInfo, tickers, balances
    assert elapsed >= (total - 240) / 240  # no faster than the exchange allows
    assert elapsed < 2.5 * total / (240 * 0.9)  # and not needlessly slow


SCALES = {  # short windows keep each run near a second
    "bybit": RateLimitConfig(scale=0.5, window_scale=0.5),
    "okx": RateLimitConfig(scale=0.5, window_scale=0.15),
    "kraken": RateLimitConfig(scale=0.5, window_scale=0.01),
}


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", [v for v in VENUES if v != "binance"])
async def test_one_key_on_many_connections_stays_within_account_limits(exchange: str) -> None:
    """Bybit and OKX count per UID and endpoint group, Kraken a decaying counter per key
    (and refuses nonces out of order: the key's requests are sequenced)."""
    config = SCALES[exchange]
    async with SimulatorServer(exchange_sim_config(limits=config)) as srv, \
            RateLimiter() as limiter, ExchangeClientFactory(
                limiter, exchanges=simulated(srv.base_url, exchange),
                overrides=scaled(config)) as factory, contextlib.AsyncExitStack() as stack:
        target = ConnectionTarget(exchange, ApiType.SPOT)
        clients = [await stack.enter_async_context(
            await factory.client(target, credentials_for(exchange))) for _ in range(6)]
        await asyncio.gather(*(c.fetch_holdings() for c in clients))
        await asyncio.gather(*(c.fetch_open_orders("BTC/USDT") for c in clients))
        await asyncio.gather(*(c.fetch_holdings() for c in clients))
        stats: dict[str, dict[str, int]] = srv.sim.snapshot()
    assert stats["violations"] == {}, stats["violations_by_kind"]
    assert any(u.waits for u in limiter.snapshot())


@pytest.mark.asyncio
async def test_a_wait_for_budget_is_no_part_of_the_clock_measurement() -> None:
    """The time request waits a whole window for budget: the skew and round trip measured
    are the network's, not the queue's (a 1 s wait read as a 0.5 s clock skew before)."""
    one_window = RateLimitOverrides(
        safety_margin=1.0, limits={("binance", "request_weight"): LimitOverride(21, 1.0)})
    async with SimulatorServer(exchange_sim_config()) as srv, RateLimiter() as limiter, \
            ExchangeClientFactory(limiter, exchanges=simulated(srv.base_url, "binance"),
                                  overrides=one_window) as factory:
        client = await factory.client(ConnectionTarget("binance", ApiType.SPOT),
                                      credentials_for("binance"))
        async with client:
            await client.server_time()  # with the markets (20), the budget of this window
            waited = client.limiter_wait_s()
            clock = await client.server_time()
            assert client.limiter_wait_s() - waited > 0.5
    assert abs(clock.skew_ms) < 250 and clock.round_trip_ms < 250
