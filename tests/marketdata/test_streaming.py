"""An engine's market data over the hub (`StreamingMarketData`): what the stream says is what
REST says, a stream that is not live sends reads to REST (counted) and back, a refused stream
fails the read naming the cause, and closing lets go of every subscription."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.clock import SystemClock
from ctsd.errors import FailedPrecondition
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import Candle
from ctsd.marketdata.feeds import CandleSeries, StreamState
from ctsd.marketdata.hub import MarketDataHub
from ctsd.ratelimit import Lane
from ctsd.sim.clock import ManualClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.base import DataNeeds
from ctsd.wiring.engine_exchange import ExchangeMarketData
from ctsd.wiring.engine_streams import StreamingMarketData
from tests.marketdata.conftest import BINANCE, until
from tests.sim.ws.conftest import frozen_clock

D = Decimal
MINUTE = 60_000


@pytest.fixture
def sim_clock() -> ManualClock:
    """The market stands still: a streamed price and a REST price are the same instant's."""
    return frozen_clock()


def candle(minute: int, close: str = "1") -> Candle:
    c = D(close)
    return Candle(minute * MINUTE, c, c, c, c, D(1))


def test_a_candle_series_needs_history_then_tells_closed_candles_and_gaps() -> None:
    series = CandleSeries(MINUTE, keep=3)
    assert series.update([candle(10)]) is False
    assert series.closed(11 * MINUTE, 2) is None  # no history yet
    series.seed([candle(7), candle(8), candle(9), candle(10, "9")])
    assert series.update([candle(10, "2")]) is False  # the forming candle moved
    assert series.update([candle(11)]) is True  # a newer one opened: 10 closed
    assert series.closed(11 * MINUTE + 1, 3) == (candle(8), candle(9), candle(10, "2"))
    assert series.closed(11 * MINUTE + 1, 4) is None  # more than it keeps
    series.update([candle(13)])  # minute 12 was missed
    assert series.needs_seed and series.closed(14 * MINUTE, 1) is None


async def source(hub: MarketDataHub, factory: ExchangeClientFactory,
                 ) -> tuple[StreamingMarketData, ExchangeMarketData]:
    client = await factory.client(BINANCE, lane=Lane.POLL)
    rest = ExchangeMarketData(client)
    return StreamingMarketData(hub, BINANCE, rest, SystemClock()), rest


@pytest.mark.asyncio
async def test_streamed_data_is_the_rest_data_and_a_stall_falls_back_to_rest(
    hub: MarketDataHub, factory: ExchangeClientFactory, server: SimulatorServer,
) -> None:
    streaming, rest = await source(hub, factory)
    streaming.follow(("BTC/USDT",), DataNeeds("1m", 3, book_depth=2))
    await until(hub, lambda: streaming.streaming)
    assert await streaming.next_event(0) is not None  # the first cycle's event
    ticker = await streaming.ticker("BTC/USDT")
    assert ticker.last == (await rest.ticker("BTC/USDT")).last
    assert await streaming.candles("BTC/USDT", "1m", 3) == await rest.candles(
        "BTC/USDT", "1m", 3)  # the first read seeds the history from REST
    book = await streaming.order_book("BTC/USDT", 2)
    assert len(book.bids) == 2 and book.bids[0].price <= ticker.last <= book.asks[0].price
    assert streaming.fallbacks == 0

    server.sim.add_fault(FaultSpec(FaultKind.WS_STALL, venue="binance", delay_s=60))
    await until(hub, lambda: not streaming.streaming)
    assert "stale" in streaming.problem
    assert (await streaming.ticker("BTC/USDT")).last == (await rest.ticker("BTC/USDT")).last
    assert streaming.fallbacks == 1
    await until(hub, lambda: streaming.streaming)  # resubscribed on a new connection
    await streaming.ticker("BTC/USDT")
    assert streaming.fallbacks == 1
    streaming.close()
    assert hub.subscriptions() == ()


@pytest.mark.asyncio
async def test_reading_a_refused_stream_fails_naming_the_cause(
    hub: MarketDataHub, factory: ExchangeClientFactory,
) -> None:
    streaming, _ = await source(hub, factory)
    streaming.follow(("NOPE/USDT",), DataNeeds())
    [sub] = hub.subscriptions()
    await until(hub, lambda: sub.state is StreamState.FAILED)
    assert "NOPE/USDT" in streaming.problem and not streaming.streaming
    with pytest.raises(FailedPrecondition, match="binance does not list it"):
        await streaming.ticker("NOPE/USDT")
    streaming.close()
