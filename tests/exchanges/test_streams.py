"""The stream layer's pieces that need no venue: connection and subscribe pacing (a sliding
window on an injected clock) and the answers it reads (books, trades) refusing garbage."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from ctsd.errors import ExchangeFailure
from ctsd.exchanges.streams import Pacer, order_book, public_trades, stream_limits
from tests.support.virtual_clock import VirtualClock


@pytest.mark.asyncio
async def test_the_pacer_admits_count_starts_per_sliding_window() -> None:
    clock = VirtualClock()
    pacer = Pacer(2, 10.0, clock)
    started: list[float] = []

    async def start() -> None:
        await pacer.wait()
        started.append(clock.monotonic())

    tasks = [asyncio.ensure_future(start()) for _ in range(5)]
    await clock.run(tasks)
    assert started == [0.0, 0.0, 10.0, 10.0, 20.0]


def test_every_venue_paces_connections_and_subscriptions_within_its_published_limits() -> None:
    binance, okx = stream_limits("binance"), stream_limits("okx")
    assert binance.connections / binance.window_s <= 300 / 300  # 300 per 5 min
    assert binance.subscribes / binance.subscribe_window_s < 5  # 5 messages a second, pongs in
    assert okx.subscribes / okx.subscribe_window_s <= 480 / 3600  # 480 operations an hour
    assert stream_limits("bybit").batch == 10  # spot: 10 args a request


def test_books_and_trades_that_do_not_parse_are_refused() -> None:
    book = order_book({"bids": [[100.5, 2], [100, 1]], "asks": [[101, 3]], "nonce": 7}, "X/Y", 1)
    assert (book.bids[0].price, len(book.bids), book.nonce) == (Decimal("100.5"), 1, 7)
    with pytest.raises(ExchangeFailure, match="not \\[price, amount\\]"):
        order_book({"bids": [[None, 1]]}, "X/Y", 5)
    with pytest.raises(ExchangeFailure, match="lacks price"):
        public_trades([{"price": 1, "amount": 2}], "X/Y")
