"""The gate between ccxt and the limiter: endpoint tables, usage headers, refusals."""

from __future__ import annotations

from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest

from ctsd.errors import ConfigurationError
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.exchanges.spec import ApiType, Charge, EndpointRule, ExchangeSpec
from ctsd.exchanges.throttle import AccountScope, RequestGate, ResponseInfo, hand_over, lane
from ctsd.ratelimit import Lane, RateLimiter, RateLimitOverrides
from ctsd.sim.binance import BinanceSim
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator
from tests.support.exchange_clients import (
    ClientMaker,
    credentials_for,
    exchange_sim_config,
    make_factory,
)

REGISTRY = ExchangeRegistry.default()
ACCOUNT = AccountScope("fingerprint", "****0001")


def gate(limiter: RateLimiter, exchange: str, account: AccountScope | None = ACCOUNT,
         ) -> RequestGate:
    spec = REGISTRY.get(exchange)
    assert spec is not None
    return RequestGate(limiter, spec, RateLimitOverrides(), account=account)


def used(limiter: RateLimiter) -> dict[str, float]:
    return {u.key.limit: u.used for u in limiter.snapshot()}


@pytest.mark.parametrize("spec", REGISTRY.all(), ids=REGISTRY.ids())
def test_every_venue_table_is_complete(spec: ExchangeSpec) -> None:
    names = {limit.name for limit in spec.rate_limits}
    assert len(names) == len(spec.rate_limits)
    assert all(c.limit in names for rule in spec.endpoint_rules for c in rule.charges)
    assert spec.endpoint_rules[-1].matches("anything", "GET", "any/path")  # a catch-all
    assert spec.client is not None and set(spec.client.api_types) <= set(spec.api_types)


def test_our_binance_weights_never_undercount_the_simulated_exchange() -> None:
    """ccxt's costs, scaled by the table, against the weight each simulated endpoint charges."""
    exchange = ccxt.binance()
    spec = REGISTRY.get("binance")
    assert spec is not None
    families = {"/api/v3/": ("public", "private"), "/sapi/v1/": ("sapi",),
                "/fapi/v1/": ("fapiPublic", "fapiPrivate"), "/fapi/v2/": ("fapiPrivateV2",),
                "/fapi/v3/": ("fapiPrivateV3",), "/dapi/v1/": ("dapiPublic",),
                "/eapi/v1/": ("eapiPublic", "eapiPrivate")}
    checked = 0
    for endpoint in BinanceSim(Simulator()).endpoints():
        prefix = next(p for p in families if endpoint.path.startswith(p))
        path = endpoint.path[len(prefix):]
        for api in families[prefix]:
            config = exchange.api.get(api, {}).get(endpoint.method.lower(), {}).get(path)
            if config is None:
                continue
            # klines (and markPriceKlines) weigh by `limit`; ccxt only knows it when given,
            # and our client gives it
            bare: dict[str, Any] = {"limit": 500} if path.lower().endswith("klines") else {}
            for params in (bare, {"symbol": "BTCUSDT", "limit": 500}):
                cost = exchange.calculate_rate_limiter_cost([api], endpoint.method, path,
                                                            params, config)
                rule = spec.rule_for(api, endpoint.method, path)
                assert rule is not None
                ours = sum(c.weight(cost) for c in rule.charges if c.limit.endswith("weight"))
                theirs = endpoint.weight if isinstance(endpoint.weight, int) else (
                    endpoint.weight({k: str(v) for k, v in params.items()}))
                assert ours >= theirs, (endpoint.method, endpoint.path, params)
                checked += 1
    assert checked >= 40


@pytest.mark.asyncio
async def test_order_endpoints_force_the_order_lane_and_count_orders() -> None:
    async with RateLimiter() as limiter:
        binance = gate(limiter, "binance")
        admission = await binance.admit("private", "POST", "order", 0.2)
        assert admission.permit is not None and admission.permit.lane is Lane.ORDER
        assert used(limiter) == {"orders": 1, "request_weight": 1}
        poll = await binance.admit("public", "GET", "ticker/24hr", 0.4)
        assert poll.permit is not None and poll.permit.lane is Lane.POLL
        await binance.admit("fapiPrivateV3", "GET", "account", 1)  # ccxt says 1; it is 5
        assert used(limiter)["futures_request_weight"] == 5


@pytest.mark.asyncio
async def test_the_callers_lane_applies_where_the_endpoint_forces_none() -> None:
    async with RateLimiter() as limiter:
        okx = gate(limiter, "okx")
        for chosen in Lane:
            with lane(chosen):
                admission = await okx.admit("public", "GET", "public/time", 1)
            assert admission.permit is not None and admission.permit.lane is chosen


@pytest.mark.asyncio
async def test_clients_without_a_key_skip_account_limits() -> None:
    async with RateLimiter() as limiter:
        public = gate(limiter, "okx", account=None)
        admission = await public.admit("public", "GET", "market/ticker", 1)
        assert [c.limit for c, _ in admission.charged] == ["market_ticker"]
        assert (await public.admit("private", "GET", "account/balance", 1)).permit is None


