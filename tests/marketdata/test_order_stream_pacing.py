"""Every socket ccxt.pro dials for the daemon is paced at the dial, its own redials included:
a LIVE order stream's, and a market-data shard's.

ccxt.pro forgets a client the venue closed and dials its URL again on the next watch of
the same instance (`ctsd.exchanges.ccxt_internals.ws_clients`). Pacing the stream when
it was made did not see that dial, and a venue that counts new connections per IP
(OKX: 3 a second) saw four in a second during the partial-fill fault hunt under load.
Here every venue's private stream is dropped by the venue and watched again on the same
instance: each dial took a turn of the venue's pacer, and the simulator counted no
connection over the limit. A hub shard with candles on its socket too is healed by
ccxt.pro on the next watch, with no watch of the hub failing: that dial takes its turn
as well."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ctsd.clock import SystemClock
from ctsd.errors import ExchangeFailure
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.streams import ConnectionPacers, Pacer, StreamKind
from ctsd.marketdata.feeds import SubKey
from ctsd.marketdata.hub import MarketDataHub
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from tests.marketdata.conftest import BINANCE, FAST, WAIT_S, live, polled, until, violations
from tests.marketdata.test_partial_fill_fees import PRIVATE
from tests.support.exchange_clients import credentials_for


def counted(pacer: Pacer) -> Callable[[], int]:
    """Counts the turns `pacer` gives (and still waits them); the count so far."""
    turns = 0
    wait = pacer.wait

    async def counting() -> None:
        nonlocal turns
        turns += 1
        await wait()

    pacer.wait = counting  # type: ignore[method-assign]
    return lambda: turns


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", sorted(PRIVATE))
async def test_every_dial_of_an_order_stream_takes_a_turn_of_its_venues_pacer(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str,
) -> None:
    turns = counted(factory.connection_pacers.pacer(venue))
    stream = await factory.order_stream(ConnectionTarget(venue, ApiType.SPOT),
                                        credentials_for(venue))
    watches: list[asyncio.Future[object]] = []
    try:
        watches.append(asyncio.ensure_future(stream.orders()))
        await polled(stream.connected)
        assert turns() == 1
        server.sim.add_fault(FaultSpec(FaultKind.WS_DROP, venue=venue,
                                       path_prefix=PRIVATE[venue]))
        with pytest.raises(ExchangeFailure):
            async with asyncio.timeout(WAIT_S):
                await watches[0]
        watches.append(asyncio.ensure_future(stream.orders()))  # the same instance again
        await polled(lambda: turns() >= 2 and stream.connected())  # (a drop that came late
        # to an idle socket may hit the redial too: that one takes its turn as well)
    finally:
        for watch in watches:
            watch.cancel()
        await stream.close()
    assert violations(server) == {}


@pytest.mark.asyncio
async def test_a_hub_shards_redial_by_ccxt_takes_a_turn_of_its_venues_pacer(
    server: SimulatorServer, factory: ExchangeClientFactory,
) -> None:
    pacers = ConnectionPacers(SystemClock())
    turns = counted(pacers.pacer(BINANCE.exchange))
    async with MarketDataHub(factory.market_stream, SystemClock(), FAST, pacers) as hub:
        tick = hub.subscribe(SubKey(BINANCE, StreamKind.TICKER, "BTC/USDT")).subscription
        candles = hub.subscribe(SubKey(BINANCE, StreamKind.CANDLES, ("ETH/USDT", "1m")))
        await live(hub, tick)
        await live(hub, candles.subscription)
        assert turns() == 1
        server.sim.add_fault(FaultSpec(FaultKind.WS_DROP, venue=BINANCE.exchange))
        await until(hub, lambda: tick.reconnects > 0 and tick.live)
        assert turns() == 1 + tick.reconnects  # each dial, the hub's and ccxt.pro's own
    assert violations(server) == {}
