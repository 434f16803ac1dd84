"""Kraken spot WebSocket v2: `/ws/v2` (public) and `/ws-auth/v2` (private).

Served under `/kraken` (`wss://ws.kraken.com/v2` → `/kraken/ws/v2`,
`wss://ws-auth.kraken.com/v2` → `/kraken/ws-auth/v2`; the host becomes a path
segment because both hosts use `/v2`). Requests are `{"method": "subscribe"|
"unsubscribe"|"ping", "params": {...}, "req_id": n}`; every subscribed symbol is
acknowledged with `{"method": "subscribe", "result": {...}, "success": true,
"time_in", "time_out"}`, then its snapshot. Private channels (`executions`,
`balances`) take the token from REST `GetWebSocketsToken` in `params.token`; a
token must be used within 15 minutes and does not expire while a subscription
made with it lasts (docs "GetWebSocketsToken"); an unknown or expired token is
answered `ESession:Invalid session`.

Heartbeats: after any subscription the server sends `{"channel": "heartbeat"}`
about once a second when it has nothing else to send; the client may `ping`.
Kraken documents no idle timeout, so none is enforced. Limits: Kraken's message
rate limit is dynamic and unpublished; the simulator answers past 50 messages a
second on a connection with `Exceeded msg rate` and closes it, and refuses new
connections past 150 per 10 minutes per IP (Kraken support's Cloudflare limit).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ctsd.sim.book import BookSnapshot, Level
from ctsd.sim.events import AccountEvent, OrderUpdate
from ctsd.sim.kraken import INTERVALS
from ctsd.sim.market import TIMEFRAMES, Instrument, InstrumentKind
from ctsd.sim.state import Simulator
from ctsd.sim.wire import dumps
from ctsd.sim.ws import kraken_wire as wire
from ctsd.sim.ws.books import BookFeed, BookRender, TradeFeed
from ctsd.sim.ws.connection import WsConnection
from ctsd.sim.ws.feeds import CandleFeed, TickerFeed
from ctsd.sim.ws.hub import StreamHub
from ctsd.sim.ws.protocol import Heartbeat, Session, StreamProtocol, Topic, WsLimits
from ctsd.sim.ws.tokens import StreamToken

VENUE = "kraken"
LIMITS = WsLimits(connections=150, connection_window_s=600, connection_pool="ws",
                  messages_per_s=50)
HEARTBEAT = Heartbeat(heartbeat_message_s=1.0)
HEARTBEAT_MESSAGE = dumps({"channel": "heartbeat"})
TICKER_MS = 100
OHLC_MS = 500
_TIMEFRAME_OF = {1: "1m", 5: "5m", 15: "15m", 30: "30m", 60: "1h", 240: "4h", 1440: "1d",
                 10080: "1w"}
PRIVATE_CHANNELS = ("executions", "balances")
TRADE_MS = 50
TRADE_SNAPSHOT = 50
BOOK_DEPTHS = (10, 25, 100, 500, 1000)
BOOK_MS = 50


class KrakenBook(BookRender):
    """A snapshot, then updates; each carries the checksum of the book after it."""

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst

    def _message(self, kind: str, snap: BookSnapshot, bids: Sequence[Level],
                 asks: Sequence[Level]) -> str:
        item: dict[str, Any] = {
            "symbol": self.inst.symbol, "bids": wire.book_levels(bids),
            "asks": wire.book_levels(asks),
            "checksum": wire.book_checksum(self.inst, snap.bids, snap.asks)}
        if kind == "update":
            item["timestamp"] = wire.rfc3339(snap.time_ms)
        return wire.channel("book", kind, [item])

    def snapshot(self, snap: BookSnapshot) -> list[str]:
        return [self._message("snapshot", snap, snap.bids, snap.asks)]

    def update(self, old: BookSnapshot, new: BookSnapshot, bids: list[Level],
               asks: list[Level]) -> list[str]:
        return [self._message("update", new, bids, asks)]
SNAP_TRADES_MAX = 50


class KrakenProtocol(StreamProtocol):
    venue = VENUE
    limits = LIMITS
    heartbeat = HEARTBEAT

    def __init__(self, sim: Simulator, private: bool) -> None:
        self.sim, self.private = sim, private
        self.surface = "private" if private else "public"
        self.symbols = {i.symbol: i for i in sim.market.catalog.of_kind(InstrumentKind.SPOT)}

    def paths(self) -> list[str]:
        return ["/ws-auth/v2" if self.private else "/ws/v2"]

    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        return KrakenSession(conn, hub, self)

    def rate_exceeded(self, conn: WsConnection) -> None:
        conn.reply(dumps({"error": "Exceeded msg rate", "success": False}))
        conn.close(1008, "Exceeded msg rate")

    def topic(self, channel: str, inst: Instrument, params: dict[str, Any]) -> Topic | str:
        """The feed for one symbol of a subscription, or Kraken's error message."""
        if channel == "ticker":
            trigger = str(params.get("event_trigger", "trades"))
            key = (VENUE, "ticker", inst.symbol, trigger)

            def ticker(kind: str) -> Any:
                return lambda stats: [wire.channel(
                    "ticker", kind, [wire.ticker(inst, stats)])]

            return TickerFeed(key, TICKER_MS, inst, ticker("update"), ticker("snapshot"))
        if channel == "ohlc":
            interval = params.get("interval", 1)
            if not isinstance(interval, int) or interval not in INTERVALS or (
                    interval not in _TIMEFRAME_OF):
                return "Subscription ohlc interval not supported"
            timeframe = TIMEFRAMES[_TIMEFRAME_OF[interval]]
            return CandleFeed(
                (VENUE, "ohlc", inst.symbol, interval), OHLC_MS, inst, timeframe,
                lambda c, now, closed: wire.channel(
                    "ohlc", "update", [wire.ohlc(inst, interval, c, now)],
                    timestamp=wire.rfc3339(now)), snapshot=True)
        if channel == "trade":
            def trades(kind: str) -> Any:
                return lambda tape: [wire.channel("trade", kind, wire.trades(inst, tape))]

            return TradeFeed((VENUE, "trade", inst.symbol), TRADE_MS, inst, trades("update"),
                             trades("snapshot"), TRADE_SNAPSHOT)
        if channel == "book":
            depth = params.get("depth", 10)
            if depth not in BOOK_DEPTHS:
                return "Subscription depth not supported"
            return BookFeed((VENUE, "book", inst.symbol, depth), BOOK_MS, inst, depth,
                            KrakenBook(inst))
        return f"Channel {channel} not found"


