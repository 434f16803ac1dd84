"""Unmodified `ccxt.pro.okx` against the simulated OKX v5 WebSockets."""

from __future__ import annotations

import asyncio
import zlib
from decimal import Decimal
from typing import Any, ClassVar

import aiohttp
import ccxt
import ccxt.pro as ccxtpro
import pytest

from ctsd.sim import okx_wire
from ctsd.sim.market import Instrument
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, PASSPHRASE, SECRET
from tests.sim.ws.conftest import (
    WAIT_S,
    ProFactory,
    RawFactory,
    ServerFactory,
    start_frozen,
)
from tests.sim.ws.streams import (
    PositionStreams,
    Refusal,
    bounded,
    levels,
    lose_next_book_update,
    watch_until,
)


def _okx(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    config.setdefault("password", PASSPHRASE)
    return pro(ccxtpro.okx, server, **config)


class TestStreams(PositionStreams):
    exchange_class = ccxtpro.okx
    symbols = ("BTC/USDT", "ETH/USDT:USDT")
    refusals: ClassVar[dict[str, Refusal]] = {
        "wrong-secret": Refusal({"secret": "wrong"}, "BTC/USDT", ccxt.AuthenticationError,
                                "60007"),
        "wrong-passphrase": Refusal({"password": "wrong"}, "BTC/USDT",
                                    ccxt.AuthenticationError, "60024"),
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", ccxt.AuthenticationError,
                               "60005"),
    }
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "orders", "trades": "orders", "balance": "account",
        "positions": "positions"}
    linear = "ETH/USDT:USDT"
    position_amount = 1

    def contracts(self, inst: Instrument, qty: Decimal) -> float:
        return float(okx_wire.size(inst, qty))
    trade_amount_of = 1
    """An amount both spot and swap accept (a swap's amount counts contracts)."""

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _okx(pro, server, **config)

    def trade_amount(self, inst: Instrument, qty: Decimal) -> Decimal:
        return Decimal(okx_wire.size(inst, qty))  # swaps count contracts

    def split_amount(self, symbol: str) -> float:
        return 3 if ":" in symbol else self.trade_amount_of  # a swap lot is one contract

    def streamed_fee(self, trade: dict[str, Any]) -> Decimal:
        """ccxt.pro makes OKX's own trades of `orders` updates with the order's fee as
        it stands (cumulative, OKX's sign: a charge is negative): the wire's `fillFee` is
        the trade's own."""
        return -Decimal(trade["info"]["fillFee"])

    def book_levels(self, inst: Instrument, side: Any) -> list[tuple[Decimal, Decimal]]:
        return [(lv.price, self.trade_amount(inst, lv.qty)) for lv in side]


# --- heartbeats, limits, books ----------------------------------------------------------

PUBLIC = "/okx/ws/v5/public"


@pytest.mark.asyncio
async def test_a_silent_connection_is_cut_and_one_that_pings_is_not(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server = await start(timing_scale=0.05)  # 30 s → 1.5 s: room under load
    silent, pinging = await raw(server, PUBLIC), await raw(server, PUBLIC)
    closed = asyncio.ensure_future(silent.closed())
    async with asyncio.timeout(WAIT_S):
        while not closed.done():
            await pinging.send("ping")
            assert (await pinging.receive()).data == "pong"
    assert server.sim.stats.by_kind[("okx", "ws_heartbeat")] == 1
    await pinging.send("ping")
    assert (await pinging.receive()).data == "pong"


@pytest.mark.asyncio
async def test_subscribe_requests_past_the_hourly_budget_get_60014(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, _ = await start_frozen(start, limit_scale=0.005)  # 480 → 2 an hour
    client = await raw(server, PUBLIC)
    for n in range(3):
        await client.send({"op": "subscribe", "id": str(n),
                           "args": [{"channel": "tickers", "instId": "BTC-USDT"}]})
    answers = [await client.until(lambda m: m.get("event") in ("subscribe", "error"))
               for _ in range(3)]
    assert [a["event"] for a in answers] == ["subscribe", "subscribe", "error"]
    assert (answers[2]["code"], answers[2]["id"]) == ("60014", "2")
    assert server.sim.stats.by_kind[("okx", "ws_subscribe_ops")] == 1


@pytest.mark.asyncio
async def test_a_fourth_connection_in_a_second_is_refused(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, _ = await start_frozen(start)  # one window: 3 a second
    for _ in range(3):
        await raw(server, PUBLIC)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await raw(server, "/okx/ws/v5/private")
    assert refused.value.status == 429
    assert server.sim.stats.by_kind[("okx", "ws_connections")] == 1


def okx_checksum(bids: dict[str, str], asks: dict[str, str]) -> int:
    """OKX's algorithm, from its docs, kept apart from the simulator's own."""
    best_bids = sorted(bids.items(), key=lambda kv: -Decimal(kv[0]))[:25]
    best_asks = sorted(asks.items(), key=lambda kv: Decimal(kv[0]))[:25]
    parts = []
    for i in range(25):
        if i < len(best_bids):
            parts += list(best_bids[i])
        if i < len(best_asks):
            parts += list(best_asks[i])
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


@pytest.mark.asyncio
async def test_book_updates_chain_seq_ids_and_carry_the_checksum_of_the_book(
    start: ServerFactory, raw: RawFactory,
) -> None:
    server, clock = await start_frozen(start)
    client = await raw(server, PUBLIC)
    await client.send({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT"}]})
    first = await client.until(lambda m: m.get("action") == "snapshot")
    book = {side: {px: sz for px, sz, *_ in first["data"][0][side]} for side in ("bids", "asks")}
    assert first["data"][0]["prevSeqId"] == -1
    assert first["data"][0]["checksum"] == okx_checksum(book["bids"], book["asks"])
    seq = first["data"][0]["seqId"]
    inst = server.sim.market.instrument("BTC/USDT")
    for _ in range(3):
        await TestStreams.move_book(clock, server, inst, 400)
        update = (await client.until(lambda m: m.get("action") == "update"))["data"][0]
        assert update["prevSeqId"] == seq
        seq = update["seqId"]
        for side in ("bids", "asks"):
            for px, sz, *_ in update[side]:
                book[side].pop(px) if Decimal(sz) == 0 else book[side].update({px: sz})
        assert update["checksum"] == okx_checksum(book["bids"], book["asks"])
        assert len(book["bids"]) == len(book["asks"]) == 400


@pytest.mark.asyncio
async def test_a_sequence_gap_fails_the_book_and_the_next_watch_resyncs(
    start: ServerFactory, pro: ProFactory,
) -> None:
    server, clock = await start_frozen(start)
    ex = _okx(pro, server, apiKey=None, secret=None, password=None)
    symbol = "BTC/USDT"
    inst = server.sim.market.instrument(symbol)
    await bounded(ex.watch_order_book(symbol))
    await lose_next_book_update(server, clock, inst, 400)
    await TestStreams.move_book(clock, server, inst, 400)  # …the next one breaks the chain
    with pytest.raises(ccxt.InvalidNonce):
        await watch_until(lambda: ex.watch_order_book(symbol), lambda _: False)
    truth = server.sim.market.books.snapshot(inst, 20)
    book = await watch_until(lambda: ex.watch_order_book(symbol), lambda b: levels(
        b["bids"], 20) == [(lv.price, lv.qty) for lv in truth.bids])
    assert book["nonce"] == truth.sequence
