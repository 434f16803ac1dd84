"""`OrderFeed`: a LIVE engine's private order stream, as the broker's `OrderUpdates`.

Why a task of its own: ccxt.pro delivers only while someone awaits
`watch_orders`, and a fill must not wait for the next market event to be read.
The feed awaits it continuously, converts each update to the engine's
`ExchangeOrder` (orders without an engine client order id, or of types the
engine does not place, are none of its business), buffers them for the broker
and wakes the engine, so a fill triggers a cycle at once.

On perpetuals the same task watches the account's positions on the same socket
(`convert_position` set): each leg's latest state is buffered for the broker,
which merges it into the positions it last read over REST, and a position
update wakes the engine like a fill (an outside trade or a liquidation is
checked at once).

Any failure of the stream is a *gap*: the broker reconciles over REST before
it trusts the stream again (orders and positions each see it), and the feed goes
on with a new stream (a fresh login). A refused login (authentication,
permission) is not retried: the broker fails the engine naming the venue's
reason. The stream
counts as live once its connection is up with the watch pending and nothing
failed: an idle account sends nothing, and that must not read as an outage. A stream
that has not connected `connect_s` after it was opened is a failure like any other (a
reopen can hang in its listen-key request or handshake, or, under load, stay pending
with no connection of its stream at all, for good).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ctsd.clock import Clock
from ctsd.engine.order_ports import ExchangeOrder
from ctsd.engine.perpetual import VenuePosition
from ctsd.errors import ExchangeFailure, FailureClass
from ctsd.exchanges.model import Order, Position
from ctsd.exchanges.order_stream import OrderStream
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.engine")

REFUSED = (FailureClass.AUTHENTICATION, FailureClass.PERMISSION, FailureClass.IP_NOT_ALLOWED)


class OrderFeed:
    def __init__(self, stream: OrderStream, reopen: Callable[[], Awaitable[OrderStream]],
                 convert: Callable[[Order], ExchangeOrder | None],
                 on_update: Callable[[], None], clock: Clock, *, settle_s: float = 1.0,
                 retry_s: float = 1.0, max_retry_s: float = 30.0, connect_s: float = 60.0,
                 convert_position: Callable[[Position], VenuePosition] | None = None,
                 ) -> None:
        self._stream = stream
        self._reopen = reopen
        self._suspected = False
        self._renew = False
        """The stream failed: the next watch is on a new one (`_renewed`)."""
        self._convert = convert
        self._on_update = on_update
        self._clock = clock
        self._settle_s = settle_s
        self._retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._connect_s = connect_s
        """A stream not connected this long after its watch began (its pacing turn
        aside) is given up for a new one (`_settle`)."""
        self._buffer: list[ExchangeOrder] = []
        self._gap = False
        self._convert_position = convert_position
        self._positions: list[VenuePosition] = []
        self._positions_gap = False
        self.position_updates = 0
        self._live = False
        self._refused = False
        self.problem = "connecting"
        self.updates = 0
        self.gaps = 0
        self._task: asyncio.Task[None] | None = None
        self._watch: asyncio.Future[tuple[list[Order], list[Position]]] | None = None
        self._became_live = asyncio.Event()

    # --- OrderUpdates --------------------------------------------------------------------------

    def drain(self) -> tuple[list[ExchangeOrder], bool]:
        buffer, self._buffer = self._buffer, []
        gap, self._gap = self._gap, False
        return buffer, gap

    @property
    def gap(self) -> bool:
        return self._gap

    # --- PositionUpdates -----------------------------------------------------------------------

    def drain_positions(self) -> tuple[list[VenuePosition], bool]:
        positions, self._positions = self._positions, []
        gap, self._positions_gap = self._positions_gap, False
        return positions, gap

    @property
    def positions_gap(self) -> bool:
        return self._positions_gap

    @property
    def live(self) -> bool:
        return self._live

    @property
    def refused(self) -> bool:
        return self._refused

    def suspect(self) -> None:
        """The broker missed an update it expected: a new connection (a gap)."""
        self._suspected = True
        if self._watch is not None:
            self._watch.cancel()

    # --- the task ---------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="order-stream")

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
        await self._stream.close()

    async def _run(self) -> None:
        failures = 0
        while True:
            watch = None
            try:
                if self._suspected:
                    await self._resubscribe()
                elif self._renew:
                    await self._renewed()
                self._watch = watch = asyncio.ensure_future(
                    self._stream.updates(self._convert_position is not None))
                if not self._live:
                    await self._settle(watch)
                orders, positions = await watch
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the feed is closing
                continue  # `suspect` cancelled the watch: resubscribe
            except ExchangeFailure as exc:
                self._interrupted(exc)
                if self._refused:
                    return
                failures += 1
                await self._clock.sleep(min(self._max_retry_s,
                                            self._retry_s * 2 ** (failures - 1)))
                self._renew = True
                continue
            finally:
                if watch is not None:
                    watch.cancel()
            failures = 0
            self._up()
            found = [o for o in map(self._convert, orders) if o is not None]
            if found:
                self._buffer.extend(found)
                self.updates += len(found)
            if positions and self._convert_position is not None:
                self._positions.extend(map(self._convert_position, positions))
                self.position_updates += len(positions)
            if found or positions:
                self._on_update()

    async def _resubscribe(self) -> None:
        self._suspected = False
        self._live, self._gap, self._positions_gap = False, True, True
        self.gaps += 1
        self.problem = "resubscribing: an expected order update did not come"
        log.warning("private order stream silent; resubscribing",
                    extra={"exchange": self._stream.target.exchange})
        await self._stream.close()
        self._stream = await self._reopen()

    async def _renewed(self) -> None:
        """After a failure, a new stream (a new ccxt.pro instance) and so a new login: ccxt
        logs in again on a reconnected socket only where it keeps the login per socket.
        Binance margin's listenToken subscription it keeps per instance for 23 hours, so a
        socket it reopened by itself would carry no subscription and deliver nothing."""
        await self._stream.close()
        self._stream = await self._reopen()
        self._renew = False

    async def _settle(self, watch: asyncio.Future[Any]) -> None:
        """Live once the watch has been pending `settle_s` on an open connection. Looked at
        again every `settle_s` while the connection is still opening (a slow login): an
        idle account sends nothing, so the watch alone would never say it is up.

        Bounded by `connect_s` (time spent waiting for the venue's connection pacer
        aside): a watch that stays pending with no connection of its stream is a reopen
        that went wrong (a listen-key request or handshake the venue does not answer; a
        watch seen pending for good with no client of the stream connected, under load),
        and nothing else would end it: the engine would run on REST reconciliation for
        good. It fails as a stream failure does: a gap, then a new stream."""
        started = self._clock.monotonic()
        while not watch.done():
            sleeper: asyncio.Future[Any] = asyncio.ensure_future(
                self._clock.sleep(self._settle_s))
            try:
                await asyncio.wait((watch, sleeper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
            if watch.done():
                return
            if self._stream.connected():
                self._up()
                return
            if self._stream.pacing():
                started = self._clock.monotonic()
            elif self._clock.monotonic() - started >= self._connect_s:
                raise ExchangeFailure(FailureClass.TIMEOUT, (
                    f"{self._stream.target.exchange}: private stream not connected "
                    f"{self._connect_s:g} s after it was opened"))

    def _up(self) -> None:
        if not self._live:
            self._live, self.problem = True, ""
            self._became_live.set()

    async def until_live(self) -> None:
        """Until the stream is up (logged in, subscribed)."""
        while not self._live:
            self._became_live.clear()
            await self._became_live.wait()

    def _interrupted(self, exc: ExchangeFailure) -> None:
        was_live = self._live
        self._live, self._gap, self._positions_gap = False, True, True
        self.gaps += 1
        self.problem = exc.detail
        if exc.failure in REFUSED:
            self._refused = True
            self.problem = f"login refused: {exc.detail} ({exc.failure.remedy})"
        if was_live or self._refused:
            log.warning("private order stream interrupted", extra={
                "exchange": self._stream.target.exchange, "error": self.problem})
        self._on_update()  # the engine reconciles (or fails) now, not at its next event
