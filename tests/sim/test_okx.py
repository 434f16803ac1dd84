"""Unmodified `ccxt.async_support.okx` against the simulated OKX."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest

from ctsd.sim.accounts import Permission
from ctsd.sim.clock import ManualClock, SystemClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import (
    API_KEY,
    PASSPHRASE,
    SECRET,
    ExchangeFactory,
    sim_config,
    trader_spec,
)
from tests.sim.validators import (
    check_balance,
    check_market,
    check_ohlcv,
    check_order,
    check_ticker,
)

T0 = 1_750_000_000_000
SPOT: tuple[str, str, dict[str, str], float] = ("spot", "BTC/USDT", {}, 0.01)
SWAP = ("swap", "BTC/USDT:USDT", {"defaultType": "swap"}, 1.0)  # 1 contract = 0.01 BTC


def _okx(make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    config.setdefault("password", PASSPHRASE)
    return make(ccxt.okx, server.base_url, **config)


@pytest.mark.asyncio
@pytest.mark.parametrize(("label", "symbol", "options", "amount"), [SPOT, SWAP],
                         ids=["spot", "swap"])
async def test_full_flow_passes_ccxt_validators(
    server: SimulatorServer, make_exchange: ExchangeFactory, label: str, symbol: str,
    options: dict[str, str], amount: float,
) -> None:
    ex = _okx(make_exchange, server, options=options)
    markets = await ex.load_markets()
    assert {"BTC/USDT", "BTC/USDT:USDT", "ETH/USDT"} <= set(markets)
    check_market(ex, markets[symbol])
    assert ex.currencies["BTC"]["id"] == "BTC"  # asset/currencies, signed, in load_markets
    assert abs(await ex.fetch_time() - ex.milliseconds()) < 5000

    ticker = await ex.fetch_ticker(symbol)
    check_ticker(ex, ticker, symbol)
    assert ticker["last"] == float(server.sim.market.price(symbol, at_ms=ticker["timestamp"]))

    candles = await ex.fetch_ohlcv(symbol, "1h", limit=24)
    assert len(candles) == 24
    check_ohlcv(ex, candles, symbol)
    since = candles[0][0]
    assert await ex.fetch_ohlcv(symbol, "1h", since=since, limit=3) == candles[:3]

    balance = await ex.fetch_balance()
    check_balance(ex, balance)
    assert balance["USDT"]["total"] == 150000  # one trading account: spot 100k + swap 50k

    market_order = await ex.create_order(symbol, "market", "buy", amount)
    check_order(ex, market_order, symbol)
    filled = await ex.fetch_order(market_order["id"], symbol)
    check_order(ex, filled, symbol)
    assert (filled["status"], filled["filled"], filled["amount"]) == ("closed", amount, amount)
    assert filled["fee"]["cost"] > 0

    price = float(server.sim.market.price(symbol)) * 0.9
    limit = await ex.create_order(
        symbol, "limit", "buy", amount, ex.price_to_precision(symbol, price))
    check_order(ex, limit, symbol)
    open_orders = await ex.fetch_open_orders(symbol)
    assert [o["id"] for o in open_orders] == [limit["id"]]
    fetched = await ex.fetch_order(limit["id"], symbol)
    check_order(ex, fetched, symbol)
    assert (fetched["status"], fetched["filled"]) == ("open", 0)
    canceled = await ex.cancel_order(limit["id"], symbol)
    assert canceled["id"] == limit["id"]
    assert (await ex.fetch_order(limit["id"], symbol))["status"] == "canceled"
    assert await ex.fetch_open_orders(symbol) == []

    after = await ex.fetch_balance()
    if label == "spot":
        assert after["BTC"]["total"] == pytest.approx(2.01)
    else:
        position = server.sim.accounts.get(API_KEY)
        assert position is not None
        assert position.positions["BTC/USDT:USDT"].qty == Decimal("0.01")
    assert after["USDT"]["total"] < 150000


@pytest.mark.asyncio
async def test_limit_order_fills_when_price_crosses(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    server.sim.set_price("ETH/USDT", Decimal("3100"))
    order = await ex.create_order("ETH/USDT", "limit", "buy", 1, 3000)
    assert (await ex.fetch_balance())["USDT"]["used"] > 0
    server.sim.set_price("ETH/USDT", Decimal("2900"))
    filled = await ex.fetch_order(order["id"], "ETH/USDT")
    assert (filled["status"], filled["average"]) == ("closed", 3000)
    after = await ex.fetch_balance()
    assert after["ETH"]["total"] == 21
    assert after["USDT"]["total"] == pytest.approx(150000 - 3000 * 1.0008)  # maker fee
    assert after["USDT"]["used"] == 0


@pytest.mark.asyncio
async def test_market_buy_by_cost_and_batch_of_two(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    order = await ex.create_market_buy_order_with_cost("ETH/USDT", 100)
    fetched = await ex.fetch_order(order["id"], "ETH/USDT")
    assert (fetched["status"], fetched["cost"], fetched["info"]["tgtCcy"]) == (
        "closed", 100, "quote_ccy")
    price = float(server.sim.market.price("ETH/USDT"))
    orders = await ex.create_orders([
        {"symbol": "ETH/USDT", "type": "limit", "side": "buy", "amount": 0.1,
         "price": ex.price_to_precision("ETH/USDT", price * 0.8)},
        {"symbol": "ETH/USDT", "type": "limit", "side": "buy", "amount": 1000,
         "price": ex.price_to_precision("ETH/USDT", price * 0.8)},
    ])  # code "2": one placed, one refused for funds; ccxt raises nothing
    assert [o["status"] for o in orders] == [None, "rejected"]
    assert orders[1]["info"]["sCode"] == "51008"


@pytest.mark.asyncio
async def test_wrong_secret_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server, secret="wrong-secret")
    with pytest.raises(ccxt.AuthenticationError, match="50113"):
        await ex.fetch_balance()  # load_markets' asset/currencies is the first signed call


@pytest.mark.asyncio
async def test_wrong_passphrase_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server, password="wrong-passphrase")
    with pytest.raises(ccxt.AuthenticationError, match="50105"):
        await ex.fetch_balance()


@pytest.mark.asyncio
async def test_unknown_key_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server, apiKey="nobody")
    with pytest.raises(ccxt.AuthenticationError, match="50111"):
        await ex.fetch_balance()


@pytest.mark.asyncio
async def test_ip_not_whitelisted_is_permission_denied(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    server.sim.provision(trader_spec(api_key="fenced", ip_whitelist=("10.1.2.3",)))
    ex = _okx(make_exchange, server, apiKey="fenced")
    with pytest.raises(ccxt.PermissionDenied, match="50110"):  # an AuthenticationError
        await ex.fetch_balance()


@pytest.mark.asyncio
async def test_read_only_key_cannot_trade(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    """50120 is missing from ccxt 4.5.90's OKX map: production raises a bare ExchangeError."""
    server.sim.provision(trader_spec(api_key="reader", permissions=frozenset({Permission.READ})))
    ex = _okx(make_exchange, server, apiKey="reader")
    await ex.fetch_balance()
    with pytest.raises(ccxt.ExchangeError, match="50120") as raised:
        await ex.create_order("BTC/USDT", "market", "buy", 0.01)
    assert type(raised.value) is ccxt.ExchangeError


