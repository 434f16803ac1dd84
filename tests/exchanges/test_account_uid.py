"""Account limits per UID on Bybit and OKX: every key of one account shares one budget.

Against the simulator, which counts Bybit and OKX per `account.uid`: two keys of
one UID (a read key and a trade key) are each "tested" (balance, permissions,
UID), after which clients of either key draw on the UID's buckets and a burst
through both stays within the UID's limits. Binance and Kraken keep key scopes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane, RateLimiter, ScopeUsage
from ctsd.sim.server import SimulatorServer
from tests.exchanges.test_rate_limits import SCALES, scaled
from tests.sim.conftest import PASSPHRASE, SECRET, trader_spec
from tests.support.exchange_clients import credentials_for, exchange_sim_config, simulated

UID = "5001"
READ_KEY = ApiCredentials("uid-read-key-0001", SECRET, PASSPHRASE)
TRADE_KEY = ApiCredentials("uid-trade-key-0002", SECRET, PASSPHRASE)
TARGETS = {x: ConnectionTarget(x, ApiType.SPOT) for x in ("bybit", "okx")}
PROBE_LIMIT = {"bybit": "query_api", "okx": "account_config"}
"""The account limit of the endpoint that tells both permissions and UID."""


@pytest_asyncio.fixture(params=sorted(TARGETS))
async def venue(request: pytest.FixtureRequest) -> AsyncIterator[
        tuple[str, SimulatorServer, ExchangeClientFactory]]:
    exchange: str = request.param
    config = SCALES[exchange]
    accounts = tuple(trader_spec(api_key=k.api_key, uid=int(UID)) for k in (READ_KEY, TRADE_KEY))
    async with SimulatorServer(exchange_sim_config(limits=config, accounts=accounts)) as srv, \
            RateLimiter() as limiter, ExchangeClientFactory(
                limiter, exchanges=simulated(srv.base_url, exchange),
                overrides=scaled(config), timeout_s=3.0) as factory:
        yield exchange, srv, factory


async def connection_test(factory: ExchangeClientFactory, exchange: str,
                          key: ApiCredentials) -> str | None:
    """What a connection test asks of the exchange, up to the UID."""
    async with await factory.client(TARGETS[exchange], key, lane=Lane.TEST) as client:
        await client.fetch_holdings()
        await client.key_permissions()
        return await client.account_uid()


def account_owners(*clients: ExchangeClient) -> set[str]:
    return {u.key.owner for c in clients for u in c.limiter_usage() if u.key.scope == "account"}


def probe_grants(usage: list[ScopeUsage], limit: str) -> int:
    return sum(u.grants for u in usage if u.key.limit == limit)


@pytest.mark.asyncio
async def test_keys_of_one_uid_share_its_buckets_once_tested(
        venue: tuple[str, SimulatorServer, ExchangeClientFactory]) -> None:
    exchange, srv, factory = venue
    async with contextlib.AsyncExitStack() as stack:
        # An engine's client opened before any test counts per key at first ...
        early = await stack.enter_async_context(await factory.client(TARGETS[exchange], READ_KEY))
        await early.fetch_holdings()
        [owner] = account_owners(early)
        assert owner.startswith("key:")

        assert await connection_test(factory, exchange, READ_KEY) == UID
        assert await connection_test(factory, exchange, TRADE_KEY) == UID

        read, trade = [await stack.enter_async_context(
            await factory.client(TARGETS[exchange], key, lane=Lane.POLL))
            for key in (READ_KEY, TRADE_KEY)]
        await asyncio.gather(early.fetch_holdings(), read.fetch_holdings(),
                             trade.fetch_holdings())
        # ... and moves to the UID's buckets as soon as a test has learned it.
        assert account_owners(early, read, trade) == {f"uid:{UID}"}
        displays = {u.key.display for c in (read, trade) for u in c.limiter_usage()}
        assert f"uid {UID}" in displays
        assert not any(s in d for d in displays for s in (*READ_KEY.values(),
                                                           *TRADE_KEY.values()))

        await asyncio.gather(*(c.fetch_holdings() for c in (read, trade) for _ in range(12)))
        stats = srv.sim.snapshot()
    assert stats["violations"] == {}, stats["violations_by_kind"]
    assert any(u.key.owner == f"uid:{UID}" for u in factory.usage(exchange))


@pytest.mark.asyncio
async def test_permissions_and_uid_come_from_one_request(
        venue: tuple[str, SimulatorServer, ExchangeClientFactory]) -> None:
    """Bybit: the query-api answer ccxt asked for itself in the balance request; OKX: the
    account/config answer of the permissions probe."""
    exchange, _srv, factory = venue
    assert await connection_test(factory, exchange, READ_KEY) == UID
    assert probe_grants(factory.usage(exchange), PROBE_LIMIT[exchange]) == 1


@pytest.mark.asyncio
async def test_a_stored_uid_scopes_a_new_client_from_its_first_request(
        venue: tuple[str, SimulatorServer, ExchangeClientFactory]) -> None:
    exchange, _srv, factory = venue
    async with await factory.client(TARGETS[exchange], TRADE_KEY, account_uid=UID) as client:
        await client.fetch_holdings()
        assert account_owners(client) == {f"uid:{UID}"}


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", ["binance", "kraken"])
async def test_venues_counting_per_key_have_no_uid_and_keep_key_scopes(
        exchange: str, factory: ExchangeClientFactory) -> None:
    async with await factory.client(ConnectionTarget(exchange, ApiType.SPOT),
                                    credentials_for(exchange), account_uid="42") as client:
        assert await client.account_uid() is None
        await client.fetch_holdings()
        assert all(o.startswith("key:") for o in account_owners(client))
