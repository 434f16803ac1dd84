"""Unmodified `ccxt.async_support.kraken` against the simulated Kraken."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any, ClassVar

import ccxt.async_support as ccxt
import pytest
import pytest_asyncio
from ccxt.test.exchange.base.test_market import test_market as ccxt_test_market

from ctsd.sim.clock import ManualClock
from ctsd.sim.faults import FaultKind
from ctsd.sim.kraken import api_sign
from ctsd.sim.market import TIMEFRAMES
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from tests.sim.conformance import (
    Credential,
    CredentialErrors,
    Expect,
    VenueConformance,
    venue_faults,
)
from tests.sim.conftest import API_KEY, T0, ExchangeFactory, sim_config, trader_spec
from tests.sim.validators import check_market, check_order, read_checked

KRAKEN_SECRET = base64.b64encode(b"sim-kraken-secret-0001".ljust(64, b".")).decode()
"""Kraken secrets are base64 (ccxt decodes them before signing); the shared SECRET is not."""


def _config(**overrides: Any) -> SimulatorConfig:
    return sim_config(accounts=(trader_spec(secret=KRAKEN_SECRET),), **overrides)


@pytest_asyncio.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(_config()) as srv:
        yield srv


def _kraken(make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", KRAKEN_SECRET)
    return make(ccxt.kraken, server.base_url, **config)


def _check_fetched_order(ex: Any, order: dict[str, Any], symbol: str) -> None:
    """ccxt 4.5.90's kraken parser leaves `fee.cost` a string and turns QueryOrders' trade
    ids into bare stubs; ccxt's own validator rejects both against the real Kraken too.
    Pin the first quirk (callers must convert), then validate everything else."""
    assert isinstance(order["fee"]["cost"], str)
    check_order(ex, {**order, "fee": None, "trades": []}, symbol)


@pytest.mark.asyncio
async def test_full_flow_passes_ccxt_validators(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _kraken(make_exchange, server)
    symbol = "BTC/USDT"
    markets = await ex.load_markets()
    assert {"BTC/USDT", "ETH/USDT", "SOL/USDT", "DOGE/USDT"} <= set(markets)
    check_market(ex, markets["SOL/USDT"])
    # ccxt's kraken sets baseId to the unified code ("BTC"), not the asset id ("XXBT"):
    # the one check ccxt's own test config skips for Kraken's X/Z-prefixed assets.
    ccxt_test_market(ex, {"currencyIdAndCode": True}, "loadMarkets", markets[symbol])
    ticker, _, balance = await read_checked(ex, symbol)
    assert ticker["timestamp"] is None  # Kraken's ticker carries no time
    assert balance["USDT"]["total"] == 100000
    assert balance["BTC"]["total"] == 2

    market_order = await ex.create_order(symbol, "market", "buy", 0.01)
    check_order(ex, market_order, symbol)
    assert market_order["status"] is None  # AddOrder answers only txid and description
    filled = await ex.fetch_order(market_order["id"])
    _check_fetched_order(ex, filled, symbol)
    assert (filled["status"], filled["filled"]) == ("closed", 0.01)
    assert filled["fee"]["currency"] == "USDT"

    price = float(server.sim.market.price(symbol)) * 0.9
    limit = await ex.create_order(
        symbol, "limit", "buy", 0.01, ex.price_to_precision(symbol, price))
    check_order(ex, limit, symbol)
    open_orders = await ex.fetch_open_orders(symbol)
    assert [o["id"] for o in open_orders] == [limit["id"]]
    _check_fetched_order(ex, open_orders[0], symbol)
    assert open_orders[0]["status"] == "open"
    canceled = await ex.cancel_order(limit["id"], symbol)
    assert canceled["info"]["result"] == {"count": 1}  # ccxt builds no order from CancelOrder
    assert (await ex.fetch_order(limit["id"]))["status"] == "canceled"
    assert await ex.fetch_open_orders(symbol) == []
    closed = await ex.fetch_closed_orders(symbol)
    assert [o["id"] for o in closed] == [filled["id"], limit["id"]]  # oldest first in ccxt

    after = await ex.fetch_balance()
    assert after["BTC"]["total"] == pytest.approx(2.01)
    assert after["USDT"]["total"] == pytest.approx(100000 - filled["cost"] * 1.004)
    assert after["USDT"]["used"] == 0


@pytest.mark.asyncio
async def test_kraken_names_reach_ccxt_as_unified_codes(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _kraken(make_exchange, server)
    markets = await ex.load_markets()
    btc, doge = markets["BTC/USDT"], markets["DOGE/USDT"]
    assert (btc["id"], btc["info"]["wsname"]) == ("XBTUSDT", "XBT/USDT")
    assert (btc["baseId"], btc["info"]["base"]) == ("BTC", "XXBT")
    assert (doge["id"], doge["info"]["base"]) == ("XDGUSDT", "XXDG")
    assert ex.currencies["BTC"]["id"] == "XXBT"
    assert (btc["precision"]["price"], btc["limits"]["amount"]["min"]) == (0.1, 0.00001)
    raw = await ex.privatePostBalance()
    assert raw["result"]["XXBT"] == "2.0000000000"
    assert (await ex.publicGetTicker({"pair": "XBTUSDT"}))["result"].keys() == {"XBTUSDT"}


@pytest.mark.asyncio
async def test_market_buy_by_cost_uses_viqc(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _kraken(make_exchange, server)
    server.sim.set_price("SOL/USDT", Decimal("150"))
    order = await ex.create_market_buy_order_with_cost("SOL/USDT", 300)
    assert order["cost"] == 300  # ccxt reads the quote volume back from the description
    fetched = await ex.fetch_order(order["id"])
    assert fetched["cost"] == pytest.approx(300, abs=0.01 * 150)  # whole lots, rounded down


def test_api_sign_matches_krakens_published_example() -> None:
    """The worked example of Kraken's authentication guide."""
    secret = ("kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6"
              "F1huXg==")
    body = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    assert api_sign(secret, "/0/private/AddOrder", "1616492376594", body) == (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==")
    assert api_sign("not base64!", "/0/private/AddOrder", "1", "nonce=1") is None


@pytest.mark.asyncio
async def test_reused_or_lower_nonce_is_invalid_nonce(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    first = _kraken(make_exchange, server)
    await first.fetch_balance()
    last = first.options["lastNonce"]
    # A second process on the same key: ccxt's incrementing nonce is per instance.
    replay = _kraken(
        make_exchange, server, options={"timeDifference": 10**9, "lastNonce": last - 1})
    with pytest.raises(ccxt.InvalidNonce, match="EAPI:Invalid nonce"):
        await replay.fetch_balance()  # sends exactly `last`
    behind = _kraken(make_exchange, server, options={"timeDifference": 60_000})
    with pytest.raises(ccxt.InvalidNonce, match="EAPI:Invalid nonce"):
        await behind.fetch_balance()
    await first.fetch_balance()  # the key still works for the process that is ahead


@pytest.mark.asyncio
@pytest.mark.parametrize(("amount", "expected", "message"), [
    (10, ccxt.InsufficientFunds, "EOrder:Insufficient funds"),
    (0.000001, ccxt.InvalidOrder, "EOrder:Order minimum not met"),
], ids=["insufficient", "below-ordermin"])
async def test_order_rejections(
    server: SimulatorServer, make_exchange: ExchangeFactory, amount: float,
    expected: type[Exception], message: str,
) -> None:
    ex = _kraken(make_exchange, server)
    await ex.load_markets()
    with pytest.raises(expected, match=message):
        await ex.privatePostAddOrder(
            {"pair": "XBTUSDT", "type": "buy", "ordertype": "market", "volume": str(amount)})


@pytest.mark.asyncio
async def test_unknown_orders_are_order_not_found(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _kraken(make_exchange, server)
    with pytest.raises(ccxt.OrderNotFound, match="EOrder:Unknown order"):
        await ex.cancel_order("OQCLML-BW3P3-BUCMWZ")
    with pytest.raises(ccxt.OrderNotFound):
        await ex.fetch_order("OQCLML-BW3P3-BUCMWZ")


@pytest.mark.asyncio
async def test_call_counter_burst_is_ddos_protection(make_exchange: ExchangeFactory) -> None:
    config = _config(limits=RateLimitConfig(scale=0.2))  # the Starter counter: 15 → 3
    clock = ManualClock(T0)  # no decay unless the test moves time
    async with SimulatorServer(config, clock=clock) as srv:
        ex = _kraken(make_exchange, srv)
        await ex.load_markets()  # public calls are not counted
        for _ in range(3):
            await ex.fetch_balance()
        with pytest.raises(ccxt.DDoSProtection, match="EAPI:Rate limit exceeded") as info:
            await ex.fetch_balance()
        # the exact-match table wins over the broad ':Rate limit exceeded' → RateLimitExceeded
        assert type(info.value) is ccxt.DDoSProtection
        await ex.create_order("BTC/USDT", "market", "buy", 0.001)  # the trading counter's
        clock.advance(16)  # 3 points drain in 45 s: one is back after 15
        await ex.fetch_balance()
        stats: Any = srv.sim.snapshot()
        assert stats["violations_by_kind"] == {"kraken:api_counter": 1}


@pytest.mark.asyncio
async def test_trading_counter_burst_is_ddos_protection(make_exchange: ExchangeFactory) -> None:
    config = _config(limits=RateLimitConfig(scale=0.1))  # trading counter: 60 → 6
    async with SimulatorServer(config, clock=ManualClock(T0)) as srv:
        ex = _kraken(make_exchange, srv)
        await ex.load_markets()
        srv.sim.set_price("ETH/USDT", Decimal("3100"))
        ids = [(await ex.create_order("ETH/USDT", "limit", "buy", 0.01, 3000))["id"]
               for _ in range(6)]
        with pytest.raises(ccxt.DDoSProtection, match="EOrder:Rate limit exceeded"):
            await ex.create_order("ETH/USDT", "limit", "buy", 0.01, 3000)
        await ex.create_order("SOL/USDT", "market", "buy", 1)  # counted per pair
        with pytest.raises(ccxt.DDoSProtection, match="EOrder:Rate limit exceeded"):
            await ex.cancel_order(ids[0])  # a fresh order's cancel costs 8 points
        stats: Any = srv.sim.snapshot()
        assert stats["violations_by_kind"] == {"kraken:trading_counter": 2}


@pytest.mark.asyncio
async def test_ohlc_since_and_fixed_depth(make_exchange: ExchangeFactory) -> None:
    async with SimulatorServer(_config(), clock=ManualClock(T0)) as srv:
        ex = _kraken(make_exchange, srv)
        since = T0 - 10 * 3_600_000 - T0 % 3_600_000
        candles = await ex.fetch_ohlcv("BTC/USDT", "1h", since=since)
        assert [c[0] for c in candles] == [since + i * 3_600_000 for i in range(11)]
        everything = await ex.publicGetOHLC({"pair": "XBTUSDT", "interval": 1})
        assert len(everything["result"]["XBTUSDT"]) == 720  # Kraken's fixed depth


class TestConformance(VenueConformance):
    exchange_class = ccxt.kraken
    private_path = "/0/private/BalanceEx"
    fault_errors = venue_faults(
        rate_limit=ccxt.DDoSProtection,  # exactly: not RateLimitExceeded
        maintenance=ccxt.ExchangeNotAvailable,  # exactly: not OnMaintenance
        ip_not_whitelisted=ccxt.PermissionDenied,
    )
    reset_count = 1  # balances are read by POST: aiohttp never retries
    credential_errors: ClassVar[CredentialErrors] = {
        # Kraken answers `EAPI:Invalid signature`, which ccxt 4.5.90's kraken error table
        # does not list: production raises a plain ExchangeError, not AuthenticationError.
        # Pinned so the daemon's error translation has to deal with it.
        Credential.WRONG_SECRET: Expect(ccxt.ExchangeError, "EAPI:Invalid signature",
                                        exact=True),
        Credential.UNKNOWN_KEY: Expect(ccxt.AuthenticationError, "EAPI:Invalid key"),
        Credential.IP_NOT_WHITELISTED: Expect(ccxt.PermissionDenied,
                                              "EGeneral:Permission denied"),
        Credential.READ_ONLY_TRADE: Expect(ccxt.PermissionDenied, "EGeneral:Permission denied"),
        # No timestamp: Kraken checks nonces (test_reused_or_lower_nonce_is_invalid_nonce).
    }
    wrong_secret = base64.b64encode(b"wrong" * 13).decode()
    account_overrides: ClassVar[Mapping[str, Any]] = {"secret": KRAKEN_SECRET}

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _kraken(make, server, **config)

    maker_fee = 0.0025
    taker_fee = 0.004
    buy_fee_in_base = False
    book_limits = (1, 100, 500)
    book_timestamped = False

    async def place_stop_loss(self, ex: Any, symbol: str, amount: float, stop: float) -> Any:
        """As Freqtrade does: `stopLossPrice` on a limit order (stop-loss-limit)."""
        return await ex.create_order(symbol, "limit", "sell", amount, stop * 0.99,
                                     {"stopLossPrice": stop})

    async def place_resting_buy(self, ex: Any) -> Any:
        return await ex.create_order("ETH/USDT", "limit", "buy", 1, 3000, {"clientOrderId": "c-1"})

    async def fetch_filled(self, ex: Any, order: Any) -> Any:
        filled = await ex.fetch_order(order["id"])
        assert filled["clientOrderId"] == "c-1"
        return filled

    def config(self, **overrides: Any) -> SimulatorConfig:
        return _config(**overrides)

    def check_fault_error(self, kind: FaultKind, raised: pytest.ExceptionInfo[Exception]) -> None:
        if kind in (FaultKind.RATE_LIMIT, FaultKind.MAINTENANCE):
            assert type(raised.value) is self.fault_errors[kind]


@pytest.mark.asyncio
async def test_trades_since_pages_without_overlap_into_the_candles(
    make_exchange: ExchangeFactory,
) -> None:
    """Freqtrade's only history on Kraken: `Trades` paged by the nanosecond `last`, then
    resampled; the minutes it builds are the simulator's own one-minute candles."""
    async with SimulatorServer(_config(), clock=ManualClock(T0)) as srv:
        ex = make_exchange(ccxt.kraken, srv.base_url)
        start_s = T0 // 1000 - 3600
        first = await ex.public_get_trades({"pair": "ETHUSDT", "since": str(start_s),
                                            "count": "100"})
        rows = first["result"]["ETHUSDT"]
        assert len(rows) == 100 and rows[0][2] >= start_s
        second = await ex.public_get_trades({"pair": "ETHUSDT", "since": first["result"]["last"],
                                             "count": "1000"})
        more = second["result"]["ETHUSDT"]
        assert more[0][6] == rows[-1][6] + 1  # strictly after `last`: no overlap, no gap
        trades = rows + more
        by_minute: dict[int, list[Any]] = {}
        for price, volume, time_s, *_ in trades:
            by_minute.setdefault(int(time_s) // 60 * 60_000, []).append(
                (Decimal(price), Decimal(volume)))
        # the first minute is cut by `since`, the last by `count`
        candles = srv.sim.market.candles("ETH/USDT", TIMEFRAMES["1m"],
                                         start_ms=min(by_minute) + 60_000,
                                         limit=len(by_minute) - 2)
        assert len(candles) > 50
        for candle in candles:
            prices = [p for p, _ in by_minute[candle.open_ms]]
            assert (candle.open, candle.high, candle.low, candle.close) == (
                prices[0], max(prices), min(prices), prices[-1])
            assert candle.volume == sum(v for _, v in by_minute[candle.open_ms])


@pytest.mark.asyncio
async def test_own_trades_history_query_and_fee_tier(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _kraken(make_exchange, server)
    await ex.load_markets()
    buy = await ex.create_order("ETH/USDT", "market", "buy", 1)
    sell = await ex.create_order("ETH/USDT", "market", "sell", 1)
    history = (await ex.private_post_tradeshistory())["result"]
    assert history["count"] == 2
    newest, oldest = history["trades"].values()
    assert (oldest["ordertxid"], newest["ordertxid"]) == (buy["id"], sell["id"])
    assert oldest["fee"] == f"{Decimal(oldest['cost']) * Decimal('0.004'):.5f}"
    queried = await ex.private_post_querytrades({"txid": ",".join(history["trades"])})
    assert queried["result"] == history["trades"]
    order = await ex.fetch_order(buy["id"], "ETH/USDT", {"trades": True})
    assert order["trades"][0]["id"] == list(history["trades"])[1]
    fee = await ex.fetch_trading_fee("ETH/USDT")
    assert (fee["maker"], fee["taker"]) == (0.0025, 0.004)


@pytest.mark.asyncio
async def test_a_stop_loss_already_passed_fires_at_once_as_kraken_does(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _kraken(make_exchange, server)
    await ex.load_markets()
    server.sim.set_price("ETH/USDT", Decimal(3000))
    fired = await ex.create_order("ETH/USDT", "market", "sell", 1, None,
                                  {"stopLossPrice": 3100})
    order = await ex.fetch_order(fired["id"], "ETH/USDT")
    assert (order["status"], order["average"], order["stopLossPrice"]) == ("closed", 3000, 3100)
    waiting = await ex.create_order("ETH/USDT", "market", "sell", 1, None,
                                    {"stopLossPrice": 2900})
    (pending,) = await ex.fetch_open_orders("ETH/USDT")
    assert pending["id"] == waiting["id"] and pending["info"]["descr"]["ordertype"] == "stop-loss"
    server.sim.set_price("ETH/USDT", Decimal(2890))
    done = await ex.fetch_order(waiting["id"], "ETH/USDT")
    assert (done["status"], done["average"]) == ("closed", 2890)
