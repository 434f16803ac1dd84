"""What every simulated venue must do, whatever the exchange: one suite, one table a venue.

Each `tests/sim/test_<venue>.py` subclasses `VenueConformance` (as `TestConformance`)
and fills in its table: how to build the venue's ccxt client, which private path the
credential faults aim at, and which ccxt exception production raises for each fault
and each refused credential. The exceptions differ per venue — that is the point of
the suite: it pins, venue by venue, what the daemon's error translation meets.

The cases a venue lists are the cases it runs (`pytest_generate_tests` parametrizes
from the subclass's table), so a venue without, say, a timestamp check simply leaves
that row out instead of skipping it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar

import ccxt.async_support as ccxt
import pytest

from ctsd.sim.accounts import AccountSpec, Permission
from ctsd.sim.clock import ManualClock, SystemClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from tests.sim.conftest import API_KEY as API_KEY_OF_SUITE
from tests.sim.conftest import T0, ExchangeFactory, sim_config, trader_spec
from tests.sim.validators import check_order_book, check_trade, check_trading_fee


class SkewedClock(SystemClock):
    """A server clock two minutes ahead: every client timestamp looks stale."""

    def now_ms(self) -> int:
        return super().now_ms() + 120_000


class Credential(Enum):
    """A way a signed request is refused; the values are the test ids."""

    WRONG_SECRET = "wrong-secret"
    UNKNOWN_KEY = "unknown-key"
    IP_NOT_WHITELISTED = "ip-not-whitelisted"
    READ_ONLY_TRADE = "read-only-trade"
    STALE_TIMESTAMP = "stale-timestamp"


@dataclass(frozen=True)
class Expect:
    """The ccxt exception production raises, a pattern its message matches, and whether
    it is exactly that class (pinned where ccxt falls back to a bare base class)."""

    error: type[Exception]
    match: str
    exact: bool = False

    def check(self, raised: pytest.ExceptionInfo[Exception]) -> None:
        if self.exact:
            assert type(raised.value) is self.error


FaultErrors = Mapping[FaultKind, type[Exception]]
CredentialErrors = Mapping[Credential, Expect]

GENERIC_FAULT_ERRORS: FaultErrors = {
    FaultKind.SERVER_ERROR: ccxt.ExchangeNotAvailable,
    FaultKind.HTML_503: ccxt.ExchangeNotAvailable,
    FaultKind.HANG: ccxt.RequestTimeout,
    FaultKind.CONNECTION_RESET: ccxt.NetworkError,
    FaultKind.INVALID_KEY: ccxt.AuthenticationError,
}
"""Faults ccxt's base class maps the same way for every venue; a venue's table adds
what its own error codes make of rate limits, maintenance and an IP off the whitelist."""


def venue_faults(*, rate_limit: type[Exception], maintenance: type[Exception],
                 ip_not_whitelisted: type[Exception]) -> FaultErrors:
    """A venue's `fault_errors`: `GENERIC_FAULT_ERRORS` and what ccxt makes of the venue's
    own codes for the three faults every venue signals its own way."""
    return {**GENERIC_FAULT_ERRORS, FaultKind.RATE_LIMIT: rate_limit,
            FaultKind.MAINTENANCE: maintenance, FaultKind.IP_NOT_WHITELISTED: ip_not_whitelisted}

_ISSUE_17_TESTS = frozenset({
    "test_public_trades_are_the_tape", "test_own_fills_carry_the_fee_in_the_venues_asset",
    "test_stop_loss_fires_on_the_path_and_its_fill_is_listed",
    "test_trading_fee_rate_is_the_venues",
})

FAULTS_EVERY_VENUE_HANDLES = (
    FaultKind.RATE_LIMIT, FaultKind.SERVER_ERROR, FaultKind.HTML_503, FaultKind.MAINTENANCE,
    FaultKind.HANG, FaultKind.CONNECTION_RESET, FaultKind.INVALID_KEY,
    FaultKind.IP_NOT_WHITELISTED,
)


class VenueConformance:
    """The shared suite; subclasses set the class variables and `exchange`."""

    exchange_class: ClassVar[type[Any]]
    """The unmodified ccxt class (`ccxt.async_support.binance`)."""
    private_path: ClassVar[str]
    """A path `fetch_balance` calls, for the credential faults to aim at."""
    fault_errors: ClassVar[FaultErrors]
    """What ccxt raises for each of `FAULTS_EVERY_VENUE_HANDLES` (`GENERIC_FAULT_ERRORS`
    and the venue's own three)."""
    credential_errors: ClassVar[CredentialErrors]
    """What ccxt raises for each refused credential the venue checks."""
    reset_count: ClassVar[int] = 2
    """Resets for CONNECTION_RESET: aiohttp retries an idempotent request once after a
    reset, as it would in production; venues that read balances by POST need only one."""
    wrong_secret: ClassVar[str] = "wrong-secret"
    account_overrides: ClassVar[Mapping[str, Any]] = {}
    """What the venue's accounts need beyond `trader_spec` (Kraken: a base64 secret)."""
    warm_up_before_trading: ClassVar[bool] = True
    """Whether the read-only test makes a private call before trying to trade."""
    blank_on_broken_json: ClassVar[tuple[str, ...]] = ("last",)
    """Ticker fields ccxt leaves empty when the body is not JSON."""
    seeded_symbol: ClassVar[str] = "SOL/USDT"
    quote_total: ClassVar[float] = 100_000
    """The trader's USDT as `fetch_balance` reports it (unified accounts add derivatives)."""
    maker_fee: ClassVar[float]
    """The venue's spot maker fee rate, charged on a resting order's fill."""

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        """A signed client for the venue (keys, options) pointed at `server`."""
        raise NotImplementedError

    def config(self, **overrides: Any) -> SimulatorConfig:
        return sim_config(**overrides)

    def account(self, **overrides: Any) -> AccountSpec:
        return trader_spec(**{**self.account_overrides, **overrides})

    async def warm_up(self, ex: Any) -> None:
        """Cache what the venue's client loads first, so a fault hits the call under test."""
        await ex.load_markets()

    def check_fault_error(self, kind: FaultKind, raised: pytest.ExceptionInfo[Exception]) -> None:
        """Venue-specific checks on a fault's exception beyond its class."""

    async def place_resting_buy(self, ex: Any) -> Any:
        """A limit buy of 1 ETH at 3000, below the market."""
        return await ex.create_order("ETH/USDT", "limit", "buy", 1, 3000)

    async def fetch_filled(self, ex: Any, order: Any) -> Any:
        return await ex.fetch_order(order["id"], "ETH/USDT")

    def check_resting(self, order: Any, balance: Any) -> None:
        """What the venue reports for the resting order and the funds it reserves."""
        assert balance["USDT"]["used"] > 0

    # --- market data, own fills, stops (issue 17) ------------------------------------------

    book_limits: ClassVar[tuple[int, ...]] = ()
    """Order-book depths the venue accepts, smallest to largest (all are asked for); empty
    while the venue's market-data endpoints are not served yet (their tests are skipped)."""
    book_timestamped: ClassVar[bool] = True
    """Whether the venue's REST book carries a timestamp (Binance spot's does not)."""
    buy_fee_in_base: ClassVar[bool] = True
    """Whether a spot buy pays its fee in the base asset (Binance, Bybit, OKX; not Kraken)."""
    taker_fee: ClassVar[float] = 0.0
    """The venue's spot taker fee rate."""

    @pytest.fixture(autouse=True)
    def _market_data_served(self, request: pytest.FixtureRequest) -> None:
        if request.function.__name__ in _ISSUE_17_TESTS and not self.book_limits:
            pytest.skip("the venue's market data and history are not simulated yet")

    async def place_stop_loss(self, ex: Any, symbol: str, amount: float, stop: float) -> Any:
        """A stop-loss sell of `amount` triggering at `stop`, as the venue offers it."""
        raise NotImplementedError

    async def fetch_stop(self, ex: Any, order: Any, symbol: str) -> Any:
        """The stop order as fetched after it fired."""
        return await ex.fetch_order(order["id"], symbol)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "fault_kind" in metafunc.fixturenames:
            assert set(self.fault_errors) == set(FAULTS_EVERY_VENUE_HANDLES)
            metafunc.parametrize("fault_kind", FAULTS_EVERY_VENUE_HANDLES,
                                 ids=[k.value for k in FAULTS_EVERY_VENUE_HANDLES])
        if "book_limit" in metafunc.fixturenames:
            metafunc.parametrize("book_limit", self.book_limits)
        if "credential" in metafunc.fixturenames:
            cases = list(self.credential_errors)
            metafunc.parametrize("credential", cases, ids=[c.value for c in cases])

    def fault(self, kind: FaultKind) -> FaultSpec:
        """The fault of `kind` as the suite injects it."""
        if kind is FaultKind.SERVER_ERROR:
            return FaultSpec(kind, status=502)
        if kind is FaultKind.HANG:
            return FaultSpec(kind, delay_s=5)
        if kind is FaultKind.CONNECTION_RESET:
            return FaultSpec(kind, count=self.reset_count)
        if kind in (FaultKind.INVALID_KEY, FaultKind.IP_NOT_WHITELISTED):
            return FaultSpec(kind, path_prefix=self.private_path)
        return FaultSpec(kind)

    @pytest.mark.asyncio
    async def test_limit_order_fills_when_price_crosses(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = self.exchange(make_exchange, server)
        await ex.load_markets()
        server.sim.set_price("ETH/USDT", Decimal("3100"))
        order = await self.place_resting_buy(ex)
        self.check_resting(order, await ex.fetch_balance())
        server.sim.set_price("ETH/USDT", Decimal("2900"))
        filled = await self.fetch_filled(ex, order)
        assert (filled["status"], filled["average"]) == ("closed", 3000)
        after = await ex.fetch_balance()
        if self.buy_fee_in_base:  # the maker fee is taken from the ETH bought
            assert after["ETH"]["total"] == pytest.approx(21 - self.maker_fee)
            assert after["USDT"]["total"] == pytest.approx(self.quote_total - 3000)
        else:
            assert after["ETH"]["total"] == 21
            assert after["USDT"]["total"] == pytest.approx(
                self.quote_total - 3000 * (1 + self.maker_fee))
        assert after["USDT"]["used"] == 0

    @pytest.mark.asyncio
    async def test_fault_raises_what_ccxt_raises_in_production(
        self, server: SimulatorServer, make_exchange: ExchangeFactory, fault_kind: FaultKind,
    ) -> None:
        # A generous timeout everywhere but on the hang, so a loaded machine
        # cannot turn another fault (or the warm-up) into a RequestTimeout.
        ex = self.exchange(make_exchange, server, timeout=10_000)
        await self.warm_up(ex)
        server.sim.add_fault(self.fault(fault_kind))
        ex.timeout = 300 if fault_kind is FaultKind.HANG else 10_000
        with pytest.raises(self.fault_errors[fault_kind]) as raised:
            await ex.fetch_balance()
        self.check_fault_error(fault_kind, raised)
        assert server.sim.faults.pending() == []
        ex.timeout = 10_000
        await ex.fetch_balance()  # the fault was consumed; the next call works

    @pytest.mark.asyncio
    @pytest.mark.parametrize("kind", [FaultKind.MALFORMED_JSON, FaultKind.TRUNCATED_JSON])
    async def test_broken_json_is_not_detected_by_ccxt(
        self, server: SimulatorServer, make_exchange: ExchangeFactory, kind: FaultKind,
    ) -> None:
        """ccxt 4.5.90 raises nothing on a 200 whose body is not JSON: it hands the raw text
        to the parser, which yields empty fields. Callers must validate; we pin the
        behaviour."""
        ex = self.exchange(make_exchange, server)
        await ex.load_markets()
        server.sim.add_fault(FaultSpec(kind))
        ticker = await ex.fetch_ticker("BTC/USDT")
        for name in self.blank_on_broken_json:
            assert ticker[name] is None, name

    @pytest.mark.asyncio
    async def test_latency_delays_but_answers(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = self.exchange(make_exchange, server)
        server.sim.add_fault(FaultSpec(FaultKind.LATENCY, delay_s=0.3))
        started = time.monotonic()
        assert await ex.fetch_time() > 0
        assert time.monotonic() - started >= 0.3

    @pytest.mark.asyncio
    async def test_same_seed_gives_identical_candles(self, make_exchange: ExchangeFactory) -> None:
        results = []
        for seed in (11, 11, 12):
            async with SimulatorServer(self.config(seed=seed), clock=ManualClock(T0)) as srv:
                # What is compared is the candles, not how fast they come: Kraken answers
                # 720 exact candles (~130k tape trades, ~0.4 s CPU on a fresh seed), which
                # a loaded test machine can stretch past the usual 3 s timeout.
                ex = make_exchange(self.exchange_class, srv.base_url, timeout=30_000)
                await ex.load_markets()
                results.append(await ex.fetch_ohlcv(self.seeded_symbol, "15m", limit=50))
        assert results[0] == results[1]
        assert results[0] != results[2]

    @pytest.mark.asyncio
    async def test_credentials_are_refused_as_in_production(
        self, server: SimulatorServer, make_exchange: ExchangeFactory, credential: Credential,
    ) -> None:
        expect = self.credential_errors[credential]
        async with AsyncExitStack() as stack:
            if credential is Credential.STALE_TIMESTAMP:
                server = await stack.enter_async_context(
                    SimulatorServer(self.config(), clock=SkewedClock()))
            refused = await self._refused_call(server, make_exchange, credential)
            with pytest.raises(expect.error, match=expect.match) as raised:
                await refused()
        expect.check(raised)

    async def _refused_call(
        self, server: SimulatorServer, make: ExchangeFactory, credential: Credential,
    ) -> Callable[[], Awaitable[Any]]:
        """Provision what the case needs; the call the venue must refuse."""
        if credential is Credential.READ_ONLY_TRADE:
            server.sim.provision(self.account(
                api_key="reader", permissions=frozenset({Permission.READ})))
            ex = self.exchange(make, server, apiKey="reader")
            if self.warm_up_before_trading:
                await ex.fetch_balance()
            return lambda: ex.create_order("BTC/USDT", "market", "buy", 0.01)
        if credential is Credential.IP_NOT_WHITELISTED:
            server.sim.provision(self.account(api_key="fenced", ip_whitelist=("10.1.2.3",)))
        overrides: dict[Credential, dict[str, str]] = {
            Credential.WRONG_SECRET: {"secret": self.wrong_secret},
            Credential.UNKNOWN_KEY: {"apiKey": "nobody"},
            Credential.IP_NOT_WHITELISTED: {"apiKey": "fenced"},
        }
        ex = self.exchange(make, server, **overrides.get(credential, {}))
        fetch_balance: Callable[[], Awaitable[Any]] = ex.fetch_balance
        return fetch_balance

    @pytest.mark.asyncio
    async def test_order_book_top_is_the_ticker(
        self, make_exchange: ExchangeFactory, book_limit: int,
    ) -> None:
        async with SimulatorServer(self.config(), clock=ManualClock(T0)) as server:
            await self._book_and_ticker(make_exchange, server, book_limit)

    async def _book_and_ticker(
        self, make_exchange: ExchangeFactory, server: SimulatorServer, book_limit: int,
    ) -> None:
        """Under a frozen clock: the book, the price and the ticker are of one instant (an
        unsigned client: ccxt signs with the wall clock, which has moved on)."""
        ex = make_exchange(self.exchange_class, server.base_url)
        await ex.load_markets()
        book = await ex.fetch_order_book("ETH/USDT", book_limit)
        check_order_book(ex, book, "ETH/USDT", timestamped=self.book_timestamped)
        assert len(book["bids"]) == len(book["asks"]) == book_limit
        last = server.sim.market.price("ETH/USDT")
        assert Decimal(str(book["bids"][0][0])) == last
        assert Decimal(str(book["asks"][0][0])) == last + Decimal("0.01")
        ticker = await ex.fetch_ticker("ETH/USDT")
        assert (ticker["bid"], ticker["ask"]) == (book["bids"][0][0], book["asks"][0][0])

    @pytest.mark.asyncio
    async def test_public_trades_are_the_tape(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = self.exchange(make_exchange, server)
        await ex.load_markets()
        trades = await ex.fetch_trades("ETH/USDT", limit=20)
        assert 1 <= len(trades) <= 20
        for trade in trades:
            check_trade(ex, trade, "ETH/USDT")
        inst = server.sim.market.instrument("ETH/USDT")
        tape = server.sim.market.tape.recent(inst, 40)
        by_time = {t.time_ms: t for t in tape}
        for trade in trades:
            printed = by_time[trade["timestamp"]]
            assert (trade["price"], trade["amount"]) == (float(printed.price),
                                                         float(printed.qty))
            assert trade["side"] == ("buy" if printed.taker_buys else "sell")
        assert trades[-1]["price"] == float(server.sim.market.price(  # the price then: on
            "ETH/USDT", at_ms=trades[-1]["timestamp"]))  # a busy machine a tick may pass

    @pytest.mark.asyncio
    async def test_own_fills_carry_the_fee_in_the_venues_asset(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = self.exchange(make_exchange, server)
        await ex.load_markets()
        before = await ex.fetch_balance()
        buy = await ex.create_order("ETH/USDT", "market", "buy", 1)
        sell = await ex.create_order("ETH/USDT", "market", "sell", 0.5)
        mine = await ex.fetch_my_trades("ETH/USDT")
        for trade in mine:
            check_trade(ex, trade, "ETH/USDT", public=False)
        # both fills may share a millisecond: ccxt's sort by time cannot order them
        assert sorted(t["order"] for t in mine) == sorted([buy["id"], sell["id"]])
        bought, sold = sorted(mine, key=lambda t: t["order"] != buy["id"])
        assert bought["fee"]["currency"] == ("ETH" if self.buy_fee_in_base else "USDT")
        expected = 1 * self.taker_fee if self.buy_fee_in_base else bought["cost"] * self.taker_fee
        assert float(bought["fee"]["cost"]) == pytest.approx(expected)
        assert sold["fee"]["currency"] == "USDT"
        assert float(sold["fee"]["cost"]) == pytest.approx(sold["cost"] * self.taker_fee)
        assert bought["takerOrMaker"] == "taker"
        after = await ex.fetch_balance()
        eth_fee = float(bought["fee"]["cost"]) if self.buy_fee_in_base else 0
        assert after["ETH"]["total"] == pytest.approx(before["ETH"]["total"] + 0.5 - eth_fee)

    @pytest.mark.asyncio
    async def test_stop_loss_fires_on_the_path_and_its_fill_is_listed(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = self.exchange(make_exchange, server)
        await ex.load_markets()
        server.sim.set_price("ETH/USDT", Decimal("3100"))
        stop = await self.place_stop_loss(ex, "ETH/USDT", 1, 3000)
        assert server.sim.accounts.get(API_KEY_OF_SUITE) is not None
        assert await ex.fetch_my_trades("ETH/USDT") == []
        server.sim.set_price("ETH/USDT", Decimal("2990"))  # through the stop, not the limit
        fired = await self.fetch_stop(ex, stop, "ETH/USDT")
        assert fired["status"] == "closed"
        (fill,) = await ex.fetch_my_trades("ETH/USDT")
        assert (fill["side"], fill["amount"]) == ("sell", 1)
        assert fill["price"] == 2990  # the bid when it fired

    @pytest.mark.asyncio
    async def test_trading_fee_rate_is_the_venues(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = self.exchange(make_exchange, server)
        await ex.load_markets()
        fee = await ex.fetch_trading_fee("ETH/USDT")
        check_trading_fee(ex, fee, "ETH/USDT")
        assert (fee["maker"], fee["taker"]) == (self.maker_fee, self.taker_fee)
