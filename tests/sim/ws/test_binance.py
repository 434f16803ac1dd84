"""Unmodified `ccxt.pro.binance` / `binanceusdm` against the simulated Binance WebSockets."""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import pytest

from ctsd.sim.binance import LISTEN_KEY_KIND
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET
from tests.sim.ws.conftest import (
    ProFactory,
    RawFactory,
    ServerFactory,
    start_frozen,
)
from tests.sim.ws.streams import PositionStreams, Refusal, bounded, expect_cut
from tests.sim.ws.test_hub import FAST_HEARTBEAT


def _binance(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return pro(ccxtpro.binance, server, **config)


class TestStreams(PositionStreams):
    exchange_class = ccxtpro.binance
    ticker_fields = ("last", "high", "low", "baseVolume", "quoteVolume")
    """ccxt watches `miniTicker` by default: no best bid and ask in it."""
    refusals: ClassVar[dict[str, Refusal]] = {
        "wrong-secret": Refusal({"secret": "wrong"}, "BTC/USDT", KeyError, "-1022",
                                chained=ccxt.AuthenticationError),
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", KeyError, "-2015",
                               chained=ccxt.AuthenticationError),
        "unknown-key-futures": Refusal({"apiKey": "nobody"}, "BTC/USDT:USDT",
                                       ccxt.AuthenticationError, "-2015"),
    }
    """Spot logs in on the WebSocket API, USDⓈ-M asks REST for a listenKey first. On spot
    ccxt 4.5.90 turns Binance's refusal (AuthenticationError) into `KeyError('spot')`: its
    error handler and its subscribe both delete the same subscription (pro/binance.py
    `handle_ws_error`, `ensure_user_data_stream_ws_subscribe_signature`)."""
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "userData", "trades": "userData", "balance": "userData",
        "positions": "userData"}
    """USDⓈ-M user data makes ccxt fetch a positions snapshot (positionRisk) first."""
    position_fields = ("side", "contracts", "entryPrice", "unrealizedPnl", "marginMode")
    """`ACCOUNT_UPDATE` carries no mark price, leverage or margins."""
    streamed_pnl = False

    def balance_params(self, symbol: str) -> dict[str, Any]:
        return {"type": "future"} if ":" in symbol else {}

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        return ex.balance.get("linear" if ":" in symbol else "spot", {})

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _binance(pro, server, **config)

    def streamed_total(self, fetched: float, upnl: float) -> float:
        """ccxt reads `marginBalance` over REST, the wallet balance `wb` on the stream."""
        return fetched - upnl


# --- heartbeats and limits (raw clients: what ccxt does not show) ------------------------

STREAMS = "/binance/stream/ws"


