"""The venue-independent core: market path, accounts, limits, faults, admin, CLI, ccxt URLs."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt.async_support as ccxt
import pytest

from ctsd.sim import matching
from ctsd.sim.accounts import AccountSpec, OrderStatus, OrderType, Rejection, RejectKind, Side
from ctsd.sim.ccxt_target import point_at_simulator
from ctsd.sim.cli import main as sim_main
from ctsd.sim.clock import ManualClock
from ctsd.sim.faults import FaultInjector, FaultKind, FaultSpec
from ctsd.sim.market import TIMEFRAMES, InstrumentKind, Market, MarketCatalog
from ctsd.sim.matching import OrderRequest
from ctsd.sim.ratelimit import (
    BanList,
    DecayingCounter,
    FixedWindowLimiter,
    RateLimitConfig,
    RateRule,
)
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator
from tests.sim.conftest import API_KEY, FEES, T0, sim_config


def _market(seed: int = 3, count: int = 50) -> Market:
    return Market(MarketCatalog(seed, count), ManualClock(T0))


# --- market -------------------------------------------------------------------------


def test_catalog_has_known_head_generated_tail_and_both_kinds() -> None:
    catalog = MarketCatalog(1, 2000)
    assert len(catalog.of_kind(InstrumentKind.SPOT)) == 2000
    assert len(catalog.of_kind(InstrumentKind.LINEAR)) == 2000
    btc = catalog.instruments["BTC/USDT"]
    assert btc.tick_size == Decimal("0.1") and btc.step_size == Decimal("0.00001")
    assert catalog.instruments["BTC/USDT:USDT"].settle == "USDT"
    assert "QAAA/USDT" in catalog.instruments
    assert len(set(catalog.assets)) == 2001


def test_same_seed_same_prices_and_candles_other_seed_differs() -> None:
    a, b, c = _market(5), _market(5), _market(6)
    tf = TIMEFRAMES["5m"]
    assert a.candles("ETH/USDT", tf, limit=100) == b.candles("ETH/USDT", tf, limit=100)
    assert a.price("QAAB/USDT") == b.price("QAAB/USDT")
    assert a.candles("ETH/USDT", tf, limit=100) != c.candles("ETH/USDT", tf, limit=100)


def test_candles_are_consistent_and_end_at_the_current_price() -> None:
    market = _market()
    tf = TIMEFRAMES["1h"]
    candles = market.candles("BTC/USDT", tf, limit=48)
    assert len(candles) == 48
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in candles)
    assert all(b.open_ms - a.open_ms == tf.ms for a, b in itertools.pairwise(candles))
    assert candles[-1].open_ms <= market.now_ms() < candles[-1].open_ms + tf.ms
    assert candles[-1].close == market.price("BTC/USDT")
    since = market.candles("BTC/USDT", tf, start_ms=candles[10].open_ms, limit=5)
    assert since == candles[10:15]


def test_weekly_candles_open_on_monday() -> None:
    candle = _market().candles("BTC/USDT", TIMEFRAMES["1w"], limit=1)[0]
    assert (candle.open_ms // 86_400_000 + 3) % 7 == 0  # 1970-01-01 was a Thursday


def test_set_price_and_advance() -> None:
    market = _market()
    market.set_price("BTC/USDT:USDT", Decimal("50000"))
    assert market.price("BTC/USDT") == Decimal("50000.0")  # spot and perp share a path
    before = market.price("ETH/USDT")
    market.advance(3600)
    assert market.price("ETH/USDT") != before
    market.reset()
    assert market.price("ETH/USDT") == before


def test_ticker_is_internally_consistent() -> None:
    t = _market().ticker("SOL/USDT")
    assert t.low <= t.last <= t.high and t.low <= t.open <= t.high
    assert t.low <= t.vwap <= t.high
    assert t.bid < t.ask


# --- accounts and matching -----------------------------------------------------------


def _sim() -> Simulator:
    sim = Simulator(sim_config(), ManualClock(T0))
    sim.market.set_price("BTC/USDT", Decimal("60000"))
    return sim


def test_spot_market_buy_moves_balances_with_fee() -> None:
    sim = _sim()
    acct = sim.accounts.get(API_KEY)
    assert acct is not None
    order = sim.place_order(acct, OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET,
                                               Decimal("0.5")), FEES)
    # a market buy pays the best ask, one tick over the last price
    assert order.status is OrderStatus.FILLED and order.cost == Decimal("30000.05")
    assert acct.spot["BTC"].free == Decimal("2.5")
    assert acct.spot["USDT"].free == Decimal("100000") - Decimal("30000.05") * Decimal("1.002")
    assert acct.spot["USDT"].locked == 0


def test_spot_limit_rests_holds_funds_and_fills_on_cross() -> None:
    sim = _sim()
    acct = sim.accounts.get(API_KEY)
    assert acct is not None
    order = sim.place_order(acct, OrderRequest("BTC/USDT", Side.SELL, OrderType.LIMIT,
                                               Decimal("1"), Decimal("61000")), FEES)
    assert order.status.is_open and acct.spot["BTC"].locked == 1
    sim.set_price("BTC/USDT", Decimal("61500"))
    assert order.status is OrderStatus.FILLED and order.average == Decimal("61000")
    assert acct.spot["USDT"].free == Decimal("100000") + Decimal("61000") * Decimal("0.999")


def test_rejections_carry_the_reason() -> None:
    sim = _sim()
    acct = sim.accounts.get(API_KEY)
    assert acct is not None
    cases = [
        (OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("100")),
         RejectKind.INSUFFICIENT_FUNDS),
        (OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.000001")),
         RejectKind.LOT_SIZE),
        (OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"),
                      Decimal("100.05")), RejectKind.PRICE_FILTER),
        (OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET, Decimal("0.00005")),
         RejectKind.MIN_NOTIONAL),
        (OrderRequest("NOPE/USDT", Side.BUY, OrderType.MARKET, Decimal("1")),
         RejectKind.UNKNOWN_SYMBOL),
    ]
    for request, kind in cases:
        with pytest.raises(Rejection) as caught:
            sim.place_order(acct, request, FEES)
        assert caught.value.kind is kind
    assert acct.spot["USDT"].locked == 0 and acct.orders == {}


def test_perpetual_margin_position_and_pnl() -> None:
    sim = _sim()
    acct = sim.accounts.get(API_KEY)
    assert acct is not None
    sim.place_order(acct, OrderRequest("BTC/USDT:USDT", Side.BUY, OrderType.MARKET,
                                       Decimal("1")), FEES)
    pos = acct.perp.position("BTC/USDT:USDT")
    assert pos is not None and pos.qty == 1 and pos.entry_price == Decimal("60000.1")  # ask
    (bal,) = matching.derivatives_balances(acct, sim.market)
    assert bal.position_margin == Decimal("6000")  # 10x leverage, at the mark (the last)
    sim.set_price("BTC/USDT", Decimal("61000"))
    sim.place_order(acct, OrderRequest("BTC/USDT:USDT", Side.SELL, OrderType.MARKET,
                                       Decimal("1"), reduce_only=True), FEES)
    assert pos.qty == 0 and acct.perp.position("BTC/USDT:USDT") is None
    fees = Decimal("60000.1") * Decimal("0.002") + Decimal("61000") * Decimal("0.002")
    assert acct.derivatives["USDT"] == Decimal("50000") + Decimal("999.9") - fees
    buy, sell = acct.fills
    assert (buy.realized_pnl, sell.realized_pnl) == (Decimal(0), Decimal("999.9"))
    assert not sell.maker
    with pytest.raises(Rejection) as caught:
        sim.place_order(acct, OrderRequest("BTC/USDT:USDT", Side.BUY, OrderType.MARKET,
                                           Decimal("10")), FEES)
    assert caught.value.kind is RejectKind.INSUFFICIENT_FUNDS


def test_cancel_releases_and_reset_restores() -> None:
    sim = _sim()
    acct = sim.accounts.get(API_KEY)
    assert acct is not None
    order = sim.place_order(acct, OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT,
                                               Decimal("1"), Decimal("50000")), FEES)
    sim.cancel_order(acct, order)
    assert order.status is OrderStatus.CANCELED and acct.spot["USDT"].locked == 0
    with pytest.raises(Rejection):
        sim.cancel_order(acct, order)
    sim.reset()
    fresh = sim.accounts.get(API_KEY)
    assert fresh is not None and fresh.orders == {} and fresh.spot["USDT"].free == 100000


def test_account_spec_from_json() -> None:
    spec = AccountSpec.from_json({
        "api_key": "k", "secret": "s", "passphrase": "p", "permissions": ["read"],
        "ip_whitelist": ["127.0.0.1"], "balances": {"spot": {"USDT": "5"}},
    })
    assert spec.spot == {"USDT": Decimal("5")} and spec.passphrase == "p"
    assert [p.value for p in spec.permissions] == ["read"]


# --- rate limits ------------------------------------------------------------------------


def test_fixed_window_limits_and_resets_per_window() -> None:
    clock = ManualClock(T0)
    limiter = FixedWindowLimiter(clock, RateLimitConfig(scale=0.01))
    rule = RateRule(1000, 60)  # scaled to 10 per minute
    verdicts = [limiter.charge("ip", 3, rule) for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert verdicts[-1].used == 9 and verdicts[-1].limit == 10
    assert 1 <= verdicts[-1].retry_after_s <= 60
    clock.advance(verdicts[-1].retry_after_s)
    assert limiter.charge("ip", 3, rule).used == 3
    assert limiter.charge("other", 10, rule).allowed


def test_decaying_counter_drains() -> None:
    clock = ManualClock(T0)
    counter = DecayingCounter(clock, RateLimitConfig())
    rule = RateRule(15, 45)  # Kraken starter tier: max 15, -1 every 3 s
    assert all(counter.charge("uid", 1, rule).allowed for _ in range(15))
    refused = counter.charge("uid", 1, rule)
    assert not refused.allowed and refused.retry_after_s == 3
    clock.advance(3)
    assert counter.charge("uid", 1, rule).allowed


def test_ban_doubles_and_scales() -> None:
    clock = ManualClock(T0)
    bans = BanList(clock, RateLimitConfig(window_scale=0.5))
    assert bans.ban("ip", 120, 1000) == 60
    assert bans.ban("ip", 120, 1000) == 120
    assert bans.banned_for("ip") == 120
    clock.advance(121)
    assert bans.banned_for("ip") == 0


# --- faults -------------------------------------------------------------------------------


def test_fault_injector_counts_and_filters() -> None:
    faults = FaultInjector()
    faults.add(FaultSpec(FaultKind.HTML_503, count=2, venue="binance", path_prefix="/fapi/"))
    kinds = frozenset(FaultKind)
    assert faults.take("bybit", "/fapi/v1/time", kinds) is None
    assert faults.take("binance", "/api/v3/time", kinds) is None
    assert faults.take("binance", "/fapi/v1/time", kinds) is not None
    assert faults.pending()[0].count == 1
    assert faults.take("binance", "/fapi/v1/time", frozenset({FaultKind.HANG})) is None
    assert faults.take("binance", "/fapi/v1/time", kinds) is not None
    assert faults.pending() == []
    faults.add(FaultSpec(FaultKind.LATENCY, path_prefix="/api/v5/trade/order", method="POST"))
    assert faults.take("okx", "/api/v5/trade/order", kinds, method="GET") is None
    assert faults.take("okx", "/api/v5/trade/order", kinds) is None  # a WebSocket's data
    assert faults.take("okx", "/api/v5/trade/order", kinds, method="POST") is not None


# --- admin over HTTP ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_admin_api(server: SimulatorServer) -> None:
    base = f"{server.base_url}/admin"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/accounts", json={
            "api_key": "new", "secret": "s", "balances": {"spot": {"USDT": "10"}},
        }) as resp:
            assert resp.status == 201
        async with http.post(f"{base}/price", json={"symbol": "ETH/USDT", "price": "1234.5"}):
            pass
        async with http.get(f"{base}/price", params={"symbol": "ETH/USDT"}) as resp:
            assert (await resp.json())["price"] == "1234.50"
        async with http.post(f"{base}/faults", json={"kind": "html_503", "venue": "binance"}):
            pass
        async with http.get(f"{server.base_url}/binance/api/v3/time") as resp:
            assert resp.status == 503 and "text/html" in resp.headers["Content-Type"]
        async with http.get(f"{server.base_url}/binance/api/v3/time") as resp:
            assert resp.status == 200
        async with http.post(f"{base}/advance", json={"seconds": 60}):
            pass
        async with http.get(f"{base}/stats") as resp:
            stats = await resp.json()
            assert stats["requests"]["binance"] == 2 and stats["violations"] == {}
        async with http.get(f"{base}/accounts/new") as resp:
            assert (await resp.json())["spot"]["USDT"]["free"] == "10"
        async with http.post(f"{base}/faults", json={"kind": "nonsense"}) as resp:
            assert resp.status == 400
        async with http.post(f"{base}/reset"):
            pass
        async with http.get(f"{base}/stats") as resp:
            assert (await resp.json())["requests"] == {}


# --- ccxt target -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_point_at_simulator_rewrites_every_url_and_restores_error_map() -> None:
    ex = ccxt.binance()
    ex.timeout_on_exit = 0
    try:
        point_at_simulator(ex, "http://127.0.0.1:9/")
        urls = ex.urls["api"]
        assert urls["public"] == "http://127.0.0.1:9/binance/api/v3"
        assert urls["fapiPrivateV3"] == "http://127.0.0.1:9/binance/fapi/v3"
        assert urls["sapi"] == "http://127.0.0.1:9/binance/sapi/v1"
        assert "test" not in ex.urls and "demo" not in ex.urls
        exact = ex.get_exceptions_by_url("http://127.0.0.1:9/binance/fapi/v1/order", "exact")
        assert exact["-2019"] is ccxt.InsufficientFunds
        assert ex.get_exceptions_by_url("http://127.0.0.1:9/binance/api/v3/order", "exact") \
            == ex.exceptions["spot"]["exact"]
        with pytest.raises(ccxt.NotSupported):
            ex.set_sandbox_mode(True)  # no test URLs left to switch to
    finally:
        await ex.close()


def test_point_at_simulator_refuses_unknown_exchange() -> None:
    class Fake:
        id = "nowhere"

    with pytest.raises(ValueError, match="nowhere"):
        point_at_simulator(Fake(), "http://127.0.0.1:1")


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_refuses_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["--port", "0", "--host", "0.0.0.0"]) == 2
    assert "non-loopback" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    accounts = tmp_path / "accounts.json"
    accounts.write_text(json.dumps({"accounts": [{"api_key": "cli", "secret": "s"}]}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ctsd.sim", "--port", "0", "--seed", "3", "--markets", "5",
        "--accounts", str(accounts), stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        base = line.split()[4]
        async with aiohttp.ClientSession() as http, http.get(f"{base}/admin/accounts/cli") as r:
            body: Any = await r.json()
            assert r.status == 200 and body["orders"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
