"""Unmodified `ccxt.pro.kraken` against the simulated Kraken WebSocket v2."""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any, ClassVar

import ccxt
import ccxt.pro as ccxtpro
import pytest

from ctsd.sim import kraken_wire
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from tests.sim.conftest import API_KEY, trader_spec
from tests.sim.test_kraken import KRAKEN_SECRET
from tests.sim.ws.conftest import (
    ProFactory,
    RawClient,
    RawFactory,
    ServerFactory,
    start_frozen,
)
from tests.sim.ws.streams import Refusal, StreamConformance, expect_cut, lose_next_book_update


def _kraken(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", KRAKEN_SECRET)
    return pro(ccxtpro.kraken, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.kraken
    symbols = ("BTC/USDT",)
    book_compare = 10
    refusals: ClassVar[dict[str, Refusal]] = {
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", ccxt.AuthenticationError,
                               "EAPI:Invalid key"),
    }
    """The token comes from REST `GetWebSocketsToken`: a bad key fails there."""
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "executions", "trades": "executions", "balance": "balances"}

    def config(self, **ws: Any) -> SimulatorConfig:
        return replace(super().config(**ws), accounts=(trader_spec(secret=KRAKEN_SECRET),))

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        return ex.balance.get("spot", {})

    def order_id(self, order_id: int) -> str:
        return kraken_wire.order_txid(order_id)

    def trade_id(self, trade_id: int) -> str:
        return kraken_wire.trade_txid(trade_id)

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _kraken(pro, server, **config)


# --- heartbeats, limits, books, tokens -----------------------------------------------------

PUBLIC = "/kraken/ws/v2"
PRIVATE = "/kraken/ws-auth/v2"


async def subscribe(client: RawClient, params: dict[str, Any], req_id: int = 1) -> Any:
    await client.send({"method": "subscribe", "params": params, "req_id": req_id})
    return await client.until(lambda m: m.get("method") == "subscribe")


@pytest.mark.asyncio
async def test_heartbeats_come_once_subscribed_and_nothing_else_is_sent(
    start: ServerFactory, raw: RawFactory,
) -> None:
    # a heartbeat each 50 ms
    server, _ = await start_frozen(start, timing_scale=0.05)
    client = await raw(server, PUBLIC)
    status = await client.json()
    assert status["channel"] == "status" and status["data"][0]["system"] == "online"
    answer = await subscribe(client, {"channel": "ticker", "symbol": ["BTC/USDT"]})
    assert answer["success"] is True
    await client.until(lambda m: m.get("channel") == "ticker")
    for _ in range(3):  # the market stands still: heartbeats only
        assert await client.json() == {"channel": "heartbeat"}
    await client.send({"method": "ping", "req_id": 9})
    pong = await client.until(lambda m: m.get("method") == "pong")
    assert pong["req_id"] == 9 and pong["success"] is True


@pytest.mark.asyncio
async def test_past_the_message_rate_the_connection_is_closed(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, _ = await start_frozen(start, limit_scale=0.1)  # 5 a second
    client = await raw(server, PUBLIC)
    await client.json()  # status
    for req_id in range(6):
        await client.send({"method": "ping", "req_id": req_id})
    for req_id in range(5):
        assert (await client.json())["req_id"] == req_id
    assert await client.json() == {"error": "Exceeded msg rate", "success": False}
    await expect_cut(client, server, "kraken", "messages", 1008, "Exceeded msg rate")


def kraken_checksum(bids: dict[float, float], asks: dict[float, float], inst: Any) -> int:
    """Kraken's algorithm, from its docs: the best 10 asks, then bids, price and quantity
    at the pair's precision with the point and leading zeros dropped, CRC32."""

    def digits(value: float, places: int) -> str:
        return f"{value:.{places}f}".replace(".", "").lstrip("0")

    top = sorted(asks.items())[:10] + sorted(bids.items(), reverse=True)[:10]
    text = "".join(digits(p, inst.price_decimals) + digits(q, inst.qty_decimals)
                   for p, q in top)
    return zlib.crc32(text.encode())


@pytest.mark.asyncio
async def test_book_updates_carry_the_checksum_and_a_gap_breaks_it(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start)
    inst = server.sim.market.instrument("BTC/USDT")
    client = await raw(server, PUBLIC)
    await subscribe(client, {"channel": "book", "symbol": ["BTC/USDT"], "depth": 10})
    snapshot = (await client.until(lambda m: m.get("type") == "snapshot"))["data"][0]
    book = {side: {lv["price"]: lv["qty"] for lv in snapshot[side]} for side in ("bids", "asks")}
    assert snapshot["checksum"] == kraken_checksum(book["bids"], book["asks"], inst)

    async def next_update() -> tuple[int, int]:
        await TestStreams.move_book(clock, server, inst, 10)
        update = (await client.until(lambda m: m.get("type") == "update"))["data"][0]
        for side in ("bids", "asks"):
            for level in update[side]:
                book[side][level["price"]] = level["qty"]
                if not level["qty"]:
                    del book[side][level["price"]]
            # Kraken's rule: truncate to the subscribed depth (no qty 0 for levels pushed out)
            kept = sorted(book[side], reverse=side == "bids")[:10]
            book[side] = {price: book[side][price] for price in kept}
        return update["checksum"], kraken_checksum(book["bids"], book["asks"], inst)

    for _ in range(2):
        sent, held = await next_update()
        assert sent == held
    # A lost update shows only while the updates after it leave its levels alone (a price
    # move re-sends every level), and where the path stands depends on the wall clock the
    # test starts at: lose updates until one shows. The sent checksum is always the book's.
    for _ in range(5):
        await lose_next_book_update(server, clock, inst, 10)
        sent, held = await next_update()
        truth = server.sim.market.books.snapshot(inst, 10)
        assert sent == kraken_checksum(
            {float(lv.price): float(lv.qty) for lv in truth.bids},
            {float(lv.price): float(lv.qty) for lv in truth.asks}, inst)
        if sent != held:
            return  # the client can tell its book is wrong
    raise AssertionError("every lost update was superseded by the next")


@pytest.mark.asyncio
async def test_a_token_is_refused_unless_issued_and_fresh(
    start: ServerFactory, raw: RawFactory, pro: ProFactory,
) -> None:
    # Kraken signs with a nonce, not a time: REST works on it
    server, clock = await start_frozen(start, TestStreams().config())
    client = await raw(server, PRIVATE)
    await client.json()
    refused = await subscribe(client, {"channel": "balances", "token": "forged"})
    assert (refused["success"], refused["error"]) == (False, "ESession:Invalid session")
    ex = _kraken(pro, server)
    token = (await ex.privatePostGetWebSocketsToken())["result"]["token"]
    clock.advance(15 * 60 + 1)  # not used within 15 minutes
    late = await subscribe(client, {"channel": "balances", "token": token}, req_id=2)
    assert late["error"] == "ESession:Invalid session"
    token = (await ex.privatePostGetWebSocketsToken())["result"]["token"]
    fresh = await subscribe(client, {"channel": "balances", "token": token}, req_id=3)
    assert fresh["success"] is True
    snapshot = await client.until(lambda m: m.get("channel") == "balances")
    assert {b["asset"] for b in snapshot["data"]} >= {"USDT", "BTC"}
    clock.advance(60 * 60)  # a token in use does not expire
    again = await subscribe(client, {"channel": "executions", "token": token}, req_id=4)
    assert again["success"] is True