def test_a_known_uid_keys_account_scopes_by_uid_and_shows_no_key() -> None:
    scope = AccountScope("fingerprint", "****0001", uid="5001").key("bybit", "requests")
    assert (scope.owner, scope.display, scope.scope) == ("uid:5001", "uid 5001", "account")
    assert ACCOUNT.key("bybit", "requests").owner == "key:fingerprint"


@pytest.mark.asyncio
async def test_a_gate_follows_its_key_to_the_uids_buckets_once_learned() -> None:
    spec = REGISTRY.get("bybit")
    assert spec is not None
    scopes = [ACCOUNT]
    async with RateLimiter() as limiter:
        bybit = RequestGate(limiter, spec, RateLimitOverrides(), account=lambda: scopes[-1])
        await bybit.admit("private", "GET", "v5/account/wallet-balance", 1)
        scopes.append(AccountScope("fingerprint", "****0001", uid="5001"))
        await bybit.admit("private", "GET", "v5/account/wallet-balance", 1)
        owners = {u.key.owner for u in bybit.usage() if u.key.scope == "account"}
        everywhere = {u.key.owner for u in limiter.snapshot()}
    assert owners == {"uid:5001"}  # the gate's own usage: the scopes it counts in now
    assert everywhere == {"key:fingerprint", "uid:5001", "ip"}


@pytest.mark.asyncio
async def test_the_uids_buckets_take_over_what_the_key_counted() -> None:
    spec = REGISTRY.get("okx")
    assert spec is not None
    uid = AccountScope("fingerprint", "****0001", uid="5001")
    async with RateLimiter() as limiter:
        okx = gate(limiter, "okx")
        for _ in range(3):
            await okx.admit("private", "GET", "account/balance", 1)
        hand_over(limiter, spec, RateLimitOverrides(), ACCOUNT, uid)
        taken = {u.key.limit: u.used for u in limiter.snapshot() if u.key.owner == "uid:5001"}
    assert taken == {"account_balance": 3, "requests": 3}


@pytest.mark.asyncio
async def test_missing_catch_all_rule_is_a_configuration_error() -> None:
    spec = REGISTRY.get("binance")
    assert spec is not None
    narrow = ExchangeSpec(spec.id, spec.display_name, spec.api_types, True, False,
                          spec.rate_limits, (EndpointRule((Charge("orders"),), api="x"),))
    async with RateLimiter() as limiter:
        with pytest.raises(ConfigurationError, match="no rate-limit rule matches"):
            await RequestGate(limiter, narrow, RateLimitOverrides()).admit(
                "public", "GET", "time", 1)


@pytest.mark.asyncio
async def test_bybit_ip_ban_pauses_only_the_ip_scope_for_ten_minutes() -> None:
    async with RateLimiter() as limiter:
        bybit = gate(limiter, "bybit")
        admission = await bybit.admit("private", "GET", "v5/account/wallet-balance", 1)
        bybit.after(admission, ResponseInfo(403, {}), ccxt.RateLimitExceeded("bybit 403"))
        paused = {u.key.limit: u.paused_for_s for u in limiter.snapshot()}
    assert paused["ip_requests"] == pytest.approx(600, abs=1)
    assert paused["wallet_balance"] == paused["requests"] == 0


@pytest.mark.asyncio
async def test_binance_minus_2015_is_not_taken_for_a_rate_limit() -> None:
    """ccxt raises DDoSProtection for -2015 once a key has worked; it must not pause."""
    async with RateLimiter() as limiter:
        binance = gate(limiter, "binance")
        admission = await binance.admit("private", "GET", "account", 4)
        error = ccxt.DDoSProtection('binance {"code":-2015,"msg":"Invalid API-key"}')
        binance.after(admission, ResponseInfo(401, {}), error)
        assert all(u.paused_for_s == 0 and u.rejections == 0 for u in limiter.snapshot())


@pytest.mark.asyncio
async def test_used_weight_header_reveals_traffic_we_did_not_send(
    server: SimulatorServer, make_client: ClientMaker, factory: ExchangeClientFactory,
) -> None:
    client = await make_client("binance")
    await client.load_markets()
    async with aiohttp.ClientSession() as session:  # another program on this host's IP
        for _ in range(10):
            async with session.get(f"{server.venue_url('binance')}/api/v3/exchangeInfo") as r:
                assert r.status == 200
    await client.fetch_ticker("BTC/USDT")
    usage = {u.key.limit: u for u in factory.limiter.snapshot()}["request_weight"]
    assert usage.usage_corrections == 1
    assert usage.used >= 20 + 10 * 20 + 2


@pytest.mark.asyncio
async def test_bybit_announced_limit_is_adopted() -> None:
    config: Any = exchange_sim_config(limits=RateLimitConfig(scale=0.2))
    async with SimulatorServer(config) as srv, RateLimiter() as limiter, \
            make_factory(srv, limiter) as factory:
        async with await factory.client(ConnectionTarget("bybit", ApiType.SPOT),
                                        credentials_for("bybit")) as client:
            await client.fetch_holdings()
        limits = {u.key.limit: u.limit for u in limiter.snapshot()}
    assert limits["wallet_balance"] == 10  # 50 per second, scaled by 0.2
    assert limits["query_api"] == 2
