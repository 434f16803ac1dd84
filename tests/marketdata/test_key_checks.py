"""The streams step of a key test on a websocket connection (`StreamProbes`) against the
simulator: public data and a private login succeed, and each way it can fail is named — no
data (a silent stall), a refused login — never a hang."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ctsd.connections.model import MarketDataMethod
from ctsd.errors import ExchangeFailure, FailureClass
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials
from ctsd.exchanges.spec import ApiType
from ctsd.marketdata.hub import MarketDataHub
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.wiring.check_probes import StreamProbes
from tests.store.test_connection_index import conn
from tests.support.exchange_clients import CREDENTIALS, credentials_for

CONNECTION = replace(conn("ws", "binance"), market_data_method=MarketDataMethod.WEBSOCKET)


@pytest.mark.asyncio
@pytest.mark.parametrize(("exchange", "api_type"), [
    (x, t) for x in ("binance", "bybit", "okx", "kraken") for t in ApiType
    if t in (ApiType.SPOT, ApiType.PERPETUAL_FUTURES)
    and (x, t) != ("kraken", ApiType.PERPETUAL_FUTURES)])
async def test_a_websocket_connection_streams_public_data_and_logs_in(
    hub: MarketDataHub, factory: ExchangeClientFactory, exchange: str, api_type: ApiType,
) -> None:
    """Every venue and market type the daemon streams: a public ticker, and the private
    login as the pinned ccxt.pro does it (Binance's WebSocket API signature or USDⓈ-M
    listenKey, Bybit `auth`, OKX `login`, Kraken's token from GetWebSocketsToken)."""
    probes = StreamProbes(factory, lambda: hub)
    connection = replace(CONNECTION, exchange=exchange, api_type=api_type)
    assert " ticker received in " in await probes.public(connection, 10)
    assert await probes.private(connection, credentials_for(exchange), 10) == (
        "logged in; order updates subscribed")
    assert hub.subscriptions() == ()  # the check leaves nothing subscribed


@pytest.mark.asyncio
async def test_a_refused_login_is_an_authentication_failure(
    hub: MarketDataHub, factory: ExchangeClientFactory,
) -> None:
    wrong = ApiCredentials(CREDENTIALS.api_key, "not-the-secret")
    with pytest.raises(ExchangeFailure) as refused:
        await StreamProbes(factory, lambda: hub).private(CONNECTION, wrong, 10)
    assert refused.value.failure is FailureClass.AUTHENTICATION


@pytest.mark.asyncio
async def test_a_stream_without_data_fails_in_time_naming_it(
    hub: MarketDataHub, factory: ExchangeClientFactory, server: SimulatorServer,
) -> None:
    server.sim.add_fault(FaultSpec(FaultKind.WS_STALL, venue="binance", delay_s=60))
    with pytest.raises(ExchangeFailure, match="no BTC/USDT ticker on the stream within 2 s"
                       ) as silent:
        await StreamProbes(factory, lambda: hub).public(CONNECTION, 2)
    assert silent.value.failure is FailureClass.TIMEOUT