class _SkewedClock(SystemClock):
    """A server clock two minutes ahead: every client timestamp looks stale."""

    def now_ms(self) -> int:
        return super().now_ms() + 120_000


@pytest.mark.asyncio
async def test_stale_timestamp_is_invalid_nonce(make_exchange: ExchangeFactory) -> None:
    async with SimulatorServer(sim_config(), clock=_SkewedClock()) as srv:
        ex = _okx(make_exchange, srv)
        with pytest.raises(ccxt.InvalidNonce, match="50102"):
            await ex.fetch_balance()


@pytest.mark.asyncio
@pytest.mark.parametrize(("symbol", "side", "amount", "message"), [
    ("BTC/USDT", "buy", 10, "Insufficient USDT balance"),
    ("BTC/USDT", "sell", 3, "Insufficient BTC balance"),
    ("BTC/USDT:USDT", "buy", 10000, "Insufficient USDT margin"),
], ids=["spot-buy", "spot-sell", "swap"])
async def test_insufficient_funds_from_the_order_scode(
    server: SimulatorServer, make_exchange: ExchangeFactory, symbol: str, side: str,
    amount: float, message: str,
) -> None:
    ex = _okx(make_exchange, server)
    with pytest.raises(ccxt.InsufficientFunds, match=f'"code":"1".*51008.*{message}'):
        await ex.create_order(symbol, "market", side, amount)