class KrakenSession(Session):
    def __init__(self, conn: WsConnection, hub: StreamHub, protocol: KrakenProtocol) -> None:
        super().__init__(conn, hub)
        self.protocol = protocol
        self.keys: dict[tuple[str, str], object] = {}
        self.token: StreamToken | None = None
        self.sequence = 0

    def on_open(self) -> None:
        self.conn.reply(wire.status(self.conn.id))

    def heartbeat_message(self) -> str | None:
        return HEARTBEAT_MESSAGE

    def on_text(self, text: str) -> None:
        now = self.sim.clock.now_ms()
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            self.conn.reply(dumps({"error": "Malformed request", "success": False}))
            return
        if not isinstance(request, dict):
            self.conn.reply(dumps({"error": "Malformed request", "success": False}))
            return
        method, req_id = request.get("method"), request.get("req_id")
        params = request.get("params") or {}
        if method == "ping":
            self.conn.reply(wire.answer("pong", req_id, now))
        elif method in ("subscribe", "unsubscribe") and isinstance(params, dict):
            channel = str(params.get("channel", ""))
            if channel in PRIVATE_CHANNELS:
                self._private(method, channel, params, req_id)
            else:
                self._public(method, channel, params, req_id)
        else:
            self.conn.reply(wire.answer(str(method), req_id, now, error="Method not found"))

    def _public(self, method: str, channel: str, params: dict[str, Any], req_id: Any) -> None:
        now = self.sim.clock.now_ms()
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols:
            self.conn.reply(wire.answer(method, req_id, now, error="Malformed request"))
            return
        for symbol in map(str, symbols):
            inst = self.protocol.symbols.get(symbol)
            if inst is None:
                self.conn.reply(wire.answer(method, req_id, now, symbol=symbol,
                                            error=f"Currency pair not supported {symbol}"))
                continue
            found = self.protocol.topic(channel, inst, params)
            if isinstance(found, str):
                self.conn.reply(wire.answer(method, req_id, now, symbol=symbol, error=found))
                continue
            slot = (channel, symbol)
            result = {"channel": channel, "symbol": symbol}
            if method == "unsubscribe":
                key = self.keys.pop(slot, None)
                if key is None:
                    self.conn.reply(wire.answer(method, req_id, now, symbol=symbol,
                                                error="Subscription Not Found"))
                    continue
                self.hub.unsubscribe(self.conn, key)
                self.conn.reply(wire.answer(method, req_id, now, result=result))
                continue
            if slot in self.keys:
                self.conn.reply(wire.answer(method, req_id, now, symbol=symbol,
                                            error="Already subscribed"))
                continue
            snapshot = params.get("snapshot", True) is not False
            self.conn.reply(wire.answer(method, req_id, now,
                                        result={**result, "snapshot": snapshot}))
            self.keys[slot] = found.key
            self.hub.subscribe(self.conn, found.key, found, snapshot=snapshot)

    def _private(self, method: str, channel: str, params: dict[str, Any], req_id: Any) -> None:
        now = self.sim.clock.now_ms()
        token = self.sim.stream_tokens.get(str(params.get("token", "")), "kraken")
        if not self.protocol.private or token is None or (
                self.token is not None and token is not self.token):
            self.conn.reply(wire.answer(method, req_id, now, error="ESession:Invalid session"))
            return
        if method == "unsubscribe":
            self.leave(channel)
            self.conn.reply(wire.answer(method, req_id, now, result={"channel": channel}))
            return
        if self.token is None:
            self.token = token
            token.in_use += 1
            self.conn.on_cleanup(self._release)
            self.conn.on_cleanup(self.sim.events.subscribe(token.api_key, self._on_event))
        result: dict[str, Any] = {"channel": channel}
        if channel == "executions":
            result |= {"snap_orders": params.get("snap_orders", True) is not False,
                       "snap_trades": params.get("snap_trades", False) is True}
        self.conn.reply(wire.answer(method, req_id, now, result=result))
        self.join(channel)
        self._snapshot(channel, result)

    def _release(self) -> None:
        if self.token is not None:
            self.token.in_use -= 1

    def _snapshot(self, channel: str, result: dict[str, Any]) -> None:
        account = self.sim.accounts.get(self.token.api_key if self.token else "")
        if account is None:
            return
        self.sim.touch(account)
        if channel == "balances":
            self._push("balances", "snapshot", wire.balances(account))
            return
        if result.get("snap_trades"):
            fills = [f for f in account.fills if f.kind is InstrumentKind.SPOT]
            self._push("executions", "snapshot", [
                wire.trade_snapshot(f, account.orders[f.order_id])
                for f in fills[-SNAP_TRADES_MAX:]])
        if result.get("snap_orders"):
            now = self.sim.clock.now_ms()
            self._push("executions", "snapshot",
                       [wire.order_entry(o, "new", now) for o in account.open_orders()])

    def _push(self, channel: str, kind: str, data: list[Any]) -> None:
        self.sequence += 1
        self.conn.send(wire.channel(channel, kind, data, sequence=self.sequence))

    def _on_event(self, event: AccountEvent) -> None:
        if isinstance(event, OrderUpdate):
            if "executions" not in self.channels or event.order.kind is not InstrumentKind.SPOT:
                return
            for entry in wire.executions(event):
                self._push("executions", "update", [entry])
        elif "balances" in self.channels and event.spot_assets:
            self._push("balances", "update",
                       [wire.balance_entry(a, event.account) for a in event.spot_assets])


def protocols(sim: Simulator) -> list[StreamProtocol]:
    return [KrakenProtocol(sim, private=False), KrakenProtocol(sim, private=True)]
