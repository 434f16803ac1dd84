"""Fixtures for the WebSocket tests: a simulator with a fast data loop, unmodified
`ccxt.pro` clients pointed at it, and a raw client for what ccxt cannot show.

Public-data tests run on a `ManualClock` set to the wall clock: the market stands
still until the test moves it, so a stream message and a REST answer at the same
instant are identical and nothing depends on timing. Private tests run on the wall
clock, because ccxt signs with its own time and the venues check it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest_asyncio

from ctsd.sim.clock import Clock, ManualClock
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from ctsd.sim.ws.config import WsConfig
from tests.sim.conftest import pointed_clients, sim_config

WAIT_S = 10.0
"""Upper bound on any wait for a message: a failing test fails, it never hangs."""
FAST = WsConfig(tick_s=0.01)


def ws_config(**ws: Any) -> SimulatorConfig:
    """A small market with the test data loop; `ws` overrides `WsConfig` fields."""
    return sim_config(markets=8, ws=replace(FAST, **ws))


def frozen_clock() -> ManualClock:
    """Wall time, standing still (a whole second, so the book's second is too)."""
    return ManualClock(time.time_ns() // 1_000_000 // 1000 * 1000)


ServerFactory = Callable[..., Any]


async def start_frozen(start: ServerFactory, config: SimulatorConfig | None = None,
                       **ws: Any) -> tuple[SimulatorServer, ManualClock]:
    """A running server on a `frozen_clock`, and the clock that moves it (`config`, or
    `ws_config(**ws)`, as `start` takes them)."""
    clock = frozen_clock()
    return await start(config, clock=clock, **ws), clock


@pytest_asyncio.fixture
async def start() -> AsyncIterator[ServerFactory]:
    """`await start(config=None, clock=None, **ws)` → a running server, stopped at teardown;
    without a `config`, it runs `ws_config(**ws)` (the stream settings a test scales)."""
    servers: list[SimulatorServer] = []

    async def factory(config: SimulatorConfig | None = None,
                      clock: Clock | None = None, **ws: Any) -> SimulatorServer:
        server = SimulatorServer(config or ws_config(**ws), clock=clock)
        servers.append(server)
        return await server.start()

    try:
        yield factory
    finally:
        for server in servers:
            await server.close()


ProFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def pro() -> AsyncIterator[ProFactory]:
    """`pro(ccxt.pro.<cls>, server, **config)` → a pointed, auto-closed ccxt.pro client."""
    async with pointed_clients() as make:
        yield lambda cls, server, **config: make(cls, server.base_url, **config)


class RawClient:
    """A plain WebSocket client that answers nothing by itself (no auto pong)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, payload: Any) -> None:
        await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))

    async def receive(self, within: float = WAIT_S) -> aiohttp.WSMessage:
        async with asyncio.timeout(within):
            return await self.ws.receive()

    async def json(self, within: float = WAIT_S) -> Any:
        """The next text message, parsed (a non-text frame fails the test)."""
        message = await self.receive(within)
        assert message.type is aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def until(self, match: Callable[[Any], bool], within: float = WAIT_S) -> Any:
        """The first parsed text message `match` accepts (others are skipped, pings
        answered)."""
        async with asyncio.timeout(within):
            while True:
                message = await self.ws.receive()
                if message.type is aiohttp.WSMsgType.PING:
                    await self.ws.pong(message.data)
                    continue
                assert message.type is aiohttp.WSMsgType.TEXT, message
                data = message.data if message.data in ("pong", "ping") else json.loads(
                    message.data)
                if match(data):
                    return data

    async def closed(self, within: float = WAIT_S) -> aiohttp.WSMessage:
        """Read until the server closes; the closing message."""
        async with asyncio.timeout(within):
            while True:
                message = await self.ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                    aiohttp.WSMsgType.ERROR):
                    return message


RawFactory = Callable[..., Any]


@pytest_asyncio.fixture
async def raw() -> AsyncIterator[RawFactory]:
    """`await raw(server, "/binance/stream/ws")` → a connected `RawClient`."""
    session = aiohttp.ClientSession()
    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def factory(server: SimulatorServer, path: str) -> RawClient:
        ws = await session.ws_connect(f"{server.base_url}{path}", autoping=False,
                                      autoclose=False, timeout=aiohttp.ClientWSTimeout(5))
        sockets.append(ws)
        return RawClient(ws)

    try:
        yield factory
    finally:
        for ws in sockets:
            await ws.close()
        await session.close()
