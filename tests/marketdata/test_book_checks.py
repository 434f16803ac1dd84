"""Books whose lost updates ccxt.pro does not notice, checked by the hub (unmodified ccxt.pro
on the simulator, the market standing still but for the moves a test makes): Kraken's
checksum and Bybit's update ids. A book that streams right is never resynced; a lost
update is found (on Kraken, once it leaves the book wrong: the next update's checksum
differs) and the book resynced by unsubscribe and subscribe, after which the hub's book
is the venue's again; no limit of the venue's is breached on the way."""

from __future__ import annotations

import contextlib
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.exchanges.book_checks import checksum, decimals
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.streams import StreamKind
from ctsd.marketdata.feeds import SubKey, Subscription
from ctsd.marketdata.hub import MarketDataHub
from ctsd.sim.book import Level
from ctsd.sim.clock import ManualClock
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.market import Instrument
from ctsd.sim.server import SimulatorServer
from ctsd.sim.ws.kraken_wire import book_checksum
from tests.marketdata.conftest import FAST, live, polled, until, violations
from tests.sim.ws.conftest import frozen_clock

SYMBOL = "BTC/USDT"
DEPTH = 10


def test_a_level_is_its_digits_at_the_pairs_precision_without_point_or_leading_zeros(
) -> None:
    """Kraken's own example (docs, "Book checksum (WebSocket v2)"): an ask of 45285.2 for
    0.00100000 contributes "452852100000"."""
    assert checksum([[45285.2, 0.001]], [], 1, 8) == zlib.crc32(b"452852100000")
    assert (decimals(0.1), decimals(1e-08), decimals(1), decimals("0.00050")) == (1, 8, 0, 4)


def test_the_checksum_is_the_one_the_simulator_sends_for_any_book() -> None:
    """Against the simulator's own (written from the same docs, and checked there against a
    raw client): random books, both sides deeper and shallower than ten, any precision."""
    rng = random.Random(7)
    for _ in range(200):
        places, qty_places = rng.randint(0, 8), rng.randint(0, 8)
        inst = _Precision(places, qty_places)
        tick, lot = Decimal(1).scaleb(-places), Decimal(1).scaleb(-qty_places)
        mid = rng.randint(100, 10**6)

        def side(sign: int, mid: int = mid, tick: Decimal = tick, lot: Decimal = lot,
                 ) -> list[Level]:
            return [Level(mid + sign * tick * (i + 1), lot * rng.randint(1, 10**6))
                    for i in range(rng.randint(0, 14))]

        asks, bids = side(1), side(-1)
        sent = book_checksum(inst, bids, asks)  # type: ignore[arg-type]
        assert checksum([[float(lv.price), float(lv.qty)] for lv in asks],
                        [[float(lv.price), float(lv.qty)] for lv in bids],
                        places, qty_places) == sent


class _Precision:
    """The two fields of an `Instrument` the simulator's checksum reads."""

    def __init__(self, price_decimals: int, qty_decimals: int) -> None:
        self.price_decimals, self.qty_decimals = price_decimals, qty_decimals


@pytest.fixture
def sim_clock() -> ManualClock:
    """The market stands still: the book moves when a test moves the clock."""
    return frozen_clock()


@pytest_asyncio.fixture
async def calm(factory: ExchangeClientFactory) -> AsyncIterator[MarketDataHub]:
    """A hub that waits a minute for a book update before it calls the stream stale: the
    standing market sends none between a test's moves (and a redial would resync the
    book by itself, hiding what is tested)."""
    settings = replace(FAST, book_cadence_s=60.0)
    async with MarketDataHub(factory.market_stream, SystemClock(), settings) as built:
        yield built


def truth(server: SimulatorServer, inst: Instrument) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    snap = server.sim.market.books.snapshot(inst, DEPTH)
    return tuple([(lv.price, lv.qty) for lv in side] for side in (snap.bids, snap.asks))


def held(sub: Subscription) -> tuple[list[tuple[Decimal, Decimal]], ...]:
    book = sub.value
    if book is None:
        return [], []
    return tuple([(lv.price, lv.amount) for lv in side] for side in (book.bids, book.asks))


async def move(server: SimulatorServer, inst: Instrument) -> None:
    """The clock on, a second at a time, until the top levels change."""
    clock = server.sim.clock
    assert isinstance(clock, ManualClock)
    before = truth(server, inst)
    for _ in range(60):
        clock.advance(1)
        if truth(server, inst) != before:
            return
    raise AssertionError("the book stood still for a minute")


async def moved(hub: MarketDataHub, server: SimulatorServer, inst: Instrument,
                sub: Subscription) -> None:
    """The book moved until the hub's is the venue's. ccxt.pro resolves a watch with the
    message that woke it: one that lands between two of the hub's watches waits in ccxt's
    book for the next message, which the standing market sends only when moved again."""
    for _ in range(5):
        await move(server, inst)
        with contextlib.suppress(TimeoutError):
            await until(hub, lambda: held(sub) == truth(server, inst), 1.0)
            return
    bids, asks = held(sub)
    raise AssertionError(f"the hub's book is not the venue's after 5 moves: best bid "
                         f"{bids[:1]}, ask {asks[:1]}; the venue's {truth(server, inst)}")


async def lose_next_update(server: SimulatorServer, inst: Instrument, venue: str) -> None:
    """A sequence gap on the venue's sockets, and the book moved: that update is lost."""
    streams = server.streams

    def lost() -> int:
        return sum(c.lost for c in streams.connections)

    before = lost()
    spec = FaultSpec(FaultKind.WS_GAP, venue=venue)
    server.sim.add_fault(spec)
    await polled(lambda: spec not in server.sim.faults.pending())
    await move(server, inst)
    await polled(lambda: lost() > before)


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["kraken", "bybit"])
async def test_a_lost_update_is_found_and_the_book_resynced(
    calm: MarketDataHub, server: SimulatorServer, venue: str,
) -> None:
    inst = server.sim.market.instrument(SYMBOL)
    target = ConnectionTarget(venue, ApiType.SPOT)
    sub = calm.subscribe(SubKey(target, StreamKind.BOOK, (SYMBOL, DEPTH))).subscription
    await live(calm, sub)
    await until(calm, lambda: held(sub) == truth(server, inst))
    for _ in range(3):  # a book that streams right is never taken for a wrong one
        await moved(calm, server, inst, sub)
    assert sub.resyncs == 0
    # A lost update shows only while the updates after it leave its levels alone (a price
    # move sends every level again): lose updates until one shows. Whether it showed or
    # was superseded, the hub's book ends as the venue's.
    for _ in range(8):
        await lose_next_update(server, inst, venue)
        await moved(calm, server, inst, sub)
        if sub.resyncs:
            break
    assert sub.resyncs >= 1, "every lost update was superseded by the next"
    for _ in range(2):  # the resubscribed book streams on, and right
        await moved(calm, server, inst, sub)
    assert sub.live and violations(server) == {}