@pytest.mark.asyncio
async def test_a_client_that_stops_answering_pings_is_cut_and_counted(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start(timing_scale=FAST_HEARTBEAT)  # ping 0.2 s, pong 0.6 s
    client = await raw(server, STREAMS)
    await expect_cut(client, server, "binance", "heartbeat", 1008, "pong timeout")


@pytest.mark.asyncio
async def test_ccxt_answers_the_pings_and_outlives_the_pong_timeout(
    start: ServerFactory, pro: ProFactory,
) -> None:
    server = await start(timing_scale=0.02)  # ping 0.4 s, pong timeout 1.2 s
    ex = pro(ccxtpro.binance, server)
    await bounded(ex.watch_ticker("BTC/USDT"))
    (conn,) = server.streams.connections
    await bounded(server.streams.until(lambda: conn.pings >= 4))  # 1.6 s: past the timeout
    assert not conn.closed
    assert server.sim.stats.by_kind[("binance", "ws_heartbeat")] == 0


@pytest.mark.asyncio
async def test_connection_attempts_past_the_limit_get_429_and_are_counted(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, _ = await start_frozen(start, limit_scale=0.01)  # 3 per 5 min
    for _ in range(3):
        await raw(server, STREAMS)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(server, "/binance/ws-api/v3")  # the WebSocket API shares the budget
    assert refused.value.status == 429
    assert refused.value.headers is not None and "Retry-After" in refused.value.headers
    assert server.sim.stats.by_kind[("binance", "ws_connections")] == 1


@pytest.mark.asyncio
async def test_the_sixth_message_in_a_second_closes_the_connection(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, _ = await start_frozen(start)  # one window: 5 messages a second on spot
    client = await raw(server, STREAMS)
    for request_id in range(6):
        await client.send({"method": "LIST_SUBSCRIPTIONS", "id": request_id})
    for request_id in range(5):
        assert await client.json() == {"result": [], "id": request_id}
    await expect_cut(client, server, "binance", "messages", 1008, "Too many requests")


@pytest.mark.asyncio
async def test_streams_past_the_limit_are_refused_and_counted(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start(limit_scale=0.002)  # 1024 → 2 streams a connection
    client = await raw(server, STREAMS)
    await client.send({"method": "SUBSCRIBE", "id": 1, "params": [
        "btcusdt@ticker", "ethusdt@ticker", "bnbusdt@ticker"]})
    refused = await client.until(lambda m: m.get("id") == 1)
    assert refused["error"]["code"] == 2
    assert "2 streams" in refused["error"]["msg"]
    assert not server.streams.topics
    assert server.sim.stats.by_kind[("binance", "ws_streams")] == 1


@pytest.mark.asyncio
async def test_an_unknown_listen_key_is_refused_at_the_handshake(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(server, "/binance/fstream/private/ws?listenKey=" + "x" * 64)
    assert refused.value.status == 400


@pytest.mark.asyncio
async def test_a_listen_key_not_kept_alive_expires_on_the_stream(
    start: ServerFactory, raw: RawFactory, pro: ProFactory,
) -> None:
    # listenKey calls carry a key, no signed timestamp
    server, clock = await start_frozen(start)
    ex = pro(ccxtpro.binanceusdm, server, apiKey=API_KEY, secret=SECRET)
    key = (await ex.fapiPrivatePostListenKey())["listenKey"]
    client = await raw(server, f"/binance/fstream/private/ws?listenKey={key}")
    clock.advance(50 * 60)
    kept = (await ex.fapiPrivatePutListenKey())["listenKey"]  # keepalive: same key, 60 min more
    assert kept == key
    clock.advance(50 * 60)
    assert server.sim.stream_tokens.get(key, LISTEN_KEY_KIND) is not None
    clock.advance(10 * 60 + 1)
    expired = await client.until(lambda m: m.get("e") == "listenKeyExpired")
    assert expired["listenKey"] == key
    with pytest.raises(ccxt.AuthenticationError, match="-1125"):
        await ex.fapiPrivatePutListenKey()


@pytest.mark.asyncio
async def test_streams_named_in_the_url_raw_and_combined(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start)
    single = await raw(server, "/binance/stream/ws/btcusdt@ticker")
    ticker = await single.until(lambda m: m.get("e") == "24hrTicker")
    assert ticker["s"] == "BTCUSDT"
    combined = await raw(server, "/binance/stream/stream?streams=btcusdt@ticker/ethusdt@ticker")
    await bounded(server.streams.until(lambda: len(server.streams.topics) == 2))
    clock.advance(5)  # both tickers change
    wrapped: dict[str, Any] = {}
    while len(wrapped) < 2:
        message = await combined.until(lambda m: "stream" in m)
        wrapped[message["stream"]] = message["data"]
    assert {name: data["s"] for name, data in wrapped.items()} == {
        "btcusdt@ticker": "BTCUSDT", "ethusdt@ticker": "ETHUSDT"}
    await combined.send({"method": "LIST_SUBSCRIPTIONS", "id": 3})
    listed = await combined.until(lambda m: m.get("id") == 3)
    assert sorted(listed["result"]) == ["btcusdt@ticker", "ethusdt@ticker"]
    assert len(server.streams.topics) == 2  # BTC's ticker serves both connections