@pytest.mark.asyncio
async def test_order_errors_map_to_ccxt_classes(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    with pytest.raises(ccxt.OrderNotFound, match="51603"):
        await ex.fetch_order("999", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound, match="51400"):
        await ex.cancel_order("999", "BTC/USDT")
    with pytest.raises(ccxt.InvalidOrder, match="51121"):  # 1.0005 contracts: off the lot
        await ex.privatePostTradeOrder({"instId": "BTC-USDT-SWAP", "tdMode": "cross",
                                        "side": "buy", "ordType": "market", "sz": "1.0005"})
    with pytest.raises(ccxt.BadSymbol, match="51001"):
        await ex.publicGetMarketTicker({"instId": "NOPE-USDT"})


class _OneWindowClock(SystemClock):
    """Wall-clock time for signatures, but rate-limit windows that never roll over."""

    def monotonic(self) -> float:
        return 0.0


@pytest.mark.asyncio
async def test_burst_over_the_scaled_limit_is_rate_limit_exceeded(
    make_exchange: ExchangeFactory,
) -> None:
    config = sim_config(limits=RateLimitConfig(scale=0.1))  # ticker 2 / 2 s, balance 1 / 2 s
    async with SimulatorServer(config, clock=_OneWindowClock()) as srv:
        ex = _okx(make_exchange, srv)
        await ex.load_markets()
        await ex.fetch_balance()
        with pytest.raises(ccxt.RateLimitExceeded, match="50011"):
            await ex.fetch_balance()
        for _ in range(2):
            await ex.publicGetMarketTicker({"instId": "BTC-USDT"})
        with pytest.raises(ccxt.RateLimitExceeded, match="50011"):
            await ex.publicGetMarketTicker({"instId": "ETH-USDT"})  # per IP, not per instrument
        stats: Any = srv.sim.snapshot()
        assert stats["violations_by_kind"] == {
            "okx:GET account/balance": 1, "okx:GET market/ticker": 1}


@pytest.mark.asyncio
async def test_batch_orders_count_per_order_and_instrument(
    make_exchange: ExchangeFactory,
) -> None:
    config = sim_config(limits=RateLimitConfig(scale=0.01))  # batch 3 orders / 2 s per instId
    async with SimulatorServer(config, clock=_OneWindowClock()) as srv:
        ex = _okx(make_exchange, srv)
        order = {"instId": "ETH-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit",
                 "px": "100", "sz": "0.1"}
        # ccxt's sign() adds a clOrdId to each entry in place: pass copies
        placed = await ex.privatePostTradeBatchOrders([dict(order) for _ in range(3)])
        assert [o["sCode"] for o in placed["data"]] == ["0", "0", "0"]
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.privatePostTradeBatchOrders([dict(order) for _ in range(2)])
        sol = dict(order, instId="SOL-USDT", px="10", sz="1")
        other = await ex.privatePostTradeBatchOrders([dict(sol) for _ in range(2)])
        assert other["code"] == "0"


_FAULTS = [
    (FaultSpec(FaultKind.RATE_LIMIT), ccxt.RateLimitExceeded),
    (FaultSpec(FaultKind.SERVER_ERROR, status=502), ccxt.ExchangeNotAvailable),
    (FaultSpec(FaultKind.HTML_503), ccxt.ExchangeNotAvailable),
    (FaultSpec(FaultKind.MAINTENANCE), ccxt.OnMaintenance),
    (FaultSpec(FaultKind.HANG, delay_s=5), ccxt.RequestTimeout),
    # aiohttp retries an idempotent request once after a reset, as it would in production
    (FaultSpec(FaultKind.CONNECTION_RESET, count=2), ccxt.NetworkError),
    (FaultSpec(FaultKind.INVALID_KEY, path_prefix="/api/v5/account"), ccxt.AuthenticationError),
    (FaultSpec(FaultKind.IP_NOT_WHITELISTED, path_prefix="/api/v5/account"),
     ccxt.PermissionDenied),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "expected"), _FAULTS, ids=[f.kind.value for f, _ in _FAULTS])
