"""Unmodified `ccxt.async_support.binance` against the simulated Binance."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.accounts import Permission
from ctsd.sim.clock import ManualClock, SystemClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET, ExchangeFactory, sim_config, trader_spec
from tests.sim.validators import (
    check_balance,
    check_market,
    check_ohlcv,
    check_order,
    check_ticker,
)

T0 = 1_750_000_000_000
SPOT: tuple[str, str, dict[str, str]] = ("spot", "BTC/USDT", {})
FUTURES = ("future", "BTC/USDT:USDT", {"defaultType": "future"})


def _binance(make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return make(ccxt.binance, server.base_url, **config)


@pytest.mark.asyncio
@pytest.mark.parametrize(("label", "symbol", "options"), [SPOT, FUTURES], ids=["spot", "future"])
async def test_full_flow_passes_ccxt_validators(
    server: SimulatorServer, make_exchange: ExchangeFactory, label: str, symbol: str,
    options: dict[str, str],
) -> None:
    ex = _binance(make_exchange, server, options=options)
    markets = await ex.load_markets()
    assert {"BTC/USDT", "BTC/USDT:USDT", "ETH/USDT"} <= set(markets)
    check_market(ex, markets[symbol])
    assert abs(await ex.fetch_time() - ex.milliseconds()) < 5000

    ticker = await ex.fetch_ticker(symbol)
    check_ticker(ex, ticker, symbol)
    assert ticker["last"] == float(server.sim.market.price(symbol, at_ms=ticker["timestamp"]))

    candles = await ex.fetch_ohlcv(symbol, "1h", limit=24)
    assert len(candles) == 24
    check_ohlcv(ex, candles, symbol)

    balance = await ex.fetch_balance()
    check_balance(ex, balance)
    assert balance["USDT"]["total"] == (100000 if label == "spot" else 50000)

    market_order = await ex.create_order(symbol, "market", "buy", 0.01)
    check_order(ex, market_order, symbol)
    assert market_order["status"] == "closed"
    assert market_order["filled"] == 0.01

    price = float(server.sim.market.price(symbol)) * 0.9
    limit = await ex.create_order(
        symbol, "limit", "buy", 0.01, ex.price_to_precision(symbol, price))
    check_order(ex, limit, symbol)
    assert limit["status"] == "open"
    open_orders = await ex.fetch_open_orders(symbol)
    assert [o["id"] for o in open_orders] == [limit["id"]]
    fetched = await ex.fetch_order(limit["id"], symbol)
    check_order(ex, fetched, symbol)
    assert fetched["status"] == "open"
    canceled = await ex.cancel_order(limit["id"], symbol)
    assert canceled["status"] == "canceled"
    assert await ex.fetch_open_orders(symbol) == []

    after = await ex.fetch_balance()
    if label == "spot":
        assert after["BTC"]["total"] == pytest.approx(2.01)
        assert after["USDT"]["total"] < 100000 - market_order["cost"]  # cost plus fee
    else:
        assert after["USDT"]["free"] < 50000


@pytest.mark.asyncio
async def test_limit_order_fills_when_price_crosses(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _binance(make_exchange, server)
    await ex.load_markets()
    server.sim.set_price("ETH/USDT", Decimal("3100"))
    order = await ex.create_order("ETH/USDT", "limit", "buy", 1, 3000)
    assert order["status"] == "open"
    before = await ex.fetch_balance()
    assert before["USDT"]["used"] > 0
    server.sim.set_price("ETH/USDT", Decimal("2900"))
    filled = await ex.fetch_order(order["id"], "ETH/USDT")
    assert filled["status"] == "closed"
    assert filled["average"] == 3000
    after = await ex.fetch_balance()
    assert after["ETH"]["total"] == 21
    assert after["USDT"]["total"] == pytest.approx(100000 - 3000 * 1.001)
    assert after["USDT"]["used"] == 0


@pytest.mark.asyncio
async def test_used_weight_header_on_every_answer(make_exchange: ExchangeFactory) -> None:
    # A frozen clock keeps both calls in one weight window (public calls need no signature).
    async with SimulatorServer(sim_config(), clock=ManualClock(T0)) as srv:
        ex = make_exchange(ccxt.binance, srv.base_url, enableLastResponseHeaders=True)
        await ex.load_markets()
        await ex.fetch_ticker("BTC/USDT")
        first = int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"])
        await ex.fetch_ticker("BTC/USDT")
        assert int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]) == first + 2


@pytest.mark.asyncio
@pytest.mark.parametrize("secret", ["wrong-secret"])
async def test_wrong_secret_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory, secret: str,
) -> None:
    ex = _binance(make_exchange, server, secret=secret)
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        await ex.fetch_balance()


@pytest.mark.asyncio
async def test_unknown_key_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _binance(make_exchange, server, apiKey="nobody")
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await ex.fetch_balance()


@pytest.mark.asyncio
async def test_ip_not_whitelisted_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    server.sim.provision(trader_spec(api_key="fenced", ip_whitelist=("10.1.2.3",)))
    ex = _binance(make_exchange, server, apiKey="fenced")
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await ex.fetch_balance()


@pytest.mark.asyncio
async def test_read_only_key_cannot_trade(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    server.sim.provision(trader_spec(api_key="reader", permissions=frozenset({Permission.READ})))
    ex = _binance(make_exchange, server, apiKey="reader")
    # No private call first: after one, ccxt reads -2015 as a temporary ban (DDoSProtection).
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        await ex.create_order("BTC/USDT", "market", "buy", 0.01, params={"test": False})


class _SkewedClock(SystemClock):
    """A server clock two minutes ahead: every client timestamp looks stale."""

    def now_ms(self) -> int:
        return super().now_ms() + 120_000


@pytest.mark.asyncio
async def test_stale_timestamp_is_invalid_nonce(make_exchange: ExchangeFactory) -> None:
    async with SimulatorServer(sim_config(), clock=_SkewedClock()) as srv:
        ex = _binance(make_exchange, srv)
        with pytest.raises(ccxt.InvalidNonce, match="-1021"):
            await ex.fetch_balance()


@pytest.mark.asyncio
@pytest.mark.parametrize(("symbol", "amount", "code"), [
    ("BTC/USDT", 10, "insufficient balance"), ("BTC/USDT:USDT", 100, "-2019"),
], ids=["spot", "future"])
async def test_insufficient_funds(
    server: SimulatorServer, make_exchange: ExchangeFactory, symbol: str, amount: float,
    code: str,
) -> None:
    ex = _binance(make_exchange, server)
    with pytest.raises(ccxt.InsufficientFunds, match=code):
        await ex.create_order(symbol, "market", "buy", amount)


@pytest.mark.asyncio
async def test_weight_burst_gets_429_then_418(make_exchange: ExchangeFactory) -> None:
    config = sim_config(limits=RateLimitConfig(scale=0.02))  # 24 weight/min on spot
    async with SimulatorServer(config, clock=ManualClock(T0)) as srv:  # one window throughout
        ex = make_exchange(ccxt.binance, srv.base_url)
        with pytest.raises(ccxt.DDoSProtection, match=r"429.*-1003"):  # ccxt: 418/429 → DDoS
            for _ in range(20):  # weight 2 each: the 13th is over
                await ex.publicGetTicker24hr({"symbol": "BTCUSDT"})
        with pytest.raises(ccxt.DDoSProtection, match=r"418.*banned"):
            await ex.publicGetTicker24hr({"symbol": "BTCUSDT"})
        with pytest.raises(ccxt.DDoSProtection, match="418"):
            await ex.publicGetTime()
        stats: Any = srv.sim.snapshot()
        assert stats["violations"]["binance"] == 3


_FAULTS = [
    (FaultSpec(FaultKind.RATE_LIMIT), ccxt.DDoSProtection),
    (FaultSpec(FaultKind.SERVER_ERROR, status=502), ccxt.ExchangeNotAvailable),
    (FaultSpec(FaultKind.HTML_503), ccxt.ExchangeNotAvailable),
    (FaultSpec(FaultKind.MAINTENANCE), ccxt.OnMaintenance),
    (FaultSpec(FaultKind.HANG, delay_s=5), ccxt.RequestTimeout),
    # aiohttp retries an idempotent request once after a reset, as it would in production
    (FaultSpec(FaultKind.CONNECTION_RESET, count=2), ccxt.NetworkError),
    (FaultSpec(FaultKind.INVALID_KEY, path_prefix="/api/v3/account"), ccxt.AuthenticationError),
    (FaultSpec(FaultKind.IP_NOT_WHITELISTED, path_prefix="/api/v3/account"),
     ccxt.AuthenticationError),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "expected"), _FAULTS, ids=[f.kind.value for f, _ in _FAULTS])
async def test_fault_raises_what_ccxt_raises_in_production(
    server: SimulatorServer, make_exchange: ExchangeFactory, fault: FaultSpec,
    expected: type[Exception],
) -> None:
    ex = _binance(make_exchange, server, timeout=300)
    await ex.load_markets()
    server.sim.add_fault(fault)
    with pytest.raises(expected):
        await ex.fetch_balance()
    assert server.sim.faults.pending() == []
    await ex.fetch_balance()  # the fault was consumed; the next call works


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", [FaultKind.MALFORMED_JSON, FaultKind.TRUNCATED_JSON])
async def test_broken_json_is_not_detected_by_ccxt(
    server: SimulatorServer, make_exchange: ExchangeFactory, kind: FaultKind,
) -> None:
    """ccxt 4.5.90 raises nothing on a 200 whose body is not JSON: it hands the raw text
    to the parser, which yields empty fields. Callers must validate; we pin the behaviour."""
    ex = _binance(make_exchange, server)
    await ex.load_markets()
    server.sim.add_fault(FaultSpec(kind))
    ticker = await ex.fetch_ticker("BTC/USDT")
    assert ticker["last"] is None
    assert ticker["timestamp"] is None


@pytest.mark.asyncio
async def test_latency_delays_but_answers(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _binance(make_exchange, server)
    server.sim.add_fault(FaultSpec(FaultKind.LATENCY, delay_s=0.3))
    started = time.monotonic()
    assert await ex.fetch_time() > 0
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_same_seed_gives_identical_candles(make_exchange: ExchangeFactory) -> None:
    results = []
    for seed in (11, 11, 12):
        clock = ManualClock(T0)
        async with SimulatorServer(sim_config(seed=seed), clock=clock) as srv:
            ex = make_exchange(ccxt.binance, srv.base_url)
            results.append(await ex.fetch_ohlcv("SOL/USDT", "15m", limit=50))
    assert results[0] == results[1]
    assert results[0] != results[2]
