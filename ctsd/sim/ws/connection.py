"""One WebSocket connection: two bounded send queues, a heartbeat clock, injected faults.

Why two queues: replies and heartbeats (pongs, ping frames, Kraken's heartbeat
messages) must go out even while the data feed is stalled or delayed, which is what
makes a silent stall silent; data goes through the fault filters (stall, delay,
sequence gap) and a bound, past which the client is a slow consumer and is cut.

Nothing here awaits on the caller's behalf: `send`, `reply`, `close` and `abort` are
synchronous and only queue, so the server's tick loop and the account event bus can
fan a message out to thousands of connections without a task per subscription. Each
connection has one writer task (`write_loop`), owned by the request handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

from aiohttp import web

from ctsd.sim import faults

if TYPE_CHECKING:
    from ctsd.sim.ws.protocol import StreamProtocol

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class Frame(Enum):
    TEXT = "text"
    PING = "ping"
    PONG = "pong"


class WsConnection:
    """The server side of one client connection; sessions and topics write through it."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, protocol: StreamProtocol,
        queue_max: int, on_overflow: Callable[[WsConnection], None],
    ) -> None:
        self.id = next(_ids)
        self.ws = ws
        self.request = request
        self.protocol = protocol
        self.path = request.path
        self.ip = request.remote or ""
        loop = asyncio.get_running_loop()
        self._loop = loop
        now = loop.time()
        self.opened_at = now
        self.last_recv = now
        """Any frame from the client."""
        self.last_pong = now
        self.last_ping_sent = now
        self.last_sent = now
        """Any frame to the client (data, reply or heartbeat)."""
        self.last_data = now
        self.close_at: float | None = None
        """A forced disconnect (`WS_DISCONNECT_EVERY`), in loop time."""
        self.closed = False
        self.sent = 0
        self.pings = 0
        self.lost = 0
        """Data messages lost to stalls, gaps and overflow."""
        self.topics: set[object] = set()
        """Public topic keys this connection is subscribed to (kept by the hub)."""
        self.faults_taken: set[int] = set()
        """Injections (`FaultSpec.serial`) that hit this connection: a fault of `count` N
        hits N connections, never one connection N times."""
        self._cleanups: list[Callable[[], None]] = []
        self._control: deque[tuple[Frame, str]] = deque()
        self._data: deque[tuple[float, str]] = deque()
        self._queue_max = queue_max
        self._on_overflow = on_overflow
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._stall_until = 0.0
        self._delay_s = 0.0
        self._delayed_left = 0
        self._last_due = 0.0
        self._gaps = 0

    def __repr__(self) -> str:
        return f"<WsConnection {self.id} {self.path}>"

    @property
    def venue(self) -> str:
        return self.protocol.venue

    @property
    def venue_path(self) -> str:
        """The path below the venue prefix, which fault filters match."""
        prefix = f"/{self.venue}"
        return self.path[len(prefix):] if self.path.startswith(prefix) else self.path

    def on_cleanup(self, cleanup: Callable[[], None]) -> None:
        """Run `cleanup` when the connection ends (stop listening to an account, …)."""
        self._cleanups.append(cleanup)

    # --- sending ----------------------------------------------------------------

    def send(self, text: str, *, book: bool = False) -> None:
        """A data message: subject to stall, delay, sequence-gap faults and the bound."""
        if self.closed:
            return
        now = self._loop.time()
        if now < self._stall_until or (book and self._take_gap()):
            self.lost += 1
            return
        if len(self._data) >= self._queue_max:
            self.lost += 1
            if self._close is None:  # once: the client is being cut already
                self._on_overflow(self)
            return
        due = now
        if self._delayed_left > 0:
            self._delayed_left -= 1
            due = now + self._delay_s
        due = max(due, self._last_due)
        self._last_due = due
        self._data.append((due, text))
        self._wake.set()

    def reply(self, text: str) -> None:
        """A reply or heartbeat message: never stalled, delayed or gapped."""
        self._queue(Frame.TEXT, text)

    def ping(self) -> None:
        self.last_ping_sent = self._loop.time()
        self.pings += 1
        self._queue(Frame.PING, "")

    def pong(self, payload: str) -> None:
        self._queue(Frame.PONG, payload)

    def close(self, code: int, message: str) -> None:
        """Close with a close frame once the queued replies are out; data still queued is lost."""
        if self.closed or self._close is not None:
            return
        self._close = (code, message)
        self._wake.set()

    def abort(self) -> None:
        """Cut the TCP connection (RST, no close frame): what a network drop looks like."""
        if self.closed:
            return
        self.closed = True
        faults.reset_connection(self.request)
        self._wake.set()

    def _queue(self, frame: Frame, payload: str) -> None:
        if self.closed:
            return
        self._control.append((frame, payload))
        self._wake.set()

    # --- faults ---------------------------------------------------------------------

    def stall(self, seconds: float) -> None:
        self._stall_until = max(self._stall_until, self._loop.time() + seconds)

    def delay(self, seconds: float, messages: int) -> None:
        self._delay_s = seconds
        self._delayed_left = messages

    def gap(self) -> None:
        self._gaps += 1

    def _take_gap(self) -> bool:
        if self._gaps <= 0:
            return False
        self._gaps -= 1
        return True

    @property
    def stalled(self) -> bool:
        return self._loop.time() < self._stall_until

    # --- the writer -----------------------------------------------------------------

    async def write_loop(self) -> None:
        """Send what the queues hold, replies first; ends on close or a dead transport."""
        try:
            await self._write()
        except (ConnectionError, RuntimeError):  # the peer went away mid-send
            self.closed = True
        finally:
            self.finish()

    async def _write(self) -> None:
        ws = self.ws
        while not self.closed:
            while self._control:
                frame, payload = self._control.popleft()
                await self._send_frame(frame, payload)
            if self._close is not None:
                code, message = self._close
                self.closed = True
                await ws.close(code=code, message=message.encode())
                return
            now = self._loop.time()
            while self._data and self._data[0][0] <= now and not self._control:
                _, text = self._data.popleft()
                await ws.send_str(text)
                self.sent += 1
                self.last_sent = self.last_data = self._loop.time()
            if self._control or (self._data and self._data[0][0] <= self._loop.time()):
                continue
            timeout = self._data[0][0] - now if self._data else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            self._wake.clear()

    async def _send_frame(self, frame: Frame, payload: str) -> None:
        if frame is Frame.TEXT:
            await self.ws.send_str(payload)
        elif frame is Frame.PING:
            await self.ws.ping(payload.encode())
        else:
            await self.ws.pong(payload.encode())
        self.last_sent = self._loop.time()

    def finish(self) -> None:
        """Release everything the connection holds; safe to call more than once."""
        self.closed = True
        self._data.clear()
        self._control.clear()
        self._wake.set()  # the writer, if waiting, sees `closed` and ends
        cleanups, self._cleanups = self._cleanups, []
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception:
                log.exception("cleanup of %r failed", self)
