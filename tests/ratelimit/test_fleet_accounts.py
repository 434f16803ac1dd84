"""Per-account scopes across daemons: one key used by two daemons is counted once.

Each daemon's exchange layer (a factory and a shared limiter of its own) names an
account scope by a keyed hash of the API key; in a fleet the hash is keyed by the
fleet's scope secret (`ctsd.wiring.fleet`), so both name the key's bucket alike in
Redis and the venue's per-account limit holds for the two together.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import pytest

from ctsd.errors import ConfigurationError
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane, ScopeKey
from ctsd.ratelimit.config import FleetSettings
from ctsd.ratelimit.shared import SharedRateLimiter
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from ctsd.wiring.fleet import account_key
from tests.exchanges.test_rate_limits import scaled
from tests.ratelimit.test_shared import start_fleet
from tests.support.exchange_clients import credentials_for, exchange_sim_config, simulated

BYBIT = RateLimitConfig(scale=0.5, window_scale=0.5)


def account_scopes(limiter: SharedRateLimiter) -> set[ScopeKey]:
    return {b.key for b in limiter.buckets() if b.key.scope == "account"}


@pytest.mark.asyncio
async def test_one_bybit_key_on_two_daemons_stays_within_its_account_limits(
        redis_url: str) -> None:
    secret = os.urandom(32)
    target = ConnectionTarget("bybit", ApiType.SPOT)
    async with SimulatorServer(exchange_sim_config(limits=BYBIT)) as srv, \
            contextlib.AsyncExitStack() as stack:
        fleet = await start_fleet(redis_url, 2)
        for limiter in fleet:
            stack.push_async_callback(limiter.close)
        factories = [await stack.enter_async_context(ExchangeClientFactory(
            limiter, exchanges=simulated(srv.base_url, "bybit"), overrides=scaled(BYBIT),
            account_key=secret)) for limiter in fleet]
        clients = [await stack.enter_async_context(await factory.client(
            target, credentials_for("bybit"), lane=Lane.TEST))
            for factory in factories for _ in range(3)]
        for _ in range(2):
            await asyncio.gather(*(c.fetch_holdings() for c in clients))
        stats: dict[str, dict[str, int]] = srv.sim.snapshot()
        scopes = [account_scopes(limiter) for limiter in fleet]
        names = [{b.name for b in limiter.buckets() if b.key.scope == "account"}
                 for limiter in fleet]
    assert stats["violations"] == {}, stats["violations_by_kind"]
    assert scopes[0] and scopes[0] == scopes[1]  # one account, one name in both daemons
    assert names[0] == names[1]
    assert not any(credentials_for("bybit").api_key in name for name in names[0])
    assert any(u.waits for limiter in fleet for u in limiter.snapshot())


def test_members_sharing_a_master_key_derive_one_account_key() -> None:
    fleet = FleetSettings(redis_url="unix:///run/redis.sock")
    master = os.urandom(32)
    assert account_key(fleet, master) == account_key(fleet, master)
    assert account_key(fleet, master) != account_key(fleet, os.urandom(32))
    assert account_key(FleetSettings(), master) is None  # alone: the process draws one


def test_a_scope_secret_file_keys_the_fingerprints_and_must_be_private(
        tmp_path: Path) -> None:
    path = tmp_path / "scope-secret"
    path.write_bytes(b"a fleet's scope secret, 32 bytes")
    path.chmod(0o600)
    fleet = FleetSettings(redis_url="unix:///run/redis.sock", scope_secret_file=path)
    master = os.urandom(32)
    assert account_key(fleet, master) == account_key(fleet, os.urandom(32))  # not the master
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="others must not read it"):
        account_key(fleet, master)
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        account_key(fleet, master)
