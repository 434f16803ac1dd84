"""A private order stream cut while its replacement is still being opened: the reopen
hangs in one phase (the venue does not answer the listen-key/listenToken request, or the
WebSocket handshake; Binance spot, cross margin and USDⓈ-M, Bybit and OKX) and the stream
must still come back and carry the next fill.

Why: a reopen that never connects kept `OrderFeed` waiting for good (a LIVE engine then
ran on REST reconciliation for the rest of its life, every fill read over REST). ccxt's
own timeouts end some of these hangs after 10 s, and others never. The feed now gives a
reopen `connect_s` to connect (its turn at the venue's connection pacer aside), then
opens another; and closing the stuck stream cancels its dial rather than waiting out the
handshake. Each case cuts the live socket with the hang armed for the reopen's phase and
asserts, well inside ccxt's 10 s, that the stream is live again and delivers a fill."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from decimal import Decimal

import pytest

from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from tests.marketdata.conftest import WAIT_S, violations
from tests.marketdata.order_streams import (
    feed_of,
    funded,
    stream_agrees_with_rest,
    stream_orders,
)

pytestmark = pytest.mark.asyncio

BACK_S = 6.0
"""Live again within this (ccxt's connection and request timeouts are 10 s here)."""
CONNECT_S = 1.0

CASES = {
    # name: (venue, api type, symbol, private socket path, path the reopen hangs on, method)
    "spot-socket": ("binance", ApiType.SPOT, "BTC/USDT", "/ws-api", "/ws-api/v3", None),
    "margin-token": ("binance", ApiType.MARGIN, "BTC/USDT", "/ws-api",
                     "/sapi/v1/userListenToken", "POST"),
    "margin-socket": ("binance", ApiType.MARGIN, "BTC/USDT", "/ws-api", "/ws-api/v3", None),
    "usdm-key": ("binance", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", "/fstream",
                 "/fapi/v1/listenKey", "POST"),
    "usdm-socket": ("binance", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", "/fstream",
                    "/fstream", None),
    # a login per socket: only the handshake can hang
    "bybit-socket": ("bybit", ApiType.SPOT, "BTC/USDT", "/v5/private", "/v5/private", None),
    "okx-socket": ("okx", ApiType.SPOT, "BTC/USDT", "/ws/v5/private", "/ws/v5/private", None),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_stream_cut_while_its_reopen_hangs_comes_back_and_delivers(
    server: SimulatorServer, factory: ExchangeClientFactory, case: str,
) -> None:
    venue, api_type, symbol, socket_path, hang_path, method = CASES[case]
    target = ConnectionTarget(venue, api_type)
    credentials = funded(server, f"reopen-{case}")
    async with AsyncExitStack() as stack:
        orders = await stream_orders(stack, factory, target, credentials, symbol, margin_mode=(
            "cross" if api_type is ApiType.PERPETUAL_FUTURES else None))
        feed = await feed_of(factory, target, credentials, orders, retry_s=0.05,
                             max_retry_s=0.5, connect_s=CONNECT_S)
        stack.push_async_callback(feed.close)
        # the reopen's phase hangs (once), then the live socket is cut
        server.sim.add_fault(FaultSpec(FaultKind.HANG, venue=venue, path_prefix=hang_path,
                                       method=method, delay_s=60.0))
        server.sim.add_fault(FaultSpec(FaultKind.WS_DROP, venue=venue, path_prefix=socket_path))
        async with asyncio.timeout(WAIT_S):
            while feed.gaps == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # the hub cuts it on its next tick
        try:
            async with asyncio.timeout(BACK_S):
                await feed.until_live()
        except TimeoutError:
            raise AssertionError(f"{case}: not live {BACK_S} s after the cut: "
                                 f"{feed.problem!r}, gaps {feed.gaps}") from None
        assert not server.sim.faults.pending(), "the reopen went through the hung phase"
        updates = feed.updates
        await stream_agrees_with_rest(server, orders, feed, symbol, Decimal("0.002"), "e5e5")
        assert feed.updates > updates
    assert violations(server) == {}
