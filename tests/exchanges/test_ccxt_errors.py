"""Every failure class, per venue, from the simulator's real answers and injected faults.

ccxt is not mocked: each case makes the simulated exchange answer as the real
one would, and checks the class, the retryable flag, and that no credential
value survives in the message.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest

from ctsd.errors import (
    ExchangeFailure,
    ExchangeRateLimited,
    ExchangeRejected,
    ExchangeUnavailable,
    FailureClass,
    OrderRejection,
)
from ctsd.exchanges.ccxt_errors import error_codes, redact
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import RateLimiter
from ctsd.sim.accounts import Permission
from ctsd.sim.clock import SystemClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import trader_spec
from tests.support.exchange_clients import (
    TEST_OVERRIDES,
    VENUES,
    ClientMaker,
    credentials_for,
    exchange_sim_config,
    make_factory,
)

OTHER_SECRET = base64.b64encode(b"not-the-secret".ljust(64, b"!")).decode()


async def failure_of(call: Callable[[], Awaitable[object]]) -> ExchangeFailure:
    with pytest.raises(ExchangeFailure) as raised:
        await call()
    return raised.value


def assert_clean(failure: ExchangeFailure, credentials: ApiCredentials) -> None:
    for value in credentials.values():
        assert value not in failure.message
    assert "signature=" not in failure.message


def variant(exchange: str, **changes: str) -> ApiCredentials:
    base = credentials_for(exchange)
    fields = {"api_key": base.api_key, "secret": base.secret, "passphrase": base.passphrase}
    fields.update(changes)
    return ApiCredentials(**fields)  # type: ignore[arg-type]


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
@pytest.mark.parametrize(("case", "expected"), [
    ("unknown_key", FailureClass.AUTHENTICATION),
    ("wrong_secret", FailureClass.AUTHENTICATION),
])
async def test_bad_credentials_are_authentication(
    server: SimulatorServer, make_client: ClientMaker, exchange: str, case: str,
    expected: FailureClass,
) -> None:
    if case == "unknown_key":
        credentials = variant(exchange, api_key="nobody-knows-this-key")
    else:
        credentials = variant(exchange, secret=OTHER_SECRET)
    client = await make_client(exchange, credentials=credentials)
    failure = await failure_of(client.fetch_holdings)
    assert failure.failure is expected
    assert isinstance(failure, ExchangeRejected) and not failure.retryable
    assert failure.remedy.startswith("check the API key")
    assert_clean(failure, credentials)


IP_NOT_ALLOWED = {
    # Binance answers -2015 "Invalid API-key, IP, or permissions" for all three;
    # Kraken "EGeneral:Permission denied" for a key used from the wrong address.
    "binance": FailureClass.AUTHENTICATION,
    "bybit": FailureClass.IP_NOT_ALLOWED,
    "okx": FailureClass.IP_NOT_ALLOWED,
    "kraken": FailureClass.PERMISSION,
}


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
async def test_ip_not_whitelisted(
    server: SimulatorServer, make_client: ClientMaker, exchange: str,
) -> None:
    credentials = variant(exchange, api_key=f"fenced-{exchange}-key")
    server.sim.provision(trader_spec(api_key=credentials.api_key, secret=credentials.secret,
                                     ip_whitelist=("10.1.2.3",)))
    client = await make_client(exchange, credentials=credentials)
    failure = await failure_of(client.fetch_holdings)
    assert failure.failure is IP_NOT_ALLOWED[exchange]
    assert_clean(failure, credentials)


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
async def test_read_only_key_cannot_trade(
    server: SimulatorServer, make_client: ClientMaker, exchange: str,
) -> None:
    credentials = variant(exchange, api_key=f"reader-{exchange}-key")
    server.sim.provision(trader_spec(api_key=credentials.api_key, secret=credentials.secret,
                                     permissions=frozenset({Permission.READ})))
    client = await make_client(exchange, credentials=credentials)
    await client.fetch_holdings()  # reading works: the key is valid
    permissions = await client.key_permissions()
    assert permissions is None or (permissions.read and not permissions.trade)
    failure = await failure_of(lambda: client.create_order(
        "BTC/USDT", "buy", "limit", Decimal("0.01"), Decimal("1000")))
    assert failure.failure is FailureClass.PERMISSION
    assert_clean(failure, credentials)


class _SkewedClock(SystemClock):
    """A server clock two minutes ahead: every signed timestamp looks stale."""

    def now_ms(self) -> int:
        return super().now_ms() + 120_000


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", ["binance", "bybit", "okx"])  # Kraken signs nonces
async def test_stale_timestamp_is_clock_skew(exchange: str) -> None:
    async with SimulatorServer(exchange_sim_config(), clock=_SkewedClock()) as srv, \
            RateLimiter() as limiter, make_factory(srv, limiter) as factory:
        client = await factory.client(ConnectionTarget(exchange, ApiType.SPOT),
                                      credentials_for(exchange))
        async with client:
            assert (await client.server_time()).skew_ms > 100_000
            failure = await failure_of(client.fetch_holdings)
    assert failure.failure is FailureClass.CLOCK_SKEW
    assert failure.remedy == "synchronise the host clock (NTP)"


TRANSPORT_CASES = [
    (FaultSpec(FaultKind.MAINTENANCE), FailureClass.MAINTENANCE, ExchangeUnavailable),
    (FaultSpec(FaultKind.SERVER_ERROR, status=502), FailureClass.NETWORK, ExchangeUnavailable),
    (FaultSpec(FaultKind.HTML_503), FailureClass.NETWORK, ExchangeUnavailable),
    (FaultSpec(FaultKind.CONNECTION_RESET, count=2), FailureClass.NETWORK, ExchangeUnavailable),
    # An answer that cannot be read says nothing of whether the call landed: ask again.
    (FaultSpec(FaultKind.MALFORMED_JSON), FailureClass.EXCHANGE_ERROR, ExchangeUnavailable),
    (FaultSpec(FaultKind.TRUNCATED_JSON), FailureClass.EXCHANGE_ERROR, ExchangeUnavailable),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
@pytest.mark.parametrize(("fault", "expected", "kind"), TRANSPORT_CASES,
                         ids=[f.kind.value for f, _, _ in TRANSPORT_CASES])
async def test_transport_faults(
    server: SimulatorServer, make_client: ClientMaker, exchange: str, fault: FaultSpec,
    expected: FailureClass, kind: type[ExchangeFailure],
) -> None:
    client = await make_client(exchange)
    await client.fetch_holdings()  # markets, account mode: cached, one request per call below
    server.sim.add_fault(fault)
    failure = await failure_of(lambda: client.fetch_ticker("BTC/USDT"))
    assert failure.failure is expected
    assert isinstance(failure, kind)
    assert failure.retryable is expected.retryable
    if expected is FailureClass.EXCHANGE_ERROR:
        assert "malformed answer" in failure.message
    assert (await client.fetch_ticker("BTC/USDT")).last > 0  # the fault was consumed


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
async def test_rate_limited_answer_pauses_the_scope_for_retry_after(
    server: SimulatorServer, make_client: ClientMaker, factory: ExchangeClientFactory,
    exchange: str,
) -> None:
    client = await make_client(exchange)
    await client.fetch_holdings()
    server.sim.add_fault(FaultSpec(FaultKind.RATE_LIMIT, retry_after_s=3))
    failure = await failure_of(client.fetch_holdings)
    assert failure.failure is FailureClass.RATE_LIMITED
    assert isinstance(failure, ExchangeRateLimited) and failure.retryable
    paused = [u for u in factory.limiter.snapshot() if u.paused_for_s > 0]
    assert paused and all(2.5 < u.paused_for_s <= 3.0 for u in paused)
    assert all(u.rejections == 1 for u in paused)


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
async def test_hung_request_is_timeout(server: SimulatorServer, exchange: str) -> None:
    # A timeout well above a loaded machine's answer time (the markets load runs under it
    # too) and a hang well beyond the timeout.
    async with RateLimiter() as limiter, make_factory(
            server, limiter, timeout_s=1.0, overrides=TEST_OVERRIDES) as factory:
        client = await factory.client(ConnectionTarget(exchange, ApiType.SPOT),
                                      credentials_for(exchange))
        async with client:
            await client.load_markets()
            server.sim.add_fault(FaultSpec(FaultKind.HANG, delay_s=10))
            failure = await failure_of(lambda: client.fetch_ticker("BTC/USDT"))
    assert failure.failure is FailureClass.TIMEOUT and failure.retryable


@pytest.mark.asyncio
@pytest.mark.parametrize("exchange", VENUES)
async def test_order_rejections_say_why(
    server: SimulatorServer, make_client: ClientMaker, exchange: str,
) -> None:
    client: ExchangeClient = await make_client(exchange)
    failure = await failure_of(lambda: client.create_order(
        "BTC/USDT", "buy", "market", Decimal("100")))  # 100 BTC: far beyond the balance
    assert (failure.failure, failure.rejection) == (
        FailureClass.EXCHANGE_ERROR, OrderRejection.INSUFFICIENT_FUNDS)


def test_error_codes_are_read_from_every_venues_body() -> None:
    assert error_codes('binance {"code":-2015,"msg":"Invalid API-key"}') == ["-2015"]
    assert error_codes('bybit {"retCode":10006,"retMsg":"Too many visits!"}') == ["10006"]
    assert error_codes('okx {"code":"1","data":[{"sCode":"51008"}]}') == ["1", "51008"]
    assert error_codes('kraken {"error":["EAPI:Invalid key"]}') == ["EAPI:Invalid key"]


def test_redact_removes_credentials_and_query_strings() -> None:
    text = ("bybit GET http://h/v5/account?api_key=KEY123&timestamp=1&signature=abc "
            'error sign! origin_string[1KEY1235000] secret SECRET')
    cleaned = redact(text, ["KEY123", "SECRET"])
    assert "KEY123" not in cleaned and "SECRET" not in cleaned and "abc" not in cleaned
    assert cleaned.startswith("bybit GET http://h/v5/account?…")
    assert len(redact("x" * 1000, [])) == 300
