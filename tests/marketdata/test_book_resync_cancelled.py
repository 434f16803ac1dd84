"""A book resync (`ctsd.exchanges.book_checks`) cut at each of its await points, on the
simulator with unmodified ccxt.pro, run by the hub as in production.

The hub resyncs a wrong book inside the task that watches it, and cancels that task
when the book loses its last consumer, its shard redials or the daemon stops: a
resync may be cut at any await. Every one is visited: a lost update is resynced once
uncancelled, which counts the suspensions of the resync as its watch sees them
(`tests.support.cancel_points`); then, for each suspension in turn, another lost update
is resynced and the watching task cancelled there, as `Task.cancel()` delivers it.
After each, what a user relies on: the hub's book is the venue's again within a few
moves of the market and stays so; the venue refused no request (Kraken answers a
subscription it still holds with "Already subscribed" and sends that book no snapshot);
the hub never took the book for one the venue does not stream; no limit was breached.
The data-age watchdog waits a minute here and no redial happens: it is not what mends
the book.

The watching task is cancelled there directly (what the hub's drop of the watch does,
at any moment it chooses); a second test makes the hub do it itself, the book's last
consumer leaving mid-resync. Once begun, a resync runs in a task of its own
(`book_checks.Resyncs`): the watch sees one await in it, and what happens inside
(Bybit's wait for the venue's answer to its unsubscribe) only the stream's close can
cut, which the last test steps through turn by turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import types
from collections.abc import AsyncIterator, Awaitable, Generator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import pytest_asyncio

from ctsd.clock import SystemClock
from ctsd.exchanges.book_checks import RESYNC_TASK, BookChecks
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.streams import MarketStream, StreamKind, stream_limits
from ctsd.marketdata.feeds import StreamState, SubKey, Subscription
from ctsd.marketdata.hub import Lease, MarketDataHub
from ctsd.sim.clock import ManualClock
from ctsd.sim.market import Instrument
from ctsd.sim.server import SimulatorServer
from ctsd.sim.ws.connection import WsConnection
from tests.marketdata.conftest import FAST, WAIT_S, live, until, violations
from tests.marketdata.test_book_checks import (
    DEPTH,
    SYMBOL,
    held,
    lose_next_update,
    move,
    moved,
    truth,
)
from tests.sim.ws.conftest import frozen_clock
from tests.support.cancel_points import Outcome, counted

CALM = replace(FAST, book_cadence_s=60.0)
"""A minute without book data before the watchdog redials: the standing market sends none
between a test's moves, and a redial would mend a broken book by itself."""
TRIES = 8
"""Lost updates tried until one shows (Kraken: a later update may supersede it)."""
OTHER = "ETH/USDT"
"""A second book on the shard, which keeps its book feed running."""


@pytest.fixture
def sim_clock() -> ManualClock:
    """The market stands still: the book moves when a test moves the clock."""
    return frozen_clock()


@pytest.fixture
def refusals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every answer of the simulator's sockets that refuses a request (`success` false:
    Kraken's "Already subscribed", Bybit's refused subscribe). Recorded as sent; the
    answer itself goes out unchanged."""
    found: list[str] = []
    reply = WsConnection.reply

    def recorded(conn: WsConnection, text: str) -> None:
        with_body = json.loads(text) if text.startswith("{") else None
        if isinstance(with_body, dict) and with_body.get("success") is False:
            found.append(text)
        reply(conn, text)

    monkeypatch.setattr(WsConnection, "reply", recorded)
    return found


@types.coroutine
def parked(awaitable: Awaitable[None], outcome: Outcome) -> Generator[Any, Any, None]:
    """`awaitable` run to its first suspension, where the task stays until cancelled
    (whatever that await waited for), and the cancellation is delivered there as
    `Task.cancel()` delivers it: the awaited future cancelled, CancelledError raised."""
    inner = awaitable.__await__()
    try:
        waited = inner.send(None)
    except StopIteration:
        return
    outcome.suspensions = 1
    try:
        yield from asyncio.get_running_loop().create_future()  # only a cancel ends it
    except BaseException as exc:
        if isinstance(waited, asyncio.Future):
            waited.cancel()
        inner.throw(exc)
        raise


class Stepped:
    """A stream's own book checks, its next resync (once armed) cut at suspension
    `cancel_at` of the watch that runs it (0: as it is called), or with `park` kept at
    its first until the hub cancels the watch; every resync's outcome is kept."""

    def __init__(self, inner: BookChecks) -> None:
        self.inner = inner
        self.cancel_at: int | None = None
        self.park = False
        self.runs: list[Outcome] = []

    def problem(self, symbol: str, book: Any) -> str | None:
        return self.inner.problem(symbol, book)

    async def resync(self, symbol: str, depth: int) -> None:
        outcome, park = Outcome(self.cancel_at), self.park
        self.cancel_at, self.park = None, False  # what a cut resync leaves to do runs whole
        self.runs.append(outcome)
        try:
            if outcome.point == 0:  # cut as it is called (the subscribe pacer's wait before)
                task = asyncio.current_task()
                assert task is not None
                task.cancel()
                await asyncio.sleep(0)
            if park:
                await parked(self.inner.resync(symbol, depth), outcome)
            else:
                await counted(self.inner.resync(symbol, depth), outcome.point, outcome)
        except asyncio.CancelledError:
            outcome.cancelled = True
            raise

    async def settled(self, symbol: str) -> None:
        await self.inner.settled(symbol)

    def cancel(self) -> None:
        self.inner.cancel()