async def test_fault_raises_what_ccxt_raises_in_production(
    server: SimulatorServer, make_exchange: ExchangeFactory, fault: FaultSpec,
    expected: type[Exception],
) -> None:
    ex = _okx(make_exchange, server, timeout=300)
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
    """ccxt 4.5.90 raises nothing on a 200 whose body is not JSON (see test_binance)."""
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    server.sim.add_fault(FaultSpec(kind))
    ticker = await ex.fetch_ticker("BTC/USDT")
    assert (ticker["last"], ticker["timestamp"]) == (None, None)


@pytest.mark.asyncio
async def test_latency_delays_but_answers(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    server.sim.add_fault(FaultSpec(FaultKind.LATENCY, delay_s=0.3))
    started = time.monotonic()
    assert await ex.fetch_time() > 0
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_same_seed_gives_identical_candles(make_exchange: ExchangeFactory) -> None:
    results = []
    for seed in (11, 11, 12):
        async with SimulatorServer(sim_config(seed=seed), clock=ManualClock(T0)) as srv:
            ex = make_exchange(ccxt.okx, srv.base_url)
            await ex.load_markets()
            results.append(await ex.fetch_ohlcv("SOL/USDT:USDT", "15m", limit=50))
    assert results[0] == results[1]
    assert results[0] != results[2]


def _signed_headers(path: str, body: str = "", **override: str) -> dict[str, str]:
    """OKX's scheme by hand, so single headers can be dropped or spoiled."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    sign = base64.b64encode(hmac.new(SECRET.encode(), f"{stamp}GET{path}{body}".encode(),
                                     hashlib.sha256).digest()).decode()
    headers = {"OK-ACCESS-KEY": API_KEY, "OK-ACCESS-SIGN": sign, "OK-ACCESS-TIMESTAMP": stamp,
               "OK-ACCESS-PASSPHRASE": PASSPHRASE}
    headers.update(override)
    return {k: v for k, v in headers.items() if v}


@pytest.mark.asyncio
@pytest.mark.parametrize(("override", "code"), [
    ({}, "0"),
    ({"OK-ACCESS-KEY": ""}, "50103"),
    ({"OK-ACCESS-PASSPHRASE": ""}, "50104"),
    ({"OK-ACCESS-SIGN": ""}, "50106"),
    ({"OK-ACCESS-TIMESTAMP": ""}, "50107"),
    ({"OK-ACCESS-TIMESTAMP": "1750000000"}, "50112"),
], ids=["valid", "no-key", "no-passphrase", "no-sign", "no-timestamp", "epoch-timestamp"])
async def test_header_checks_answer_okx_codes(
    server: SimulatorServer, override: dict[str, str], code: str,
) -> None:
    path = "/api/v5/account/balance?ccy=BTC"
    async with aiohttp.ClientSession() as session, session.get(
            f"{server.base_url}/okx{path}", headers=_signed_headers(path, **override)) as resp:
        body = await resp.json()
    assert (resp.status, body["code"]) == ((200, code) if code == "0" else (401, code))
    if code == "0":
        assert [d["ccy"] for d in body["data"][0]["details"]] == ["BTC"]
