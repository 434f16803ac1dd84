"""A LIVE order stream's sockets are paced at each dial, ccxt.pro's own redials included.

ccxt.pro forgets a client the venue closed and dials its URL again on the next watch of
the same instance (`ctsd.exchanges.ccxt_internals.ws_clients`). Pacing the stream when
it was made did not see that dial, and a venue that counts new connections per IP
(OKX: 3 a second) saw four in a second during the partial-fill fault hunt under load.
Here every venue's private stream is dropped by the venue and watched again on the same
instance: each dial took a turn of the venue's pacer, and the simulator counted no
connection over the limit."""

from __future__ import annotations

import asyncio

import pytest

from ctsd.errors import ExchangeFailure
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from tests.marketdata.conftest import WAIT_S, polled, violations
from tests.marketdata.test_partial_fill_fees import PRIVATE
from tests.support.exchange_clients import credentials_for


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", sorted(PRIVATE))
async def test_every_dial_of_an_order_stream_takes_a_turn_of_its_venues_pacer(
    server: SimulatorServer, factory: ExchangeClientFactory, venue: str,
) -> None:
    pacer = factory.connection_pacers.pacer(venue)
    turns = 0
    wait = pacer.wait

    async def counted() -> None:
        nonlocal turns
        turns += 1
        await wait()

    pacer.wait = counted  # type: ignore[method-assign]  # counts the turns, waits them
    stream = await factory.order_stream(ConnectionTarget(venue, ApiType.SPOT),
                                        credentials_for(venue))
    watches: list[asyncio.Future[object]] = []
    try:
        watches.append(asyncio.ensure_future(stream.orders()))
        await polled(stream.connected)
        assert turns == 1
        server.sim.add_fault(FaultSpec(FaultKind.WS_DROP, venue=venue,
                                       path_prefix=PRIVATE[venue]))
        with pytest.raises(ExchangeFailure):
            async with asyncio.timeout(WAIT_S):
                await watches[0]
        watches.append(asyncio.ensure_future(stream.orders()))  # the same instance again
        await polled(lambda: turns >= 2 and stream.connected())  # (a drop that came late
        # to an idle socket may hit the redial too: that one takes its turn as well)
    finally:
        for watch in watches:
            watch.cancel()
        await stream.close()
    assert violations(server) == {}
