"""The stream hub on Binance's spot market streams: one topic for many subscribers,
faults on command (drop, stall, delay, sequence gap, periodic disconnect), and the
slow consumer. Time is the simulator's frozen clock, moved by the test; heartbeats
run on a scaled real clock where a test needs them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import pytest

from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator
from ctsd.sim.ws.connection import WsConnection
from ctsd.sim.ws.hub import CONSUMED_FAULTS, StreamHub
from ctsd.sim.ws.protocol import Topic
from ctsd.sim.ws.sampler import Sampler
from tests.sim.conftest import API_KEY, SECRET
from tests.sim.ws.conftest import (
    WAIT_S,
    ProFactory,
    RawClient,
    RawFactory,
    ServerFactory,
    frozen_clock,
    start_frozen,
    ws_config,
)
from tests.sim.ws.streams import bounded, expect_cut, levels, watch_until

STREAMS = "/binance/stream/ws"
FAST_HEARTBEAT = 0.01
"""Scales Binance spot's 20 s pings to 0.2 s (and its one-minute pong timeout to 0.6 s:
room for a test client on a loaded machine to answer)."""


async def subscribe(client: RawClient, *streams: str, request_id: int = 1) -> None:
    await client.send({"method": "SUBSCRIBE", "params": list(streams), "id": request_id})
    answer = await client.until(lambda m: isinstance(m, dict) and m.get("id") == request_id)
    assert answer == {"result": None, "id": request_id}


def connection(server: SimulatorServer) -> WsConnection:
    (conn,) = server.streams.connections
    return conn


async def fault(server: SimulatorServer, spec: FaultSpec) -> None:
    """Inject `spec` and wait until the hub applied it (it takes it off the list)."""
    server.sim.add_fault(spec)
    faults = server.sim.faults
    await bounded(server.streams.until(lambda: spec not in faults.pending()))


@pytest.mark.asyncio
async def test_one_topic_serves_every_subscriber_the_same_message(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start)
    clients = [await raw(server, STREAMS) for _ in range(3)]
    await subscribe(clients[0], "btcusdt@kline_1m")
    await clients[0].until(lambda m: m.get("e") == "kline")  # the feed is running
    for client in clients[1:]:
        await subscribe(client, "btcusdt@kline_1m")
    assert len(server.streams.topics) == 1
    clock.advance(60)
    got = [await c.until(lambda m: m.get("e") == "kline" and m["k"]["x"]) for c in clients]
    assert got[0] == got[1] == got[2]


@pytest.mark.asyncio
async def test_a_drop_fails_the_watch_and_the_next_watch_reconnects(
    start: ServerFactory, pro: ProFactory,
) -> None:
    server, clock = await start_frozen(start)
    ex = pro(ccxtpro.binance, server)
    await bounded(ex.watch_ticker("BTC/USDT"))
    pending = asyncio.ensure_future(ex.watch_ticker("BTC/USDT"))
    await fault(server, FaultSpec(FaultKind.WS_DROP, venue="binance", path_prefix="/stream"))
    with pytest.raises(ccxt.NetworkError):
        await bounded(pending)
    clock.advance(2)
    ticker = await bounded(ex.watch_ticker("BTC/USDT"))
    assert ticker["last"] == float(server.sim.market.price("BTC/USDT"))


@pytest.mark.asyncio
async def test_a_stall_stops_data_while_pings_go_on_and_loses_what_it_held(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start, timing_scale=FAST_HEARTBEAT)
    client = await raw(server, STREAMS)
    await subscribe(client, "btcusdt@ticker")
    await client.until(lambda m: m.get("e") == "24hrTicker")
    await fault(server, FaultSpec(FaultKind.WS_STALL, delay_s=1.0))
    clock.advance(5)  # the ticker changes: a message the stall swallows
    pings = 0
    while pings < 3:  # three heartbeats (0.6 s), and nothing else, arrive
        message = await client.receive()
        assert message.type is aiohttp.WSMsgType.PING, message
        await client.ws.pong(message.data)
        pings += 1
    assert connection(server).lost >= 1
    async with asyncio.timeout(WAIT_S):  # once the stall is over, data flows again
        while True:
            clock.advance(1)
            message = await client.receive()
            if message.type is aiohttp.WSMsgType.PING:
                await client.ws.pong(message.data)
                continue
            assert '"24hrTicker"' in message.data
            break


@pytest.mark.asyncio
async def test_a_delay_holds_data_but_not_replies(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start)
    client = await raw(server, STREAMS)
    await subscribe(client, "btcusdt@ticker")
    await client.until(lambda m: m.get("e") == "24hrTicker")
    await fault(server, FaultSpec(FaultKind.WS_DELAY, delay_s=0.3))
    started = time.monotonic()
    clock.advance(5)
    await client.send({"method": "LIST_SUBSCRIPTIONS", "id": 7})
    assert await client.json() == {"result": ["btcusdt@ticker"], "id": 7}
    ticker = await client.json()
    assert ticker["e"] == "24hrTicker"
    assert time.monotonic() - started >= 0.3


@pytest.mark.asyncio
async def test_a_sequence_gap_fails_the_book_and_the_next_watch_resyncs(
    start: ServerFactory, pro: ProFactory,
) -> None:
    server, clock = await start_frozen(start)
    ex = pro(ccxtpro.binance, server)
    symbol, market = "BTC/USDT", server.sim.market
    inst = market.instrument(symbol)
    await bounded(ex.watch_order_book(symbol))
    await fault(server, FaultSpec(FaultKind.WS_GAP))
    clock.advance(1)  # this diff is lost…
    await bounded(server.streams.until(lambda: connection(server).lost == 1))
    clock.advance(1)  # …and the next one no longer follows the client's last id
    with pytest.raises(ccxt.ChecksumError):
        await watch_until(lambda: ex.watch_order_book(symbol), lambda _: False)
    truth = market.books.snapshot(inst, 20)

    def synced(book: Any) -> bool:
        return levels(book["bids"], 20) == [(lv.price, lv.qty) for lv in truth.bids]

    book = await watch_until(lambda: ex.watch_order_book(symbol), synced)
    assert book["nonce"] >= truth.sequence


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(CONSUMED_FAULTS))
async def test_a_fault_of_count_n_hits_n_connections_once_each(
    start: ServerFactory, raw: RawFactory, kind: FaultKind,
) -> None:
    """`count` is the number of connections a fault hits: with four uses and three
    connections open, each open one is hit once (not the first one four times, which
    left a "stall every socket" sparing the one that carried the data) and the last use
    waits for the next connection."""
    server, _ = await start_frozen(start)
    hub, faults = server.streams, server.sim.faults
    for _ in range(3):
        await raw(server, STREAMS)
    await bounded(hub.until(lambda: len(hub.connections) == 3))
    opened = list(hub.connections)
    server.sim.add_fault(FaultSpec(kind, count=4, venue="binance", delay_s=60))
    await bounded(hub.until(lambda: all(c.faults_taken for c in opened)))
    (serial,) = {s for c in opened for s in c.faults_taken}
    assert [c.faults_taken for c in opened] == [{serial}] * 3
    assert [(f.serial, f.count) for f in faults.pending()] == [(serial, 1)]
    if kind is FaultKind.WS_STALL:
        assert all(c.stalled for c in opened)
    if kind is FaultKind.WS_DROP:
        assert all(c.closed for c in opened)
    await raw(server, STREAMS)
    await bounded(hub.until(lambda: not faults.pending()))
    assert [c.faults_taken for c in hub.connections if c not in opened] == [{serial}]


@pytest.mark.asyncio
async def test_a_periodic_disconnect_closes_every_connection_until_cleared(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start(timing_scale=FAST_HEARTBEAT)
    server.sim.add_fault(FaultSpec(FaultKind.WS_DISCONNECT_EVERY, delay_s=0.2,
                                   path_prefix="/stream"))
    for _ in range(2):
        opened = time.monotonic()
        client = await raw(server, STREAMS)
        closing = await client.closed()
        assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 1000
        assert time.monotonic() - opened >= 0.2
    server.sim.clear_faults()
    client = await raw(server, STREAMS)
    for _ in range(2):  # 0.4 s of heartbeats: past the 0.2 s it would have lasted
        message = await client.receive()
        assert message.type is aiohttp.WSMsgType.PING, message
        await client.ws.pong(message.data)


@pytest.mark.asyncio
async def test_a_client_that_does_not_read_is_cut_and_counted(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start, send_queue_max=3)
    client = await raw(server, STREAMS)
    names = [f"{s.lower().replace('/', '')}@ticker" for s in
             ("BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT")]
    await subscribe(client, *names)
    clock.advance(5)  # six messages in one tick, three fit
    await expect_cut(client, server, "binance", "slow_consumer", 1008, "send queue overflow")


class CountingTopic(Topic):
    def __init__(self, interval_ms: int) -> None:
        super().__init__(("test", interval_ms), interval_ms)
        self.polled_at: list[int] = []

    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        self.polled_at.append(now_ms)
        return []


def test_the_loop_polls_a_topic_once_per_period_of_simulator_time() -> None:
    clock = frozen_clock()
    hub = StreamHub(Simulator(ws_config(), clock=clock), {})
    topic = CountingTopic(1000)
    hub.topics[topic.key] = topic
    start = clock.now_ms()
    for _ in range(10):
        clock.advance(0.25)
        hub.tick()
    assert [t - start for t in topic.polled_at] == [250, 1250, 2250]
    clock.advance(60)  # a loop that fell behind polls once, then keeps the period
    hub.tick()
    hub.tick()
    assert [t - start for t in topic.polled_at[3:]] == [62_500]


@pytest.mark.asyncio
async def test_admin_ws_lists_connections_their_topics_and_channels(
    start: ServerFactory, raw: RawFactory, pro: ProFactory,
) -> None:
    server = await start()
    client = await raw(server, STREAMS)
    await subscribe(client, "btcusdt@ticker", "ethusdt@ticker")
    ex = pro(ccxtpro.binance, server, apiKey=API_KEY, secret=SECRET)
    await ex.load_markets()
    watching = asyncio.ensure_future(ex.watch_balance())
    hub = server.streams
    await bounded(hub.until(lambda: any(s.channels for s in hub.connections.values())))
    async with aiohttp.ClientSession() as session, session.get(
            f"{server.base_url}/admin/ws") as answer:
        state = await answer.json()
    by_path = {c["path"]: c for c in state["connections"]}  # below the venue prefix
    assert by_path["/stream/ws"]["topics"] == 2
    assert by_path["/stream/ws"]["surface"] == "spot-streams"
    assert by_path["/ws-api/v3"]["channels"] == ["userData"]
    assert state["topics"] == 2
    watching.cancel()