@dataclass
class Rig:
    server: SimulatorServer
    hub: MarketDataHub
    venue: str
    inst: Instrument
    opened: list[Stepped]
    """The checks of each stream the hub opened (one: no redial)."""
    key: SubKey
    failed: list[str] = field(default_factory=list)
    """Each time the hub marked the book as one the venue does not stream, why."""
    lease: Lease | None = None

    @property
    def sub(self) -> Subscription:
        assert self.lease is not None
        return self.lease.subscription

    async def subscribed(self) -> None:
        """The book subscribed anew, its first data the venue's book."""
        self.lease = self.hub.subscribe(self.key, self.listen)
        await live(self.hub, self.sub)
        await until(self.hub, lambda: held(self.sub) == truth(self.server, self.inst))

    def listen(self, sub: Subscription) -> None:
        if sub.state is StreamState.FAILED:
            self.failed.append(sub.error or "")

    async def provoked(self) -> Outcome:
        """Updates lost until one shows and the book is resynced: that resync's outcome."""
        [checks], sub = self.opened, self.sub
        before = len(checks.runs)
        for _ in range(TRIES):
            await lose_next_update(self.server, self.inst, self.venue)
            for _ in range(5):  # moved on until resynced, or the hub's book is the venue's
                await move(self.server, self.inst)
                with contextlib.suppress(TimeoutError):
                    await until(self.hub, lambda: len(checks.runs) > before or held(sub) == (
                        truth(self.server, self.inst)), 1.0)
                    break
            if len(checks.runs) > before:
                return checks.runs[before]
        raise AssertionError("every lost update was superseded by the next")

    async def streams_right(self) -> None:
        """The hub's book is the venue's as the market moves, twice; never refused."""
        for _ in range(2):
            await moved(self.hub, self.server, self.inst, self.sub)
        assert self.failed == [] and self.sub.state is StreamState.LIVE, self.failed

    async def resynced(self, point: int | None) -> Outcome:
        """A lost update found and its resync cut at suspension `point` (None: never);
        then the hub's book is the venue's again."""
        [checks] = self.opened
        checks.cancel_at = point
        outcome = await self.provoked()
        await self.streams_right()
        return outcome


@pytest_asyncio.fixture
async def rig(request: pytest.FixtureRequest, server: SimulatorServer,
              factory: ExchangeClientFactory) -> AsyncIterator[Rig]:
    venue: str = request.param
    opened: list[Stepped] = []

    async def open_stream(target: ConnectionTarget) -> MarketStream:
        stream = await factory.market_stream(target)
        inner = stream._book_checks  # the test looks inside on purpose: it steps the resync
        assert inner is not None
        stream._book_checks = stepped = Stepped(inner)
        opened.append(stepped)
        return stream

    async with MarketDataHub(open_stream, SystemClock(), CALM) as hub:
        key = SubKey(ConnectionTarget(venue, ApiType.SPOT), StreamKind.BOOK, (SYMBOL, DEPTH))
        built = Rig(server, hub, venue, server.sim.market.instrument(SYMBOL), opened, key)
        await built.subscribed()
        yield built
    assert resync_tasks() == [], "a resync outlived the hub that began it"


def resync_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(RESYNC_TASK)]


