"""Key tests on margin and options connections against the simulator, through real ccxt.

A margin test reads the margin account (its level, what is owed and the interest)
and the key's margin permission; an options test lists the option contracts and
reads the options account. Each failure has its class and remedy; a venue's 404
is an exchange error naming the endpoint, tested once and never retried.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.connections.checks.results import TestResult, TestStatus
from ctsd.connections.checks.tester import ConnectionTester, ConnectionTesterSettings
from ctsd.connections.model import ApiType, Connection, MarginMode
from ctsd.errors import FailureClass
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.settings import ExchangeSettings
from ctsd.ratelimit import RateLimiter
from ctsd.sim.accounts import DEFAULT_PERMISSIONS, Permission
from ctsd.sim.server import SimulatorServer
from ctsd.wiring.check_probes import ExchangeProbes, classify
from tests.sim.conftest import trader_spec
from tests.store.test_connection_index import conn
from tests.support.exchange_clients import TEST_OVERRIDES, credentials_for

pytestmark = pytest.mark.asyncio
MARGIN_VENUES = ("binance", "bybit", "okx", "kraken")
OPTION_VENUES = ("binance", "bybit", "okx")


class NoResolver:
    async def resolve(self, connection: Connection) -> ApiCredentials:
        raise AssertionError("credentials are given")


def account(server: SimulatorServer, exchange: str, name: str, **spec: object,
            ) -> ApiCredentials:
    """A fresh simulated account of its own (Kraken's secret is base64)."""
    secret = base64.b64encode(f"{name}-secret".encode().ljust(64, b".")).decode() \
        if exchange == "kraken" else f"{name}-secret"
    credentials = ApiCredentials(f"{name}-key", secret, "sim-passphrase")
    spec.setdefault("margin", {"USDT": Decimal(10_000), "BTC": Decimal(1)})
    spec.setdefault("options", {"USDT": Decimal(10_000)})
    server.sim.provision(trader_spec(api_key=credentials.api_key, secret=secret,
                                     passphrase=credentials.passphrase, **spec))
    return credentials


async def key_test(factory: ExchangeClientFactory, exchange: str, api_type: ApiType,
                   credentials: ApiCredentials, mode: MarginMode = MarginMode.CROSS,
                   ) -> TestResult:
    connection = replace(conn(f"{exchange}-{api_type.value}", exchange), api_type=api_type,
                         margin_mode=mode)
    tester = ConnectionTester(NoResolver(), ExchangeProbes(factory).open, classify,
                              ConnectionTesterSettings(timeout_s=20))
    result, _ = await tester.test(connection, credentials)
    return result


def lines(result: TestResult, step: str) -> list[str]:
    return [line.message for line in result.log_lines if line.step == step]


async def borrow(factory: ExchangeClientFactory, exchange: str,
                 credentials: ApiCredentials) -> None:
    """Owe some BTC as each venue lends it: a loan, or a margin sell of more than held."""
    client = await factory.client(ConnectionTarget(exchange, ApiType.MARGIN), credentials)
    try:
        await client.load_markets()
        if exchange == "binance":
            await client.call("borrow_cross_margin", "BTC", 0.5, signed=True)
        elif exchange == "bybit":
            await client.call("privatePostV5SpotMarginTradeSwitchMode", {"spotMarginMode": "1"},
                              signed=True)
            await client.call("borrow_cross_margin", "BTC", 0.5, signed=True)
        elif exchange == "okx":
            await client.call("create_order", "BTC/USDT", "market", "sell", 2.5, None,
                              {"marginMode": "cross"}, signed=True)
        else:
            await client.call("create_order", "BTC/USDT", "market", "sell", 0.5, None,
                              {"leverage": 2}, signed=True)
    finally:
        await client.close()


@pytest.mark.parametrize("exchange", MARGIN_VENUES)
async def test_a_margin_test_reads_the_level_the_debt_and_its_interest(
    server: SimulatorServer, factory: ExchangeClientFactory, exchange: str,
) -> None:
    credentials = account(server, exchange, f"{exchange}-borrower")
    await borrow(factory, exchange, credentials)
    result = await key_test(factory, exchange, ApiType.MARGIN, credentials)
    assert result.status is TestStatus.SUCCESS, result.message
    found = lines(result, "margin")
    assert len(found) == 1 and found[0].startswith("cross margin account: ")
    assert "BTC (interest " in found[0] and "nothing owed" not in found[0]
    level_name = {"binance": "margin level", "bybit": "maintenance margin rate",
                  "okx": "margin ratio", "kraken": "margin level (%)"}[exchange]
    assert f"{level_name} " in found[0]
    if exchange == "binance":
        assert "margin" in result.capabilities


async def test_binance_isolated_margin_reads_the_isolated_account(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    """No pair has isolated collateral yet: the key works, engines could not borrow."""
    credentials = account(server, "binance", "isolated-reader")
    result = await key_test(factory, "binance", ApiType.MARGIN, credentials,
                            MarginMode.ISOLATED)
    assert result.status is TestStatus.WARNING
    assert lines(result, "margin")[0].startswith("isolated margin account: nothing owed")
    assert result.message == ("the isolated margin account holds nothing: engines have no "
                              "collateral")


@pytest.mark.parametrize("exchange", ["bybit", "kraken"])
async def test_a_venue_without_isolated_spot_margin_says_so(
    server: SimulatorServer, factory: ExchangeClientFactory, exchange: str,
) -> None:
    credentials = account(server, exchange, f"{exchange}-isolated")
    result = await key_test(factory, exchange, ApiType.MARGIN, credentials,
                            MarginMode.ISOLATED)
    assert result.status is TestStatus.WARNING
    assert f"{exchange} lends on spot margin cross only" in result.message
    assert "set the connection's margin_mode to cross" in result.remedy


async def test_bybit_spot_margin_off_is_a_warning_an_engine_start_lifts(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    credentials = account(server, "bybit", "bybit-margin-off")
    result = await key_test(factory, "bybit", ApiType.MARGIN, credentials)
    assert result.status is TestStatus.WARNING
    assert "spot margin trading is off" in result.message
    assert "an engine start switches it on" in result.message


async def test_binance_margin_without_collateral_warns(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    credentials = account(server, "binance", "empty-margin", margin={})
    result = await key_test(factory, "binance", ApiType.MARGIN, credentials)
    assert result.status is TestStatus.WARNING
    assert "margin account holds nothing" in result.message
    assert result.remedy == "transfer collateral to the margin account"


@pytest.mark.parametrize(("exchange", "api_type", "withheld", "remedy"), [
    ("binance", ApiType.MARGIN, Permission.MARGIN, "enable margin (borrowing) on the key"),
    ("binance", ApiType.OPTIONS, Permission.OPTIONS, "enable options trading on the key"),
    ("bybit", ApiType.OPTIONS, Permission.OPTIONS, "enable options trading on the key"),
])
async def test_a_key_without_the_markets_permission_fails_with_the_remedy(
    server: SimulatorServer, factory: ExchangeClientFactory, exchange: str,
    api_type: ApiType, withheld: Permission, remedy: str,
) -> None:
    credentials = account(server, exchange, f"{exchange}-no-{withheld.value}",
                          permissions=DEFAULT_PERMISSIONS - {withheld})
    result = await key_test(factory, exchange, api_type, credentials)
    assert result.status is TestStatus.FAILED
    assert result.failure_class is FailureClass.PERMISSION
    assert result.message == (f"permissions: the key may not trade {api_type.value} "
                              f"(the {api_type.value} permission is off)")
    assert result.remedy.startswith(remedy)


@pytest.mark.parametrize("exchange", OPTION_VENUES)
async def test_an_options_test_lists_contracts_and_reads_the_options_account(
    server: SimulatorServer, factory: ExchangeClientFactory, exchange: str,
) -> None:
    result = await key_test(factory, exchange, ApiType.OPTIONS,
                            account(server, exchange, f"{exchange}-options"))
    assert result.status is TestStatus.SUCCESS, result.message
    chain, wallet = lines(result, "options")
    assert " option contracts on BTC, ETH, settled in " in chain
    assert "next expiry 20" in chain
    settle = "BTC" if exchange == "okx" else "USDT"
    assert wallet.startswith("options account: ") and f" {settle} equity (" in wallet
    if exchange != "okx":  # OKX keys have no options permission of their own
        assert "options" in result.capabilities


async def test_an_empty_binance_options_wallet_warns(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    result = await key_test(factory, "binance", ApiType.OPTIONS,
                            account(server, "binance", "no-premium", options={}))
    assert result.status is TestStatus.WARNING
    assert "the options account holds no USDT" in result.message
    assert result.remedy == "transfer funds to the options account"


async def test_kraken_has_no_options_and_says_so(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    result = await key_test(factory, "kraken", ApiType.OPTIONS, credentials_for("kraken"))
    assert result.status is TestStatus.FAILED
    assert result.failure_class is FailureClass.EXCHANGE_ERROR
    assert "kraken does not offer options" in result.message


async def test_a_venues_404_fails_the_test_as_an_exchange_error_naming_the_endpoint(
    server: SimulatorServer,
) -> None:
    """Binance at a base URL that serves another venue: every path is a 404 page."""
    wrong = {"binance": ExchangeSettings.at_simulator(server.base_url, "okx")}
    async with RateLimiter() as limiter, ExchangeClientFactory(
            limiter, exchanges=wrong, overrides=TEST_OVERRIDES, timeout_s=3.0) as factory:
        result = await key_test(factory, "binance", ApiType.SPOT, credentials_for("binance"))
    assert result.status is TestStatus.FAILED
    assert result.failure_class is FailureClass.EXCHANGE_ERROR
    assert not result.failure_class.retryable
    assert result.message.startswith(
        "markets: binance does not serve GET /api/v3/exchangeInfo (HTTP 404)")
    assert server.sim.snapshot()["unserved"] == {"okx GET /api/v3/exchangeInfo": 1}
