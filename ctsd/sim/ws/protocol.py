"""What a venue's WebSocket API is made of: limits and heartbeats as data, a session
per connection, topics the server's tick loop feeds.

A `StreamProtocol` is one endpoint family of one venue (Binance spot market
streams, Bybit's private stream, …): the paths it answers, its `WsLimits` and
`Heartbeat` (plain data, like the REST limits), and `open`, which makes the
`Session` that parses the client's messages. Public data flows through `Topic`s:
one per (venue format, channel, symbol, parameter), shared by every connection
subscribed to it, polled by the hub once per tick and rendered once for all.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ctsd.sim.state import Simulator
    from ctsd.sim.ws.connection import WsConnection
    from ctsd.sim.ws.hub import StreamHub
    from ctsd.sim.ws.sampler import Sampler


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Who keeps the connection alive and when the server gives up (nominal seconds)."""

    server_ping_s: float | None = None
    """The server sends a ping frame this often (Binance)."""
    pong_timeout_s: float | None = None
    """…and closes when no pong frame came back for this long."""
    idle_timeout_s: float | None = None
    """Closes when nothing was received (and, with `data_keeps_alive`, nothing sent)
    for this long (Bybit's 10 minutes, OKX's 30 seconds)."""
    data_keeps_alive: bool = False
    heartbeat_message_s: float | None = None
    """Sends `Session.heartbeat_message` this long after the last message while
    subscribed (Kraken's `{"channel":"heartbeat"}`)."""


@dataclass(frozen=True, slots=True)
class WsLimits:
    """A venue's documented WebSocket limits (nominal; `WsConfig` scales them)."""

    connections: int | None = None
    """New connections per IP per `connection_window_s` (shared per `connection_pool`)."""
    connection_window_s: float = 300.0
    connection_pool: str = ""
    """Endpoints that count connection attempts together (`binance`: streams and WS API)."""
    messages_per_s: int | None = None
    """Incoming messages (text, ping and pong frames) per connection per second."""
    streams: int | None = None
    """Subscriptions one connection may hold."""
    subscribe_ops: int | None = None
    """Subscribe/unsubscribe/login requests per connection per `subscribe_window_s`."""
    subscribe_window_s: float = 3600.0


class Session(ABC):
    """A connection's venue-specific state: login, subscriptions, request parsing."""

    idle_timeout_s: float | None = None
    """Overrides `Heartbeat.idle_timeout_s` for this connection (Bybit's `max_active_time`)."""

    def __init__(self, conn: WsConnection, hub: StreamHub) -> None:
        self.conn = conn
        self.hub = hub
        self.channels: set[str] = set()
        """Private channels subscribed (`order`, `executions`, `userData`, …)."""

    @property
    def sim(self) -> Simulator:
        return self.hub.sim

    def join(self, channel: str) -> None:
        self.channels.add(channel)
        self.hub.notify()

    def leave(self, channel: str) -> None:
        self.channels.discard(channel)
        self.hub.notify()

    def on_open(self) -> None:
        """Right after the handshake (Kraken's status message, URL subscriptions)."""
        return None

    @abstractmethod
    def on_text(self, text: str) -> None:
        """One text message from the client."""

    def on_close(self) -> None:
        """The connection ended (the hub already dropped its topics)."""
        return None

    def check(self) -> None:
        """Called on every heartbeat pass: expiries the session watches (listenKeys)."""
        return None

    def heartbeat_message(self) -> str | None:
        """The venue's heartbeat message when `Heartbeat.heartbeat_message_s` is set."""
        return None

    @property
    def subscribed(self) -> bool:
        return bool(self.conn.topics or self.channels)


class StreamProtocol(ABC):
    """One WebSocket endpoint family of a venue."""

    venue: str
    surface: str
    """Short name in counters and logs (`spot-streams`, `private`)."""
    limits: WsLimits
    heartbeat: Heartbeat

    @abstractmethod
    def paths(self) -> list[str]:
        """aiohttp route paths under the venue prefix (`/stream/ws/{name:.*}`)."""

    async def refuse(self, request: web.Request, hub: StreamHub) -> web.StreamResponse | None:
        """An answer to the handshake instead of the upgrade (a bad listenKey), or None."""
        return None

    @abstractmethod
    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        """The session for a new connection."""

    def rate_exceeded(self, conn: WsConnection) -> None:
        """Answer a client past `WsLimits.messages_per_s` (Binance: close 1008)."""
        conn.close(1008, "Too many requests")


class Topic(ABC):
    """A public feed shared by every subscribed connection; polled once per due tick."""

    def __init__(self, key: Hashable, interval_ms: int) -> None:
        self.key = key
        self.interval_ms = interval_ms
        self.due_ms = 0
        self.subscribers: dict[WsConnection, str | None] = {}
        """Connection → prefix wrapping each message (Binance combined streams), or None."""

    book: bool = False
    """Messages are order-book updates (subject to `WS_GAP`)."""

    @abstractmethod
    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        """Messages for every subscriber, if the feed changed (may update state)."""

    def snapshot(self, now_ms: int, sampler: Sampler) -> list[str]:
        """Messages a new subscriber gets at once (venues that push a snapshot)."""
        return []

    def deliver(self, texts: list[str], to: WsConnection | None = None,
                book: bool | None = None) -> None:
        """Send `texts` to every subscriber (or one), wrapped per subscriber."""
        targets = self.subscribers.items() if to is None else (
            (to, self.subscribers.get(to)),)
        book = self.book if book is None else book
        for conn, prefix in targets:
            for text in texts:
                conn.send(text if prefix is None else f"{prefix}{text}}}", book=book)