@pytest.mark.asyncio
@pytest.mark.parametrize("rig", ["kraken", "bybit"], indirect=True)
async def test_a_resync_cut_at_any_await_leaves_a_book_that_streams_right(
    rig: Rig, refusals: list[str],
) -> None:
    clean = await rig.resynced(None)
    assert not clean.cancelled and clean.error is None
    for point in range(clean.suspensions + 1):
        outcome = await rig.resynced(point)
        assert outcome.cancelled, f"the resync was not cut at its suspension {point}"
    assert rig.sub.reconnects == 0 and len(rig.opened) == 1, "the book was mended by a redial"
    assert refusals == [], f"the venue refused: {refusals}"
    assert violations(rig.server) == {}


@pytest.mark.asyncio
@pytest.mark.parametrize("rig", ["kraken", "bybit"], indirect=True)
async def test_a_resync_dropped_with_the_books_last_consumer_leaves_it_to_the_next(
    rig: Rig, refusals: list[str],
) -> None:
    """The hub's own cut, end to end: the book's last consumer leaves while its watch is in
    a resync, and the shard's book feed, kept running by another book, drops that watch
    (`MarketStream.updates` cancels it there). A consumer that comes back gets the
    venue's book, and it streams on."""
    keeper = rig.hub.subscribe(replace(rig.key, key=(OTHER, DEPTH)))
    await live(rig.hub, keeper.subscription)
    [checks] = rig.opened
    checks.park = True
    outcome = await rig.provoked()
    assert outcome.suspensions == 1, "the resync's watch never waited: nothing to cut"
    assert rig.lease is not None
    rig.lease.release()
    await until(rig.hub, lambda: outcome.cancelled)
    await rig.subscribed()
    await rig.streams_right()
    assert keeper.subscription.state is StreamState.LIVE
    assert rig.sub.reconnects == 0 and len(rig.opened) == 1, "the book was mended by a redial"
    assert refusals == [], f"the venue refused: {refusals}"
    assert violations(rig.server) == {}


@pytest.mark.asyncio
@pytest.mark.parametrize("venue", ["kraken", "bybit"])
async def test_a_stream_closed_mid_resync_leaves_no_resync_behind(
    factory: ExchangeClientFactory, venue: str,
) -> None:
    """What the hub cannot cut of a resync, its stream's close does (a redial, the daemon
    stopping): the stream closed at each loop turn of a resync under way, from before
    its first step until it has ended (Bybit's waits for the venue's answer to its
    unsubscribe; Kraken's is done in one step), the close completes and cancels it; no
    resync task outlives its stream."""
    depth = next(d for d in (*stream_limits(venue).book_depths, DEPTH) if d >= DEPTH)
    cut = 0
    for turns in range(50):
        stream = await factory.market_stream(ConnectionTarget(venue, ApiType.SPOT))
        try:
            async with asyncio.timeout(WAIT_S):  # subscribed, its snapshot in
                await stream.updates(StreamKind.BOOK, [((SYMBOL, DEPTH),)])
            checks = stream._book_checks  # the test looks inside on purpose
            assert checks is not None
            caller = asyncio.ensure_future(checks.resync(SYMBOL, depth))
            await asyncio.sleep(0)  # a loop turn: the caller begins the resync task
            [task] = resync_tasks()
            for _ in range(turns):
                await asyncio.sleep(0)
            under_way = not task.done()
        finally:
            await stream.close()
        await asyncio.wait((caller,))
        assert resync_tasks() == [], f"a resync outlived its stream, closed at turn {turns}"
        if not under_way:
            break
        assert task.cancelled() and caller.cancelled(), f"closed at turn {turns}"
        cut += 1
    else:
        raise AssertionError("the resync was still under way after 50 loop turns")
    assert cut >= 1


@pytest.mark.asyncio
@pytest.mark.parametrize("rig", ["bybit"], indirect=True)
async def test_a_watch_ended_by_an_unsubscribe_is_a_book_to_subscribe_again(
    rig: Rig, refusals: list[str],
) -> None:
    """ccxt.pro fails a pending watch whose subscription an unsubscribe removed
    (`UnsubscribeError`). Only the stream's own resyncs unsubscribe, and the next watch
    waits for them; should one race a watch anyway, that is the book to subscribe again
    (counted as a resync), never the venue refusing to stream it."""
    [checks] = rig.opened
    exchange = checks.inner._exchange  # type: ignore[attr-defined]  # on purpose: from outside
    depth = next(d for d in (*stream_limits("bybit").book_depths, DEPTH) if d >= DEPTH)
    resyncs = rig.sub.resyncs
    await exchange.un_watch_order_book(SYMBOL, {"limit": depth})
    await until(rig.hub, lambda: rig.sub.resyncs > resyncs or bool(rig.failed))
    await rig.streams_right()
    assert refusals == [], f"the venue refused: {refusals}"
    assert violations(rig.server) == {}
