"""Unmodified `ccxt.async_support.bybit` against the simulated Bybit (v5, unified account)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.clock import ManualClock, SystemClock
from ctsd.sim.faults import FaultKind
from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer
from tests.sim.conformance import (
    Credential,
    CredentialErrors,
    Expect,
    VenueConformance,
    venue_faults,
)
from tests.sim.conftest import API_KEY, SECRET, T0, ExchangeFactory, sim_config
from tests.sim.derivatives_conformance import DerivativesConformance
from tests.sim.validators import check_market, check_order, read_checked

SPOT = ("spot", "BTC/USDT", {"defaultType": "spot"})
LINEAR = ("swap", "BTC/USDT:USDT", {"defaultType": "swap"})
UNIFIED_USDT = 150_000  # 100,000 spot + 50,000 derivatives, one unified wallet


def _bybit(make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    options = config.setdefault("options", {})
    # ccxt refuses fetchOrder on unified accounts until told it knows the 500-order window.
    options.setdefault("fetchOrder", {"acknowledged": True})
    return make(ccxt.bybit, server.base_url, **config)


class _FrozenWindows(SystemClock):
    """Wall-clock timestamps (signatures stay fresh) but rate-limit windows that never roll."""

    def monotonic(self) -> float:
        return 1_000.0


@pytest.mark.asyncio
@pytest.mark.parametrize(("label", "symbol", "options"), [SPOT, LINEAR], ids=["spot", "linear"])
async def test_full_flow_passes_ccxt_validators(
    server: SimulatorServer, make_exchange: ExchangeFactory, label: str, symbol: str,
    options: dict[str, str],
) -> None:
    ex = _bybit(make_exchange, server, options=dict(options))
    markets = await ex.load_markets()
    assert {"BTC/USDT", "BTC/USDT:USDT", "ETH/USDT"} <= set(markets)
    check_market(ex, markets[symbol])
    ticker, _, balance = await read_checked(ex, symbol)
    assert ticker["last"] == pytest.approx(float(server.sim.market.price(symbol)), rel=0.01)
    assert ticker["bid"] < ticker["ask"]
    assert balance["USDT"]["total"] == UNIFIED_USDT

    created = await ex.create_order(symbol, "market", "buy", 0.01)
    check_order(ex, created, symbol)
    assert created["status"] is None  # Bybit acknowledges with the ids only
    market_order = await ex.fetch_order(created["id"], symbol)
    check_order(ex, market_order, symbol)
    assert (market_order["status"], market_order["filled"]) == ("closed", 0.01)
    assert market_order["fee"]["currency"] == ("BTC" if symbol == "BTC/USDT" else "USDT")

    price = float(server.sim.market.price(symbol)) * 0.9
    limit = await ex.create_order(
        symbol, "limit", "buy", 0.01, ex.price_to_precision(symbol, price))
    open_orders = await ex.fetch_open_orders(symbol)
    assert [o["id"] for o in open_orders] == [limit["id"]]
    check_order(ex, open_orders[0], symbol)
    fetched = await ex.fetch_order(limit["id"], symbol)
    assert (fetched["status"], fetched["remaining"]) == ("open", 0.01)
    await ex.cancel_order(limit["id"], symbol)
    assert (await ex.fetch_order(limit["id"], symbol))["status"] == "canceled"
    assert await ex.fetch_open_orders(symbol) == []

    after = await ex.fetch_balance()
    if label == "spot":
        assert after["BTC"]["total"] == pytest.approx(2.01 - 0.01 * 0.001)  # fee in BTC
        assert after["USDT"]["total"] == pytest.approx(UNIFIED_USDT - market_order["cost"])
    else:
        assert after["USDT"]["used"] > 0  # the position's initial margin
        assert after["USDT"]["total"] < UNIFIED_USDT  # the taker fee


@pytest.mark.asyncio
async def test_spot_market_buy_by_cost_reports_quote_qty(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _bybit(make_exchange, server)
    created = await ex.create_market_buy_order_with_cost("ETH/USDT", 1000)
    order = await ex.fetch_order(created["id"], "ETH/USDT")
    assert (order["info"]["marketUnit"], order["info"]["qty"]) == ("quoteCoin", "1000")
    assert order["cost"] == pytest.approx(1000, rel=0.01)  # ccxt reads qty as cost here
    assert order["amount"] == order["filled"] > 0


@pytest.mark.asyncio
async def test_history_lists_closed_and_canceled_orders(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _bybit(make_exchange, server)
    filled = await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    price = float(server.sim.market.price("BTC/USDT:USDT")) * 0.9
    ioc = await ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, round(price),
                                params={"timeInForce": "IOC"})  # does not cross: expires
    closed = await ex.fetch_closed_orders("BTC/USDT:USDT")
    assert [o["id"] for o in closed] == [filled["id"]]
    canceled = await ex.fetch_canceled_orders("BTC/USDT:USDT")
    assert [(o["id"], o["timeInForce"]) for o in canceled] == [(ioc["id"], "IOC")]
    assert await ex.fetch_open_orders("BTC/USDT:USDT") == []
    resting = await ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, round(price),
                                    params={"postOnly": True})
    assert [o["id"] for o in await ex.fetch_open_orders("BTC/USDT:USDT")] == [resting["id"]]
    with pytest.raises(ccxt.BadRequest, match="PostOnly"):
        await ex.create_order("BTC/USDT:USDT", "limit", "buy", 0.01, round(price / 0.8),
                              params={"postOnly": True})


NOW = T0 // 60_000 * 60_000
"""The open of the current one-minute candle under a clock frozen at T0."""
S, E = NOW - 2 * 86_400_000, NOW - 86_400_000
M = 60_000


@pytest.mark.asyncio
@pytest.mark.parametrize(("params", "first", "last"), [
    ({}, NOW - 199 * M, NOW),
    ({"start": S + 30_000}, S, S + 199 * M),
    ({"start": S + 30_000, "limit": 5}, S, S + 4 * M),
    ({"end": E}, E - 199 * M, E),
    ({"end": E, "limit": 3}, E - 2 * M, E),
    ({"start": S + 30_000, "end": S + 10 * M}, S, S + 10 * M),
    ({"start": S + 30_000, "end": E, "limit": 3}, E - 2 * M, E),
], ids=["none", "start", "start-limit", "end", "end-limit", "start-end", "start-end-limit"])
async def test_kline_window_as_bybit_cuts_it(
    make_exchange: ExchangeFactory, params: dict[str, int], first: int, last: int,
) -> None:
    """`start` alone: the candles from the one containing `start` onward (Freqtrade's
    download depends on it); with `end`: the newest `limit` up to `end`."""
    async with SimulatorServer(sim_config(), clock=ManualClock(T0)) as srv:
        ex = make_exchange(ccxt.bybit, srv.base_url)
        request = {"category": "spot", "symbol": "ETHUSDT", "interval": "1",
                   **{k: str(v) for k, v in params.items()}}
        rows = (await ex.public_get_v5_market_kline(request))["result"]["list"]
        assert [int(row[0]) for row in reversed(rows)] == list(range(first, last + 1, M))


@pytest.mark.asyncio
async def test_a_conditional_linear_order_needs_its_direction_to_be_ahead(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _bybit(make_exchange, server)
    await ex.load_markets()
    price = float(server.sim.market.price("BTC/USDT:USDT"))
    with pytest.raises(ccxt.InvalidOrder, match="110093"):  # falls to a price above
        await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None,
                              {"triggerPrice": round(price * 1.01),
                               "triggerDirection": "descending"})
    order = await ex.create_order("BTC/USDT:USDT", "market", "sell", 0.01, None,
                                  {"triggerPrice": round(price * 0.99),
                                   "triggerDirection": "descending"})
    (pending,) = await ex.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True})
    assert (pending["id"], pending["info"]["orderStatus"]) == (order["id"], "Untriggered")
    server.sim.set_price("BTC/USDT:USDT", Decimal(round(price * 0.98)))
    (fired,) = await ex.fetch_closed_orders("BTC/USDT:USDT", params={"trigger": True})
    assert (fired["status"], fired["filled"]) == ("closed", 0.01)
    (fill,) = await ex.fetch_my_trades("BTC/USDT:USDT")
    assert fill["order"] == order["id"] and fill["fee"]["currency"] == "USDT"


@pytest.mark.asyncio
async def test_linear_instruments_page_through_cursor(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _bybit(make_exchange, server)
    seen: list[str] = []
    cursor = None
    while True:
        request = {"category": "linear", "limit": 7} | ({"cursor": cursor} if cursor else {})
        result = (await ex.publicGetV5MarketInstrumentsInfo(request))["result"]
        seen += [item["symbol"] for item in result["list"]]
        cursor = result["nextPageCursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 30
    spot = await ex.publicGetV5MarketInstrumentsInfo({"category": "spot", "limit": 7})
    assert len(spot["result"]["list"]) == 30  # Bybit does not paginate spot
    empty = await ex.publicGetV5MarketInstrumentsInfo({"category": "inverse"})
    assert empty["result"]["list"] == []


@pytest.mark.asyncio
async def test_limit_headers_on_private_answers(make_exchange: ExchangeFactory) -> None:
    async with SimulatorServer(sim_config(), clock=_FrozenWindows()) as srv:
        ex = _bybit(make_exchange, srv, enableLastResponseHeaders=True)
        await ex.load_markets()
        statuses = []
        for _ in range(2):
            await ex.fetch_open_orders("BTC/USDT")
            headers = ex.last_response_headers
            assert headers["X-Bapi-Limit"] == "50"
            assert abs(int(headers["X-Bapi-Limit-Reset-Timestamp"]) - ex.milliseconds()) < 5000
            statuses.append(int(headers["X-Bapi-Limit-Status"]))
        assert statuses == [49, 48]


@pytest.mark.asyncio
async def test_uid_burst_is_rate_limit_exceeded(make_exchange: ExchangeFactory) -> None:
    config = sim_config(limits=RateLimitConfig(scale=0.1))  # order/realtime: 50/s → 5/s
    async with SimulatorServer(config, clock=_FrozenWindows()) as srv:
        ex = _bybit(make_exchange, srv)
        await ex.load_markets()
        with pytest.raises(ccxt.RateLimitExceeded, match="10006"):
            for _ in range(6):
                await ex.fetch_open_orders("BTC/USDT:USDT")
        await ex.fetch_ticker("BTC/USDT")  # public endpoints count per IP, not per UID
        stats: Any = srv.sim.snapshot()
        assert stats["violations_by_kind"] == {"bybit:uid": 1}


@pytest.mark.asyncio
async def test_ip_burst_is_403_then_a_ban(make_exchange: ExchangeFactory) -> None:
    config = sim_config(limits=RateLimitConfig(scale=0.01))  # 600 per 5 s → 6
    async with SimulatorServer(config, clock=_FrozenWindows()) as srv:
        ex = make_exchange(ccxt.bybit, srv.base_url)
        with pytest.raises(ccxt.RateLimitExceeded, match="403"):  # ccxt's bybit: 403 → limit
            for _ in range(7):
                await ex.fetch_time()
        with pytest.raises(ccxt.RateLimitExceeded, match="access too frequent"):
            await ex.fetch_time()  # banned now, not merely over the window
        stats: Any = srv.sim.snapshot()
        assert stats["violations_by_kind"] == {"bybit:ip": 1, "bybit:ip_banned": 1}


@pytest.mark.asyncio
@pytest.mark.parametrize(("symbol", "amount", "code"), [
    ("BTC/USDT", 10, "170131"), ("BTC/USDT:USDT", 100, "110007"),
], ids=["spot", "linear"])
async def test_insufficient_funds(
    server: SimulatorServer, make_exchange: ExchangeFactory, symbol: str, amount: float,
    code: str,
) -> None:
    ex = _bybit(make_exchange, server)
    with pytest.raises(ccxt.InsufficientFunds, match=code):
        await ex.create_order(symbol, "market", "buy", amount)


@pytest.mark.asyncio
async def test_unknown_order_is_order_not_found(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _bybit(make_exchange, server)
    with pytest.raises(ccxt.OrderNotFound, match="110001"):
        await ex.cancel_order("42", "BTC/USDT:USDT")
    with pytest.raises(ccxt.OrderNotFound, match="170213"):
        await ex.cancel_order("42", "BTC/USDT")


class TestConformance(VenueConformance):
    exchange_class = ccxt.bybit
    private_path = "/v5/account/wallet-balance"
    fault_errors = venue_faults(
        rate_limit=ccxt.RateLimitExceeded,
        # Bybit signals a restarting service with retCode 10016, which ccxt maps to a plain
        # ExchangeError: not OnMaintenance, not even a NetworkError. Callers must retry it.
        maintenance=ccxt.ExchangeError,
        ip_not_whitelisted=ccxt.PermissionDenied,
    )
    credential_errors: ClassVar[CredentialErrors] = {
        Credential.WRONG_SECRET: Expect(ccxt.AuthenticationError, "10004"),
        Credential.UNKNOWN_KEY: Expect(ccxt.AuthenticationError, "10003"),
        Credential.IP_NOT_WHITELISTED: Expect(ccxt.PermissionDenied, "10010"),
        Credential.READ_ONLY_TRADE: Expect(ccxt.PermissionDenied, "10005"),
        Credential.STALE_TIMESTAMP: Expect(ccxt.InvalidNonce, "10002"),
    }

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _bybit(make, server, **config)

    quote_total = UNIFIED_USDT
    maker_fee = 0.001
    taker_fee = 0.001
    book_limits = (1, 25, 200)

    async def place_stop_loss(self, ex: Any, symbol: str, amount: float, stop: float) -> Any:
        """A spot conditional order (orderFilter=StopOrder): a limit 1 % under the trigger."""
        return await ex.create_order(symbol, "limit", "sell", amount, stop * 0.99,
                                     {"triggerPrice": stop})

    async def fetch_stop(self, ex: Any, order: Any, symbol: str) -> Any:
        (closed,) = await ex.fetch_closed_orders(symbol, params={"trigger": True})
        assert closed["id"] == order["id"]
        return closed

    def check_resting(self, order: Any, balance: Any) -> None:
        assert balance["USDT"]["used"] == pytest.approx(3100.01)  # at the ask; fee is in ETH

    async def warm_up(self, ex: Any) -> None:
        await ex.fetch_balance()  # markets and account mode cached: one request per call

    def check_fault_error(self, kind: FaultKind, raised: pytest.ExceptionInfo[Exception]) -> None:
        if kind is FaultKind.MAINTENANCE:
            assert "10016" in str(raised.value)
            assert not isinstance(raised.value, ccxt.NetworkError)


def test_refused_credentials_are_authentication_errors() -> None:
    for case in (Credential.WRONG_SECRET, Credential.UNKNOWN_KEY, Credential.IP_NOT_WHITELISTED):
        expected = TestConformance.credential_errors[case].error
        assert issubclass(expected, ccxt.AuthenticationError)  # PermissionDenied is one too


class TestDerivatives(DerivativesConformance):
    leverage_already_set = Expect(ccxt.BadRequest, "110043")
    leverage_refused = Expect(ccxt.BadRequest, "10001")
    margin_already_set = None
    """The unified account's set-margin-mode has no documented "not modified" code."""
    margin_refused = Expect(ccxt.ExchangeError, "3400045.*3400208", exact=True)
    position_mode_already_set = Expect(ccxt.NoChange, "110025")
    position_mode_refused = Expect(ccxt.BadRequest, "110024")
    reduce_only_refused = Expect(ccxt.InvalidOrder, "110017")
    position_side_refused = Expect(ccxt.BadRequest, "10001.*position idx")
    empty_position_fields = frozenset({"marginMode", "percentage"})
    """ccxt reads no margin mode from a v5 position (`tradeMode` is deprecated)."""
    funding_paid_sign = -1

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _bybit(make, server, options={"defaultType": "swap"}, **config)

    def hedge_params(self, side: str, closing: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"positionIdx": 1 if side == "long" else 2}
        if closing:
            params["reduceOnly"] = True
        return params

    async def liquidation_records(self, ex: Any, server: SimulatorServer,
                                  symbol: str) -> list[Any]:
        liquidations = await ex.fetch_my_liquidations(symbol)
        self.check_liquidations(ex, liquidations, symbol)
        ledger = await ex.fetch_ledger("USDT")
        assert "LIQUIDATION" in {e["info"]["type"] for e in ledger}
        return list(liquidations)
