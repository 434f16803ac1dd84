"""`StreamHub`: every WebSocket connection of one server, and its one data loop.

Why one loop: a stream's data is a function of the simulator's clock, so one task
per server wakes every `WsConfig.tick_s`, asks each *topic* with subscribers
whether its feed changed (a topic is shared by every connection subscribed to the
same channel and symbol), renders it once and queues it on each subscriber. The
same loop applies injected WebSocket faults, runs the venues' heartbeats and fills
resting orders of accounts someone streams (so a fill is pushed when the price
reaches the order, not when the client next calls REST). Private events do not go
through the loop at all: they are pushed by `Simulator.events` the moment they
happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from aiohttp import WSMsgType, web

from ctsd.sim.faults import FaultKind
from ctsd.sim.state import Simulator
from ctsd.sim.ws.connection import WsConnection
from ctsd.sim.ws.guard import Window, WsGuard
from ctsd.sim.ws.protocol import Session, StreamProtocol, Topic
from ctsd.sim.ws.sampler import Sampler

log = logging.getLogger(__name__)

CONSUMED_FAULTS = frozenset({
    FaultKind.WS_DROP, FaultKind.WS_STALL, FaultKind.WS_DELAY, FaultKind.WS_GAP})
MAX_MESSAGE_BYTES = 1 << 20


class StreamHub:
    """The WebSocket side of one simulator server."""

    def __init__(self, sim: Simulator, protocols: Mapping[str, Sequence[StreamProtocol]]) -> None:
        self.sim = sim
        self.config = sim.config.ws
        self.protocols = protocols
        self.guard = WsGuard(sim)
        self.connections: dict[WsConnection, Session] = {}
        self.topics: dict[Hashable, Topic] = {}
        self._message_windows: dict[WsConnection, Window] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.ticks = 0
        sim.on_reset(self.guard.reset)

    # --- lifecycle --------------------------------------------------------------------

    def mount(self, app: web.Application, venue: str) -> None:
        """Add the venue's WebSocket routes (under `/<venue>`) to the root application."""
        for protocol in self.protocols.get(venue, ()):
            for path in (f"/{venue}{p}" for p in protocol.paths()):
                async def handle(request: web.Request,
                                 protocol: StreamProtocol = protocol) -> web.StreamResponse:
                    return await self.handle(request, protocol)

                app.router.add_get(path, handle)

    async def start(self, _app: web.Application) -> None:
        self._task = asyncio.create_task(self._run(), name="sim-ws-hub")

    async def stop(self, _app: web.Application) -> None:
        """Stop the loop and close every connection (the server is shutting down)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for conn in list(self.connections):
            conn.close(1001, "server shutdown")

    def notify(self) -> None:
        """Something waiters of `until` may care about changed."""
        self._changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds, re-checked whenever connections or topics
        change (what a test waits for, without polling)."""
        while not predicate():
            self._changed.clear()
            await self._changed.wait()

    # --- connections ------------------------------------------------------------------

    async def handle(self, request: web.Request, protocol: StreamProtocol) -> web.StreamResponse:
        venue = protocol.venue
        refused = self.guard.admit_connection(venue, protocol.limits, request.remote or "")
        if refused is not None:
            return web.json_response(
                {"error": "Too many connection attempts"}, status=429,
                headers={"Retry-After": str(refused.retry_after_s)})
        answer = await protocol.refuse(request, self)
        if answer is not None:
            return answer
        ws = web.WebSocketResponse(autoping=False, compress=False,
                                   max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        conn = WsConnection(ws, request, protocol, self.config.send_queue_max, self._overflow)
        session = protocol.open(conn, self)
        self.connections[conn] = session
        self._message_windows[conn] = Window()
        self.notify()
        writer = asyncio.create_task(conn.write_loop(), name=f"sim-ws-writer-{conn.id}")
        try:
            session.on_open()
            await self._read(conn, session)
        finally:
            conn.close(1000, "")  # unless the server is closing already (limit, heartbeat)
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(1.0):
                    await asyncio.shield(writer)  # replies, close frame
            writer.cancel()
            self._forget(conn, session)
        return ws

    async def _read(self, conn: WsConnection, session: Session) -> None:
        loop = asyncio.get_running_loop()
        window = self._message_windows[conn]
        limits = conn.protocol.limits
        async for message in conn.ws:
            conn.last_recv = loop.time()
            if conn.closed:
                return
            if not self.guard.admit_message(window, limits):
                self.guard.violation(conn.venue, "messages")
                conn.protocol.rate_exceeded(conn)
                return
            if message.type is WSMsgType.TEXT:
                try:
                    session.on_text(message.data)
                except Exception:
                    log.exception("session %s failed on %r", type(session).__name__,
                                  message.data[:200])
            elif message.type is WSMsgType.PING:
                conn.pong(message.data.decode(errors="replace"))
            elif message.type is WSMsgType.PONG:
                conn.last_pong = conn.last_recv
            elif message.type is WSMsgType.BINARY:
                session.on_text(message.data.decode(errors="replace"))

    def _forget(self, conn: WsConnection, session: Session) -> None:
        if self.connections.pop(conn, None) is None:
            return
        self._message_windows.pop(conn, None)
        for key in list(conn.topics):
            self.unsubscribe(conn, key)
        session.on_close()
        conn.finish()
        self.notify()

    def _overflow(self, conn: WsConnection) -> None:
        self.guard.violation(conn.venue, "slow_consumer")
        conn.close(1008, "send queue overflow")

    # --- topics -----------------------------------------------------------------------

    def subscribe(
        self, conn: WsConnection, key: Hashable, make: Callable[[], Topic] | Topic,
        prefix: str | None = None, snapshot: bool = True,
    ) -> Topic:
        """Add `conn` to the topic `key` (`make`, or made by it, if new); sends its snapshot."""
        topic = self.topics.get(key)
        if topic is None:
            topic = self.topics[key] = make if isinstance(make, Topic) else make()
        topic.subscribers[conn] = prefix
        conn.topics.add(key)
        self.notify()
        if snapshot:
            texts = topic.snapshot(self.sim.clock.now_ms(), self._sampler())
            if texts:
                topic.deliver(texts, to=conn, book=False)
        return topic

    def unsubscribe(self, conn: WsConnection, key: Hashable) -> bool:
        topic = self.topics.get(key)
        conn.topics.discard(key)
        if topic is None or topic.subscribers.pop(conn, "absent") == "absent":
            return False
        if not topic.subscribers:
            del self.topics[key]
        self.notify()
        return True

    def charge_subscribe_op(self, conn: WsConnection, window: Window) -> bool:
        """A subscribe/unsubscribe/login request against the venue's per-connection budget."""
        if self.guard.admit_subscribe_op(window, conn.protocol.limits):
            return True
        self.guard.violation(conn.venue, "subscribe_ops")
        return False

    def stream_room(self, conn: WsConnection, adding: int) -> bool:
        """Whether `conn` may hold `adding` more streams; counts the breach if not."""
        limit = self.guard.stream_limit(conn.protocol.limits)
        if limit is None or len(conn.topics) + adding <= limit:
            return True
        self.guard.violation(conn.venue, "streams")
        return False

    # --- the loop ---------------------------------------------------------------------

    def _sampler(self) -> Sampler:
        return Sampler(self.sim.market, self.sim.clock.now_ms())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            try:
                self.tick()
            except Exception:
                log.exception("stream hub tick failed")

    def tick(self) -> None:
        """One pass: faults, heartbeats, fills of streamed accounts, public topics."""
        self.ticks += 1
        if self.connections:
            self._apply_faults()
            self._heartbeats()
        for api_key in self.sim.events.listening_keys():
            account = self.sim.accounts.get(api_key)
            if account is not None:
                self.sim.touch(account)
        if self.topics:
            self._poll_topics()

    def _poll_topics(self) -> None:
        sampler = self._sampler()
        now_ms = sampler.now_ms
        delivered = False
        for topic in list(self.topics.values()):
            if now_ms < topic.due_ms:
                continue
            following = topic.due_ms + topic.interval_ms
            topic.due_ms = following if following > now_ms else now_ms + topic.interval_ms
            texts = topic.poll(now_ms, sampler)
            if texts:
                topic.deliver(texts)
                delivered = True
        if delivered:
            self.notify()

    def _apply_faults(self) -> None:
        pending = self.sim.faults.pending()
        if not pending:
            return
        periodic = [f for f in pending if f.kind is FaultKind.WS_DISCONNECT_EVERY]
        consumable = len(periodic) < len(pending)
        for conn in list(self.connections):
            path = conn.venue_path
            for spec in periodic:
                if conn.close_at is None and spec.matches(conn.venue, path):
                    conn.close_at = conn.opened_at + spec.delay_s
            while consumable and not conn.closed:  # one use of each injection per connection
                fault = self.sim.faults.take(conn.venue, path, CONSUMED_FAULTS, conn.faults_taken)
                if fault is None:
                    break
                conn.faults_taken.add(fault.serial)
                self._apply(conn, fault.kind, fault.delay_s)
                self.notify()

    @staticmethod
    def _apply(conn: WsConnection, kind: FaultKind, delay_s: float) -> None:
        if kind is FaultKind.WS_DROP:
            conn.abort()
        elif kind is FaultKind.WS_STALL:
            conn.stall(delay_s)
        elif kind is FaultKind.WS_DELAY:
            conn.delay(delay_s, 1)
        elif kind is FaultKind.WS_GAP:
            conn.gap()

    def _heartbeats(self) -> None:
        now = asyncio.get_running_loop().time()
        seconds = self.config.seconds
        for conn, session in list(self.connections.items()):
            if conn.closed:
                continue
            beat = conn.protocol.heartbeat
            session.check()
            if conn.close_at is not None and now >= conn.close_at:
                conn.close(1000, "")
                continue
            if beat.pong_timeout_s is not None and now - conn.last_pong > seconds(
                    beat.pong_timeout_s):
                self.guard.violation(conn.venue, "heartbeat")
                conn.close(1008, "pong timeout")
                continue
            if beat.idle_timeout_s is not None:
                active = max(conn.last_recv, conn.last_data) if beat.data_keeps_alive else (
                    conn.last_recv)
                if now - active > seconds(session.idle_timeout_s or beat.idle_timeout_s):
                    self.guard.violation(conn.venue, "heartbeat")
                    conn.close(1000, "idle timeout")
                    continue
            if beat.server_ping_s is not None and now - conn.last_ping_sent >= seconds(
                    beat.server_ping_s):
                conn.ping()
                self.notify()
            if (beat.heartbeat_message_s is not None and session.subscribed
                    and now - conn.last_sent >= seconds(beat.heartbeat_message_s)):
                text = session.heartbeat_message()
                if text is not None:
                    conn.reply(text)

    # --- admin ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What `/admin/ws` shows: connections, topics and what was sent."""
        return {
            "connections": [{
                "id": c.id, "venue": c.venue, "path": c.venue_path, "surface":
                c.protocol.surface, "topics": len(c.topics), "sent": c.sent, "lost": c.lost,
                "stalled": c.stalled, "channels": sorted(s.channels),
                "faults_taken": sorted(c.faults_taken),
            } for c, s in self.connections.items()],
            "topics": len(self.topics),
            "ticks": self.ticks,
            "events_published": self.sim.events.published,
        }

    def add_admin_routes(self, app: web.Application) -> None:
        async def ws_state(_request: web.Request) -> web.Response:
            return web.Response(text=json.dumps(self.snapshot()),
                                content_type="application/json")

        app.router.add_get("/admin/ws", ws_state)

