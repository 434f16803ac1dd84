"""Unmodified `ccxt.pro.bybit` against the simulated Bybit v5 WebSockets."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar

import ccxt
import ccxt.pro as ccxtpro
import pytest

from ctsd.sim.server import SimulatorServer
from ctsd.sim.ws.connection import WsConnection
from tests.sim.conftest import API_KEY, SECRET
from tests.sim.ws.conftest import (
    WAIT_S,
    ProFactory,
    RawClient,
    RawFactory,
    ServerFactory,
    start_frozen,
)
from tests.sim.ws.streams import PositionStreams, Refusal, lose_next_book_update


def _bybit(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return pro(ccxtpro.bybit, server, **config)


class TestStreams(PositionStreams):
    exchange_class = ccxtpro.bybit
    book_limit = 50
    refusals: ClassVar[dict[str, Refusal]] = {
        "wrong-secret": Refusal({"secret": "wrong"}, "BTC/USDT", ccxt.AuthenticationError,
                                "Invalid sign"),
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", ccxt.AuthenticationError,
                               "Invalid apikey"),
    }

    async def prepare(self, ex: Any) -> None:
        await ex.load_markets()
        await ex.isUnifiedEnabled()  # the account type, read once over REST

    private_channels: ClassVar[dict[str, str]] = {
        "orders": "order", "trades": "execution", "balance": "wallet",
        "positions": "position"}

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        return ex.balance.get("unified", {})

    def streamed_total(self, fetched: float, upnl: float) -> float:
        """ccxt reads `walletBalance` over REST, `equity` (with the PnL) on the stream."""
        return fetched + upnl

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _bybit(pro, server, **config)


# --- heartbeats, limits, sequence (raw clients) -------------------------------------------

PUBLIC = "/bybit/v5/public/spot"
SCALE = 0.0025
"""Bybit's ten idle minutes → 1.5 s (room for a pinging client on a loaded machine)."""


async def ping_until(client: RawClient, done: Callable[[], bool]) -> None:
    """Keep `client` alive with `{"op": "ping"}` until `done()`."""
    async with asyncio.timeout(WAIT_S):
        while not done():
            await client.send({"op": "ping"})
            pong = await client.json()
            assert (pong["op"], pong["ret_msg"]) == ("ping", "pong")


@pytest.mark.asyncio
async def test_a_silent_connection_is_cut_and_a_pinging_one_is_not(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start(timing_scale=SCALE)
    silent, pinging = await raw(server, PUBLIC), await raw(server, PUBLIC)
    closed = asyncio.ensure_future(silent.closed())
    await ping_until(pinging, closed.done)
    assert (await closed).data == 1000
    await ping_until(pinging, lambda: True)
    assert not connection_of(server, "/v5/public/spot").closed
    assert server.sim.stats.by_kind[("bybit", "ws_heartbeat")] == 1


@pytest.mark.asyncio
async def test_max_active_time_shortens_a_private_connections_life(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start(timing_scale=SCALE * 10)  # default 15 s, 30 s → 0.75 s
    short = await raw(server, "/bybit/v5/private?max_active_time=30s")
    default = await raw(server, "/bybit/v5/private")
    assert (await short.closed()).data == 1000
    assert not connection_of(server, "/v5/private").closed
    await default.send({"op": "ping", "req_id": "7"})
    pong = await default.json()
    assert (pong["op"], pong["req_id"]) == ("pong", "7")


@pytest.mark.asyncio
async def test_more_than_ten_args_on_spot_are_refused_and_counted(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start()
    client = await raw(server, PUBLIC)
    await client.send({"op": "subscribe", "req_id": "1",
                       "args": [f"kline.{i}.BTCUSDT" for i in (1, 3, 5, 15, 30, 60, 120, 240,
                                                                360, 720, "D")]})
    answer = await client.json()
    assert answer["success"] is False and answer["req_id"] == "1"
    assert server.sim.stats.by_kind[("bybit", "ws_args")] == 1


@pytest.mark.asyncio
async def test_book_deltas_count_up_and_a_gap_shows_in_u(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start)
    client = await raw(server, PUBLIC)
    await client.send({"op": "subscribe", "args": ["orderbook.50.BTCUSDT"]})
    snapshot = await client.until(lambda m: m.get("type") == "snapshot")
    held = {"b": dict(snapshot["data"]["b"]), "a": dict(snapshot["data"]["a"])}
    u = snapshot["data"]["u"]
    inst = server.sim.market.instrument("BTC/USDT")
    for _ in range(2):  # deltas follow u one by one and rebuild the book exactly
        await TestStreams.move_book(clock, server, inst, 50)
        delta = await client.until(lambda m: m.get("type") == "delta")
        assert delta["data"]["u"] == u + 1
        u = delta["data"]["u"]
        for side in ("b", "a"):
            for price, qty in delta["data"][side]:
                held[side].pop(price) if Decimal(qty) == 0 else held[side].update({price: qty})
        truth = server.sim.market.books.snapshot(inst, 50)
        assert sorted(Decimal(p) for p in held["b"]) == sorted(lv.price for lv in truth.bids)
    await lose_next_book_update(server, clock, inst, 50)
    await TestStreams.move_book(clock, server, inst, 50)
    delta = await client.until(lambda m: m.get("type") == "delta")
    assert delta["data"]["u"] == u + 2  # one lost: the client can tell


def connection_of(server: SimulatorServer, path: str) -> WsConnection:
    return next(c for c in server.streams.connections if c.venue_path.startswith(path)
                and not c.closed)
