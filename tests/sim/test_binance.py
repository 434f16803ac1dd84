"""Unmodified `ccxt.async_support.binance` against the simulated Binance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.clock import ManualClock
from ctsd.sim.derivatives import PositionView
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
    ticker, _, balance = await read_checked(ex, symbol)
    assert ticker["last"] == float(server.sim.market.price(symbol, at_ms=ticker["timestamp"]))
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
        assert after["BTC"]["total"] == pytest.approx(2.01 - 0.01 * 0.001)  # fee in BTC
        assert after["USDT"]["total"] == pytest.approx(100000 - market_order["cost"])
    else:
        assert after["USDT"]["free"] < 50000


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


class TestConformance(VenueConformance):
    exchange_class = ccxt.binance
    private_path = "/api/v3/account"
    fault_errors = venue_faults(
        rate_limit=ccxt.DDoSProtection,
        maintenance=ccxt.OnMaintenance,
        ip_not_whitelisted=ccxt.AuthenticationError,
    )
    credential_errors: ClassVar[CredentialErrors] = {
        Credential.WRONG_SECRET: Expect(ccxt.AuthenticationError, "-1022"),
        Credential.UNKNOWN_KEY: Expect(ccxt.AuthenticationError, "-2015"),
        Credential.IP_NOT_WHITELISTED: Expect(ccxt.AuthenticationError, "-2015"),
        Credential.READ_ONLY_TRADE: Expect(ccxt.AuthenticationError, "-2015"),
        Credential.STALE_TIMESTAMP: Expect(ccxt.InvalidNonce, "-1021"),
    }
    warm_up_before_trading = False
    """After a private call, ccxt reads -2015 as a temporary ban (DDoSProtection)."""
    blank_on_broken_json = ("last", "timestamp")
    maker_fee = 0.001
    taker_fee = 0.001
    book_limits = (5, 100, 5000)
    book_timestamped = False

    async def place_stop_loss(self, ex: Any, symbol: str, amount: float, stop: float) -> Any:
        """As Freqtrade does: STOP_LOSS_LIMIT with `stopPrice` (and a limit 1 % under)."""
        return await ex.create_order(symbol, "STOP_LOSS_LIMIT", "sell", amount, stop * 0.99,
                                     {"stopPrice": stop})

    def check_resting(self, order: Any, balance: Any) -> None:
        assert order["status"] == "open"
        assert balance["USDT"]["used"] > 0

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _binance(make, server, **config)


M = 60_000
NOW = T0 // M * M
"""The open of the current one-minute candle under a clock frozen at T0."""
S = NOW - 2 * 86_400_000


@pytest.mark.asyncio
@pytest.mark.parametrize(("params", "first", "last"), [
    ({}, NOW - 499 * M, NOW),
    ({"startTime": S + 1}, S + M, S + 500 * M),
    ({"startTime": S}, S, S + 499 * M),
    ({"startTime": S, "limit": 5}, S, S + 4 * M),
    ({"endTime": S}, S - 499 * M, S),
    ({"endTime": S + 30_000, "limit": 3}, S - 2 * M, S),
    ({"startTime": S, "endTime": S + 10 * M}, S, S + 10 * M),
    ({"startTime": S, "endTime": S + 10 * M, "limit": 3}, S, S + 2 * M),
], ids=["none", "start-mid", "start", "start-limit", "end", "end-limit", "start-end",
        "start-end-limit"])
async def test_kline_window_as_binance_cuts_it(
    make_exchange: ExchangeFactory, params: dict[str, int], first: int, last: int,
) -> None:
    """Binance: candles opening at or after `startTime` (the next one when it falls inside a
    candle), at or before `endTime`, the first `limit` from the start when a start is given,
    else the newest."""
    async with SimulatorServer(sim_config(), clock=ManualClock(T0)) as srv:
        ex = make_exchange(ccxt.binance, srv.base_url)
        rows = await ex.public_get_klines({"symbol": "ETHUSDT", "interval": "1m",
                                           **{k: str(v) for k, v in params.items()}})
        assert [row[0] for row in rows] == list(range(first, last + 1, M))


@pytest.mark.asyncio
async def test_agg_trades_windows_and_ids(make_exchange: ExchangeFactory) -> None:
    async with SimulatorServer(sim_config(), clock=ManualClock(T0)) as srv:
        ex = make_exchange(ccxt.binance, srv.base_url)
        recent = await ex.public_get_aggtrades({"symbol": "ETHUSDT", "limit": "3"})
        assert [t["a"] for t in recent] == [recent[0]["a"] + i for i in range(3)]
        last = srv.sim.market.price("ETH/USDT")
        assert recent[-1]["T"] <= T0 and recent[-1]["p"] == f"{last:.8f}"
        start = T0 - 3_600_000
        windowed = await ex.public_get_aggtrades({"symbol": "ETHUSDT", "startTime": str(start),
                                                  "endTime": str(start + 60_000)})
        assert all(start <= t["T"] <= start + 60_000 for t in windowed) and len(windowed) == 13
        from_id = await ex.public_get_aggtrades({"symbol": "ETHUSDT", "fromId": str(
            windowed[0]["a"]), "limit": "2"})
        assert from_id == windowed[:2]
        with pytest.raises(ccxt.BadRequest, match="-1127"):
            await ex.public_get_aggtrades({"symbol": "ETHUSDT", "startTime": str(start),
                                           "endTime": str(start + 7_200_000)})


@pytest.mark.asyncio
async def test_book_depth_limits_and_book_tickers(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _binance(make_exchange, server, options={"defaultType": "future"})
    await ex.load_markets()
    with pytest.raises(ccxt.BadRequest, match="-4021"):
        await ex.fapipublic_get_depth({"symbol": "BTCUSDT", "limit": "7"})
    book = await ex.fetch_order_book("BTC/USDT:USDT", 1000)
    assert len(book["bids"]) == 1000 and book["timestamp"] is not None
    tickers = await ex.fetch_bids_asks()
    assert tickers["BTC/USDT:USDT"]["bid"] == book["bids"][0][0]
    spot = await ex.fetch_order_book("BTC/USDT", 6000)  # truncated to Binance's maximum
    assert len(spot["asks"]) == 5000


@pytest.mark.asyncio
async def test_futures_stop_market_is_an_algo_order_until_it_fires(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    """As Freqtrade places it: `stop_market`, `stopPrice`, reduce-only; then fetched with
    `trigger`, and the working order by `actualOrderId`."""
    ex = _binance(make_exchange, server, options={"defaultType": "future"})
    await ex.load_markets()
    server.sim.set_price("BTC/USDT:USDT", Decimal(60000))
    await ex.create_order("BTC/USDT:USDT", "market", "buy", 0.01)
    stop = await ex.create_order("BTC/USDT:USDT", "stop_market", "sell", 0.01, None,
                                 {"stopPrice": 59000, "reduceOnly": True})
    assert stop["status"] == "open"
    assert await ex.fetch_open_orders("BTC/USDT:USDT") == []  # not a plain order yet
    (pending,) = await ex.fetch_open_orders("BTC/USDT:USDT", params={"trigger": True})
    assert pending["id"] == stop["id"] and pending["triggerPrice"] == 59000
    with pytest.raises(ccxt.InvalidOrder, match="-2021"):
        await ex.create_order("BTC/USDT:USDT", "stop_market", "sell", 0.01, None,
                              {"stopPrice": 61000, "reduceOnly": True})
    server.sim.set_price("BTC/USDT:USDT", Decimal(58900))
    fired = await ex.fetch_order(stop["id"], "BTC/USDT:USDT", {"trigger": True})
    assert fired["status"] == "closed"
    working = await ex.fetch_order(fired["info"]["actualOrderId"], "BTC/USDT:USDT")
    assert (working["status"], working["filled"], working["average"]) == ("closed", 0.01, 58900)
    trades = await ex.fetch_my_trades("BTC/USDT:USDT")
    assert [t["order"] for t in trades][-1] == stop["id"]
    assert float(trades[-1]["info"]["realizedPnl"]) == pytest.approx(-11.001, abs=0.01)


@pytest.mark.asyncio
async def test_spot_order_answer_carries_fills_and_history_lists_orders(
    server: SimulatorServer, make_exchange: ExchangeFactory,
) -> None:
    ex = _binance(make_exchange, server)
    await ex.load_markets()
    bought = await ex.create_order("ETH/USDT", "market", "buy", 1)
    (fill,) = bought["info"]["fills"]
    assert (fill["commissionAsset"], fill["commission"]) == ("ETH", "0.00100000")
    assert bought["fee"] == {"currency": "ETH", "cost": 0.001}
    price = float(server.sim.market.price("ETH/USDT"))
    resting = await ex.create_order("ETH/USDT", "limit", "buy", 1, round(price * 0.9, 2))
    await ex.cancel_order(resting["id"], "ETH/USDT")
    with pytest.raises(ccxt.InvalidOrder, match="would immediately match"):  # LIMIT_MAKER
        await ex.create_order("ETH/USDT", "limit", "buy", 1, round(price * 1.1, 2),
                              {"postOnly": True})
    orders = await ex.fetch_orders("ETH/USDT")
    assert [(o["id"], o["status"]) for o in orders] == [
        (bought["id"], "closed"), (resting["id"], "canceled")]
    fees = await ex.fetch_trading_fees()
    assert fees["ETH/USDT"]["taker"] == 0.001


class TestDerivatives(DerivativesConformance):
    leverage_already_set = None
    """Binance answers the leverage again; it has no "not modified" code for it."""
    leverage_refused = Expect(ccxt.BadRequest, "-4028")
    margin_already_set = Expect(ccxt.MarginModeAlreadySet, "-4046")
    margin_refused = Expect(ccxt.OperationRejected, "-4048")
    position_mode_already_set = Expect(ccxt.OperationRejected, "-4059")
    position_mode_refused = Expect(ccxt.OperationRejected, "-4068")
    reduce_only_refused = Expect(ccxt.InvalidOrder, "-2022")
    position_side_refused = Expect(ccxt.OperationRejected, "-4061")
    fill_side_field = "positionSide"
    empty_position_fields = frozenset({"leverage"})
    """positionRisk v3 (ccxt's default) carries no leverage."""
    fetch_position_error = ccxt.NotSupported
    """ccxt's binance.fetch_position serves options only."""

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        return _binance(make, server, options={"defaultType": "future"}, **config)

    def hedge_params(self, side: str, closing: bool) -> dict[str, Any]:
        return {"positionSide": side.upper()}

    async def liquidation_records(self, ex: Any, server: SimulatorServer,
                                  symbol: str) -> list[Any]:
        [liquidation] = await ex.fetch_my_liquidations(symbol)
        assert liquidation["contracts"] == 10 and liquidation["price"] > 0
        incomes = await ex.fapiPrivateGetIncome({"symbol": ex.market_id(symbol)})
        kinds = [i["incomeType"] for i in incomes]
        assert "INSURANCE_CLEAR" in kinds and "REALIZED_PNL" in kinds
        return [liquidation]

    def next_funding_ms(self, rate: Any) -> int:
        return int(rate["fundingTimestamp"])

    def ccxt_initial_margin(self, view: PositionView) -> Decimal:
        """positionRisk v3's `initialMargin` is at the mark price, isolated or not."""
        return view.initial_margin

    def ccxt_maintenance(self, view: PositionView, position: Any) -> Decimal:
        """ccxt recomputes it as bracket rate x notional, without the bracket's `cum`;
        the venue's own figure (with it) is in `maintMargin`."""
        assert Decimal(position["info"]["maintMargin"]) == view.maintenance
        return view.notional * view.tier.mmr
