"""A key test on a perpetual-futures connection against the simulator, through real ccxt:
the account's position and margin modes are read and compared with the connection's."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ctsd.connections.checks.results import TestResult, TestStatus
from ctsd.connections.checks.tester import ConnectionTester, ConnectionTesterSettings
from ctsd.connections.model import ApiType, Connection, MarginMode, PositionMode
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials
from ctsd.sim.server import SimulatorServer
from ctsd.wiring.check_probes import ExchangeProbes, classify
from tests.store.test_connection_index import conn
from tests.support.exchange_clients import credentials_for

pytestmark = pytest.mark.asyncio
PERPETUAL_VENUES = ("binance", "bybit", "okx")


class VenueCredentials:
    async def resolve(self, connection: Connection) -> ApiCredentials:
        return credentials_for(connection.exchange)


async def key_test(factory: ExchangeClientFactory, exchange: str, position: PositionMode,
                   margin: MarginMode) -> TestResult:
    connection = replace(conn(f"{exchange}-perp", exchange),
                         api_type=ApiType.PERPETUAL_FUTURES, position_mode=position,
                         margin_mode=margin)
    tester = ConnectionTester(VenueCredentials(), ExchangeProbes(factory).open, classify,
                              ConnectionTesterSettings(timeout_s=20))
    result, _ = await tester.test(connection)
    return result


def lines(result: TestResult) -> list[str]:
    return [line.message for line in result.log_lines if line.step == "derivatives"]


@pytest.mark.parametrize("exchange", PERPETUAL_VENUES)
async def test_an_account_in_the_connections_modes_passes(
    server: SimulatorServer, factory: ExchangeClientFactory, exchange: str,
) -> None:
    result = await key_test(factory, exchange, PositionMode.ONE_WAY, MarginMode.CROSS)
    assert result.status is TestStatus.SUCCESS, result.message
    assert len(lines(result)) == 2


EXPECTED = {
    "binance": ("position mode is one-way; an engine start switches it to hedge",
                "symbols are not isolated"),
    "bybit": ("margin mode is cross; an engine start switches it to isolated",),
    "okx": ("position mode is one-way; an engine start switches it to hedge",),
}


@pytest.mark.parametrize("exchange", PERPETUAL_VENUES)
async def test_an_account_in_other_modes_warns_what_an_engine_start_changes(
    server: SimulatorServer, factory: ExchangeClientFactory, exchange: str,
) -> None:
    """The simulator's accounts start one-way and cross; the connection wants hedge and
    isolated. Each venue keeps the modes where it keeps them (Bybit: position mode per
    symbol; OKX: margin mode per order) and says so instead of warning."""
    result = await key_test(factory, exchange, PositionMode.HEDGE, MarginMode.ISOLATED)
    assert result.status is TestStatus.WARNING
    for part in EXPECTED[exchange]:
        assert part in result.message
    assert result.remedy.startswith("an engine start sets what the connection says")
    if exchange == "bybit":
        assert "position mode" not in result.message
        assert any("per symbol: an engine start sets hedge" in m for m in lines(result))
    if exchange == "okx":
        assert "margin mode" not in result.message
        assert any("with every order: engines send isolated" in m for m in lines(result))
