"""Unmodified `ccxt.async_support.okx` against the simulated OKX."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import aiohttp
import ccxt.async_support as ccxt
import pytest

from ctsd.sim import tiers
from ctsd.sim.clock import ManualClock, SystemClock
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from tests.sim.conformance import (
    Credential,
    CredentialErrors,
    Expect,
    VenueConformance,
    venue_faults,
)
from tests.sim.conftest import (
    API_KEY,
    PASSPHRASE,
    SECRET,
    T0,
    ExchangeFactory,
    sim_config,
)
from tests.sim.derivatives_conformance import DerivativesConformance
from tests.sim.validators import check_market, check_order, read_checked

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
    ticker, candles, balance = await read_checked(ex, symbol)
    assert ticker["last"] == float(server.sim.market.price(symbol, at_ms=ticker["timestamp"]))
    since = candles[0][0]
    assert await ex.fetch_ohlcv(symbol, "1h", since=since, limit=3) == candles[:3]
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
        assert after["BTC"]["total"] == pytest.approx(2.01 - 0.01 * 0.001)  # fee in BTC
    else:
        position = server.sim.accounts.get(API_KEY)
        assert position is not None
        assert position.perp.net_qty("BTC/USDT:USDT") == Decimal("0.01")
    assert after["USDT"]["total"] < 150000


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
async def test_wrong_passphrase_is_authentication_error(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server, password="wrong-passphrase")
    with pytest.raises(ccxt.AuthenticationError, match="50105"):
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


class TestConformance(VenueConformance):
    exchange_class = ccxt.okx
    private_path = "/api/v5/account"
    fault_errors = venue_faults(
        rate_limit=ccxt.RateLimitExceeded,
        maintenance=ccxt.OnMaintenance,
        ip_not_whitelisted=ccxt.PermissionDenied,
    )
    credential_errors: ClassVar[CredentialErrors] = {
        # fetch_balance: load_markets' asset/currencies is the first signed call
        Credential.WRONG_SECRET: Expect(ccxt.AuthenticationError, "50113"),
        Credential.UNKNOWN_KEY: Expect(ccxt.AuthenticationError, "50111"),
        Credential.IP_NOT_WHITELISTED: Expect(ccxt.PermissionDenied, "50110"),  # an AuthError
        # 50120 is missing from ccxt 4.5.90's OKX map: production raises a bare ExchangeError.
        Credential.READ_ONLY_TRADE: Expect(ccxt.ExchangeError, "50120", exact=True),
        Credential.STALE_TIMESTAMP: Expect(ccxt.InvalidNonce, "50102"),
    }
    blank_on_broken_json = ("last", "timestamp")
    seeded_symbol = "SOL/USDT:USDT"
    quote_total = 150_000  # one trading account: spot and swap wallet together
    maker_fee = 0.0008
    taker_fee = 0.001
    book_limits = (1, 100, 400)

    async def place_stop_loss(self, ex: Any, symbol: str, amount: float, stop: float) -> Any:
        """As Freqtrade does: an algo order (`conditional`) with `stopLossPrice`."""
        return await ex.create_order(symbol, "limit", "sell", amount, stop * 0.99,
                                     {"stopLossPrice": stop})

    async def fetch_stop(self, ex: Any, order: Any, symbol: str) -> Any:
        return await ex.fetch_order(order["id"], symbol, {"stop": True})

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _okx(make, server, **config)


M = 60_000
NOW = T0 // M * M
S = NOW - 86_400_000


@pytest.mark.asyncio
@pytest.mark.parametrize(("params", "first", "last"), [
    ({}, NOW - 99 * M, NOW),
    ({"limit": 3}, NOW - 2 * M, NOW),
    ({"after": S}, S - 100 * M, S - M),
    ({"after": S + 1, "limit": 2}, S - M, S),
    ({"before": NOW - 3 * M}, NOW - 2 * M, NOW),
    ({"after": S, "before": S - 5 * M}, S - 4 * M, S - M),
], ids=["none", "limit", "after", "after-limit", "before", "after-before"])
async def test_candles_window_as_okx_cuts_it(
    make_exchange: ExchangeFactory, params: dict[str, int], first: int, last: int,
) -> None:
    """OKX: `after` = strictly older than, `before` = strictly newer than, newest first."""
    async with SimulatorServer(sim_config(), clock=ManualClock(T0)) as srv:
        ex = make_exchange(ccxt.okx, srv.base_url)
        for path in ("candles", "history-candles"):
            method = getattr(ex, f"public_get_market_{path.replace('-', '_')}")
            rows = (await method({"instId": "ETH-USDT", "bar": "1m",
                                  **{k: str(v) for k, v in params.items()}}))["data"]
            assert [int(row[0]) for row in reversed(rows)] == list(range(first, last + 1, M))


@pytest.mark.asyncio
async def test_bulk_tickers_full_books_and_swap_sizes(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    tickers = await ex.fetch_tickers(params={"type": "swap"})
    assert "BTC/USDT:USDT" in tickers and "BTC/USDT" not in tickers
    spot = await ex.fetch_tickers(["ETH/USDT", "BTC/USDT"])
    eth = spot["ETH/USDT"]  # the price when it was read: a busy machine may pass a tick
    assert eth["bid"] == float(server.sim.market.price("ETH/USDT", at_ms=eth["timestamp"]))
    full = await ex.fetch_order_book("ETH/USDT", 1000)  # ccxt: books-full above 400
    assert len(full["bids"]) == 1000
    with pytest.raises(ccxt.BadRequest, match="51000"):
        await ex.public_get_market_books({"instId": "ETH-USDT", "sz": "401"})
    swap = await ex.public_get_market_books({"instId": "BTC-USDT-SWAP", "sz": "1"})
    level = swap["data"][0]["bids"][0]
    qty = server.sim.market.books.top(server.sim.market.instrument("BTC/USDT:USDT"))[0].qty
    assert Decimal(level[1]) == qty / Decimal("0.01")  # contracts of 0.01 BTC


@pytest.mark.asyncio
async def test_fills_and_history_carry_okx_signs_and_currencies(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    buy = await ex.create_order("ETH/USDT", "market", "buy", 1)
    raw = (await ex.private_get_trade_fills({"instType": "SPOT"}))["data"]
    assert [(f["ordId"], f["feeCcy"], f["fee"], f["execType"]) for f in raw] == [
        (buy["id"], "ETH", "-0.001", "T")]
    price = float(server.sim.market.price("ETH/USDT"))
    resting = await ex.create_order("ETH/USDT", "limit", "buy", 1, round(price * 0.9, 2))
    await ex.cancel_order(resting["id"], "ETH/USDT")
    closed = await ex.fetch_closed_orders("ETH/USDT")
    assert [o["id"] for o in closed] == [buy["id"]]
    canceled = await ex.fetch_canceled_orders("ETH/USDT")
    assert [o["id"] for o in canceled] == [resting["id"]]
    history = (await ex.private_get_trade_orders_history({"instType": "SPOT"}))["data"]
    assert [h["ordId"] for h in history] == [resting["id"], buy["id"]]
    fee = await ex.fetch_trading_fee("BTC/USDT:USDT")
    assert (fee["maker"], fee["taker"]) == (0.0002, 0.0005)


@pytest.mark.asyncio
async def test_an_algo_order_waits_fires_and_cancels_as_okx_does(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _okx(make_exchange, server)
    await ex.load_markets()
    server.sim.set_price("ETH/USDT", Decimal(3000))
    with pytest.raises(ccxt.InvalidOrder, match="51280"):
        await ex.create_order("ETH/USDT", "market", "sell", 1, None, {"stopLossPrice": 3100})
    stop = await ex.create_order("ETH/USDT", "market", "sell", 1, None, {"stopLossPrice": 2900})
    other = await ex.create_order("ETH/USDT", "market", "sell", 1, None,
                                  {"stopLossPrice": 2800})
    assert await ex.fetch_open_orders("ETH/USDT") == []  # algo orders are not orders yet
    pending = await ex.fetch_open_orders("ETH/USDT", params={"stop": True,
                                                            "ordType": "conditional"})
    assert {o["id"] for o in pending} == {stop["id"], other["id"]}
    await ex.cancel_order(other["id"], "ETH/USDT", {"stop": True})
    server.sim.set_price("ETH/USDT", Decimal(2850))
    fired = await ex.fetch_order(stop["id"], "ETH/USDT", {"stop": True})
    assert fired["status"] == "closed" and fired["info"]["ordId"] == stop["id"]
    working = await ex.fetch_order(fired["info"]["ordId"], "ETH/USDT")
    assert (working["status"], working["average"]) == ("closed", 2850)
    history = await ex.fetch_canceled_orders("ETH/USDT", params={"stop": True,
                                                                 "ordType": "conditional"})
    assert [o["id"] for o in history] == [other["id"]]


class TestDerivatives(DerivativesConformance):
    """OKX sets the margin mode per order (`tdMode`): `set_margin_mode` is ccxt's
    set-leverage with `mgnMode`, and the client sends that mode with its orders."""

    leverage_already_set = None
    leverage_refused = Expect(ccxt.ExchangeError, "59102", exact=True)
    margin_already_set = None
    margin_refused = None
    position_mode_already_set = None
    position_mode_refused = Expect(ccxt.ExchangeError, "59000", exact=True)
    reduce_only_refused = Expect(ccxt.ExchangeError, "51169", exact=True)
    position_side_refused = Expect(ccxt.BadRequest, "51000.*posSide")
    fill_side_field = "posSide"
    td_mode = "cross"

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _okx(make, server, options={"defaultType": "swap"}, **config)

    async def set_margin_mode(self, ex: Any, mode: str, symbol: str) -> Any:
        self.td_mode = mode
        return await ex.set_margin_mode(mode, symbol, {"lever": 10})

    def order_params(self) -> dict[str, Any]:
        return {"tdMode": self.td_mode}

    def isolated_leverage_params(self) -> dict[str, Any]:
        return {"marginMode": "isolated"}

    def hedge_params(self, side: str, closing: bool) -> dict[str, Any]:
        return {"posSide": side}

    def check_tier_bounds(self, ex: Any, symbol: str, tier: Any, model: tiers.Tier) -> None:
        """OKX publishes tiers in contracts (at the instrument's reference price)."""
        market = ex.market(symbol)
        reference = float(TIER_REFERENCE[symbol]) * market["contractSize"]
        assert tier["maxNotional"] == round(float(model.cap) / reference)

    async def funding_history(self, ex: Any, symbol: str) -> list[Any]:
        return [e for e in await ex.fetch_funding_history(symbol) if e["symbol"] == symbol]

    async def liquidation_records(self, ex: Any, server: SimulatorServer,
                                  symbol: str) -> list[Any]:
        bills = (await ex.privateGetAccountBills({"type": "5"}))["data"]
        assert {b["subType"] for b in bills} == {"104", "111"}  # liquidation long; the rest
        return list(bills)


TIER_REFERENCE = {"BTC/USDT:USDT": 65000, "SOL/USDT:USDT": 150}
"""The catalog's listing prices of the two instruments the suite trades."""


@pytest.mark.asyncio
async def test_a_swap_algo_order_closes_its_hedge_side(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    """A stop-loss on the long side of a hedge-mode swap carries `posSide` into the order it
    fires, which closes that side and leaves the short alone."""
    ex = _okx(make_exchange, server, options={"defaultType": "swap"})
    await ex.load_markets()
    await ex.set_position_mode(True, "BTC/USDT:USDT")
    server.sim.set_price("BTC/USDT:USDT", Decimal(60000))
    params = {"tdMode": "cross"}
    await ex.create_order("BTC/USDT:USDT", "market", "buy", 2, None, {**params, "posSide": "long"})
    await ex.create_order("BTC/USDT:USDT", "market", "sell", 1, None,
                          {**params, "posSide": "short"})
    await ex.create_order("BTC/USDT:USDT", "market", "sell", 2, None,
                          {**params, "posSide": "long", "stopLossPrice": 59000})
    server.sim.set_price("BTC/USDT:USDT", Decimal(58900))
    positions = [p for p in await ex.fetch_positions(["BTC/USDT:USDT"]) if p["contracts"]]
    assert [(p["side"], p["contracts"]) for p in positions] == [("short", 1)]
    (fired,) = [t for t in await ex.fetch_my_trades("BTC/USDT:USDT") if t["price"] == 58900]
    assert fired["info"]["posSide"] == "long"


@pytest.mark.asyncio
async def test_a_swap_stop_closes_the_isolated_position_it_protects(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    """As Freqtrade sends it: `tdMode` isolated, `posSide` net, reduce-only."""
    ex = _okx(make_exchange, server, options={"defaultType": "swap"})
    await ex.load_markets()
    server.sim.set_price("BTC/USDT:USDT", Decimal(60000))
    params = {"tdMode": "isolated", "posSide": "net"}
    await ex.create_order("BTC/USDT:USDT", "market", "buy", 1, None, params)
    stop = await ex.create_order("BTC/USDT:USDT", "market", "sell", 1, None,
                                 {**params, "reduceOnly": True, "stopLossPrice": 59000})
    server.sim.set_price("BTC/USDT:USDT", Decimal(58900))
    fired = await ex.fetch_order(stop["id"], "BTC/USDT:USDT", {"stop": True})
    assert fired["status"] == "closed"
    assert await ex.fetch_positions(["BTC/USDT:USDT"]) == []
