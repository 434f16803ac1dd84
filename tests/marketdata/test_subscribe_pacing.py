"""The subscribe pacer spends a turn on each request the venue gets, not on each watch.

ccxt.pro watches a subscribed stream again without telling the venue, so only a group's
first watch on a socket (after a redial, or after its watch failed: ccxt subscribes it
anew) waits for the venue's subscribe budget. A turn spent on every watch held the
streams back once the budget was used: OKX's 480 operations an hour after minutes of
tickers (then stale data, a redial, REST fallback, again), Binance's 2 a second every
second. Here each venue's budget is cut to the requests the test's streams need, which
then must keep flowing, on one socket, with no limit breached.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from ctsd.clock import SystemClock
from ctsd.exchanges import streams
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.streams import StreamKind
from ctsd.marketdata.feeds import SubKey
from ctsd.marketdata.hub import MarketDataHub
from ctsd.sim.server import SimulatorServer
from tests.marketdata.conftest import FAST, live, until, violations

SYMBOLS = ("BTC/USDT", "ETH/USDT")
SYMBOL_BOOK = "SOL/USDT"
MESSAGES = 3
"""Further messages each stream must bring on a budget its first requests spent."""


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["binance", "bybit", "okx", "kraken"])
async def test_streams_flow_on_once_their_subscribe_requests_spent_the_budget(
    monkeypatch: pytest.MonkeyPatch, factory: ExchangeClientFactory, server: SimulatorServer,
    venue: str,
) -> None:
    target = ConnectionTarget(venue, ApiType.SPOT)
    keys = [SubKey(target, StreamKind.TICKER, s) for s in SYMBOLS]
    keys.append(SubKey(target, StreamKind.BOOK, (SYMBOL_BOOK, 5)))
    # the tickers' one batched request and the book's: no turn left for an hour
    monkeypatch.setitem(streams.STREAM_LIMITS, venue, replace(
        streams.stream_limits(venue), subscribes=2, subscribe_window_s=3600.0))
    # A quiet spell must not redial a socket during the test: a new one subscribes anew.
    calm = replace(FAST, ticker_cadence_s=30.0, book_cadence_s=30.0)
    async with MarketDataHub(factory.market_stream, SystemClock(), calm) as hub:
        subs = [hub.subscribe(key).subscription for key in keys]
        for sub in subs:
            await live(hub, sub)
        counts = [sub.messages for sub in subs]
        await until(hub, lambda: all(sub.messages >= count + MESSAGES
                                     for sub, count in zip(subs, counts, strict=True)))
        assert [sub.reconnects for sub in subs] == [0] * len(subs)
        assert hub.shard_count(target) == 1
    assert violations(server) == {}

