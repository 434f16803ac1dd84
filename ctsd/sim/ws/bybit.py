"""Bybit v5 WebSockets: `/v5/public/spot`, `/v5/public/linear`, `/v5/private`.

Served under `/bybit` with Bybit's own paths (`wss://stream.bybit.com/v5/...`).
Requests are `{"op": "subscribe"|"unsubscribe"|"ping"|"auth", "args": [...],
"req_id": ...}`; answers and pongs have each endpoint's documented shape (public
spot, public linear and private differ). Private topics need `auth` first:
`[api_key, expires_ms, hex(HMAC_SHA256(secret, "GET/realtime" + expires))]`; a
refusal carries the request back, as Bybit does, and ccxt raises it as
AuthenticationError.

Limits (docs "Connect", /v5/ws/connect): 500 new connections per 5 minutes per IP
(all endpoints of the domain), at most 10 args per spot subscribe request, at most
21,000 characters of args per public connection. Heartbeat: the client sends
`{"op":"ping"}` (every 20 s recommended); with no ping and no data for 10 minutes
the server cuts the connection; a private connection may shorten that with
`?max_active_time=30s..10m`.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from ctsd.sim import auth
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.book import BookSnapshot, Level
from ctsd.sim.bybit_endpoints import INTERVALS
from ctsd.sim.bybit_wire import market_id
from ctsd.sim.events import AccountEvent, OrderUpdate
from ctsd.sim.market import TIMEFRAMES, Instrument, InstrumentKind, TickerStats
from ctsd.sim.state import Simulator
from ctsd.sim.wire import dumps
from ctsd.sim.ws import bybit_wire as wire
from ctsd.sim.ws.books import BookFeed, BookRender, TradeFeed
from ctsd.sim.ws.connection import WsConnection
from ctsd.sim.ws.feeds import CandleFeed, TickerFeed
from ctsd.sim.ws.hub import StreamHub
from ctsd.sim.ws.protocol import Heartbeat, Session, StreamProtocol, Topic, WsLimits

VENUE = "bybit"
LIMITS = WsLimits(connections=500, connection_window_s=300, connection_pool="stream")
HEARTBEAT = Heartbeat(idle_timeout_s=600, data_keeps_alive=True)
SPOT_ARGS_PER_REQUEST = 10
ARGS_CHARS_MAX = 21_000
TICKER_MS = {InstrumentKind.SPOT: 50, InstrumentKind.LINEAR: 100}
KLINE_MS = 1000
PRIVATE_TOPICS = ("order", "execution", "wallet", "position")
TRADE_MS = 50
BOOK_DEPTHS = {1: 10, 50: 20, 200: 100, 1000: 200}
"""Allowed `orderbook.{depth}` values and their push period in ms (docs "Orderbook")."""


class BybitBook(BookRender):
    """A snapshot on subscribe, then deltas; `u` counts this topic's pushes."""

    reports_depth_exits = True

    def __init__(self, topic: str, inst: Instrument) -> None:
        self.topic, self.inst = topic, inst
        self.update_id = 1

    def snapshot(self, snap: BookSnapshot) -> list[str]:
        data = wire.book(self.inst, snap.bids, snap.asks, self.update_id, snap.sequence)
        return [wire.public(self.topic, "snapshot", data, snap.time_ms, cts=snap.time_ms)]

    def update(self, old: BookSnapshot, new: BookSnapshot, bids: list[Level],
               asks: list[Level]) -> list[str]:
        self.update_id += 1
        data = wire.book(self.inst, bids, asks, self.update_id, new.sequence)
        return [wire.public(self.topic, "delta", data, new.time_ms, cts=new.time_ms)]
AUTH_MESSAGES = {
    AuthFailure.MISSING_KEY: "Params Error", AuthFailure.UNKNOWN_KEY: "Invalid apikey",
    AuthFailure.BAD_SIGNATURE: "Invalid sign", AuthFailure.STALE_TIMESTAMP: "Params Error",
    AuthFailure.IP_NOT_ALLOWED: "Unmatched IP, please check your API key's bound IP addresses.",
    AuthFailure.PERMISSION_DENIED: "Permission denied",
}
_ACTIVE_TIME = re.compile(r"^(\d+)([sm])$")


class LinearTicker:
    """Linear tickers: a full snapshot on subscribe, then deltas of the changed fields."""

    def __init__(self, inst: Instrument, sim: Simulator) -> None:
        self.inst, self.sim = inst, sim
        self.topic = f"tickers.{market_id(inst)}"
        self._data: dict[str, Any] | None = None
        self._cs = 0

    def _full(self, stats: TickerStats) -> dict[str, Any]:
        return wire.ticker_data(self.inst, stats, self.sim)

    def snapshot(self, stats: TickerStats) -> list[str]:
        data = self._data if self._data is not None else self._full(stats)
        return [wire.public(self.topic, "snapshot", data, stats.close_ms, cs=self._cs)]

    def delta(self, stats: TickerStats) -> list[str]:
        data = self._full(stats)
        old, self._data = self._data, data
        self._cs += 1
        if old is None:
            return [wire.public(self.topic, "snapshot", data, stats.close_ms, cs=self._cs)]
        changed = {k: v for k, v in data.items() if old.get(k) != v}
        changed["symbol"] = data["symbol"]
        return [wire.public(self.topic, "delta", changed, stats.close_ms, cs=self._cs)]


class BybitPublic(StreamProtocol):
    venue = VENUE
    limits = LIMITS
    heartbeat = HEARTBEAT

    def __init__(self, sim: Simulator, kind: InstrumentKind) -> None:
        self.sim, self.kind = sim, kind
        self.category = "spot" if kind is InstrumentKind.SPOT else "linear"
        self.surface = f"public-{self.category}"
        self.symbols = {market_id(i): i for i in sim.market.catalog.of_kind(kind)}

    def paths(self) -> list[str]:
        return [f"/v5/public/{self.category}"]

    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        return BybitSession(conn, hub, self)

    def topic(self, arg: str) -> Topic | str:
        """The feed for a topic name, or the error message Bybit answers."""
        name, _, rest = arg.partition(".")
        if name == "tickers":
            inst = self.symbols.get(rest)
            if inst is None:
                return f"Invalid symbol :[{arg}]"
            return self._ticker(arg, inst)
        if name == "kline":
            interval, _, symbol = rest.partition(".")
            inst = self.symbols.get(symbol)
            if interval not in INTERVALS or inst is None:
                return f"Invalid symbol :[{arg}]" if interval in INTERVALS else (
                    f"error:handler not found,topic:{arg}")
            return CandleFeed(
                (VENUE, self.category, arg), KLINE_MS, inst, TIMEFRAMES[INTERVALS[interval]],
                lambda c, now, closed: wire.public(arg, "snapshot", [
                    wire.kline(interval, c, now, closed)], now), snapshot=True)
        if name == "publicTrade":
            traded = self.symbols.get(rest)
            if traded is None:
                return f"Invalid symbol :[{arg}]"
            return TradeFeed((VENUE, self.category, arg), TRADE_MS, traded, lambda trades: [
                wire.public(arg, "snapshot", wire.public_trades(traded, trades),
                            trades[-1].time_ms)])
        if name == "orderbook":
            depth, _, symbol = rest.partition(".")
            inst = self.symbols.get(symbol)
            if not depth.isdigit() or int(depth) not in BOOK_DEPTHS or inst is None:
                return f"Invalid symbol :[{arg}]" if inst is None else (
                    f"error:handler not found,topic:{arg}")
            return BookFeed((VENUE, self.category, arg), BOOK_DEPTHS[int(depth)], inst,
                            int(depth), BybitBook(arg, inst))
        return f"error:handler not found,topic:{arg}"

    def _ticker(self, arg: str, inst: Instrument) -> Topic:
        key = (VENUE, self.category, arg)
        if inst.kind is InstrumentKind.SPOT:
            def snapshot(stats: TickerStats) -> list[str]:
                data = wire.ticker_data(inst, stats, self.sim)
                return [wire.public(arg, "snapshot", data, stats.close_ms, cs=0)]

            return TickerFeed(key, TICKER_MS[inst.kind], inst, snapshot, snapshot)
        linear = LinearTicker(inst, self.sim)
        return TickerFeed(key, TICKER_MS[inst.kind], inst, linear.delta, linear.snapshot)


class BybitPrivate(StreamProtocol):
    venue = VENUE
    surface = "private"
    limits = LIMITS
    heartbeat = HEARTBEAT

    def paths(self) -> list[str]:
        return ["/v5/private"]

    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        return BybitSession(conn, hub, self)


class BybitSession(Session):
    def __init__(self, conn: WsConnection, hub: StreamHub,
                 protocol: BybitPublic | BybitPrivate) -> None:
        super().__init__(conn, hub)
        self.protocol = protocol
        self.conn_id = f"{secrets.token_hex(10)}-{conn.id}"
        self.args: dict[str, object] = {}
        self.api_key: str | None = None

    @property
    def public(self) -> BybitPublic | None:
        return self.protocol if isinstance(self.protocol, BybitPublic) else None

    def on_open(self) -> None:
        raw = self.conn.request.query.get("max_active_time")
        match = _ACTIVE_TIME.match(raw or "")
        if match and self.public is None:
            seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
            self.idle_timeout_s = float(min(max(seconds, 30), 600))

    def on_text(self, text: str) -> None:
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            self._answer(None, None, False, "error:request not json")
            return
        if not isinstance(request, dict):
            self._answer(None, None, False, "error:request not json")
            return
        op, req_id = request.get("op"), request.get("req_id")
        args = request.get("args") or []
        if op == "ping":
            self._pong(req_id)
        elif op == "auth" and self.public is None:
            self._auth(req_id, args)
        elif op == "subscribe":
            self._subscribe(req_id, [str(a) for a in args])
        elif op == "unsubscribe":
            for arg in args:
                self._unsubscribe(str(arg))
            self._answer(op, req_id, True, "")
        else:
            self._answer(op, req_id, False, f"error:invalid op {op}")

    def _answer(self, op: str | None, req_id: Any, success: bool, msg: str,
                **extra: Any) -> None:
        body: dict[str, Any] = {"success": success, "ret_msg": msg, "conn_id": self.conn_id}
        if req_id is not None or self.public is not None:
            body["req_id"] = "" if req_id is None else str(req_id)
        if op is not None:
            body["op"] = op
        self.conn.reply(dumps({**body, **extra}))

    def _pong(self, req_id: Any) -> None:
        if self.public is None:
            self.conn.reply(dumps({"req_id": "" if req_id is None else str(req_id),
                                   "op": "pong", "args": [str(self.sim.clock.now_ms())],
                                   "conn_id": self.conn_id}))
        else:
            self._answer("ping", req_id, True, "pong")

    def _auth(self, req_id: Any, args: list[Any]) -> None:
        try:
            if len(args) != 3:
                raise AuthError(AuthFailure.MISSING_KEY)
            key, expires, signature = str(args[0]), str(args[1]), str(args[2])
            account = auth.lookup(self.sim, VENUE, self.conn.request, key)
            if not expires.isdigit() or int(expires) <= self.sim.clock.now_ms():
                raise AuthError(AuthFailure.STALE_TIMESTAMP)
            expected = auth.hmac_hex(account.spec.secret, f"GET/realtime{expires}")
            if not auth.signatures_match(expected, signature):
                raise AuthError(AuthFailure.BAD_SIGNATURE)
        except AuthError as exc:
            self._answer("auth", req_id, False, AUTH_MESSAGES[exc.failure],
                         request={"op": "auth", "args": args})
            return
        if self.api_key is None:
            self.conn.on_cleanup(self.sim.events.subscribe(account.api_key, self._on_event))
        self.api_key = account.api_key
        self._answer("auth", req_id, True, "")

    def _subscribe(self, req_id: Any, args: list[str]) -> None:
        public = self.public
        if public is None:
            self._subscribe_private(req_id, args)
            return
        if public.kind is InstrumentKind.SPOT and len(args) > SPOT_ARGS_PER_REQUEST:
            self.hub.guard.violation(VENUE, "args")
            self._answer("subscribe", req_id, False,
                         f"args size >{SPOT_ARGS_PER_REQUEST}")
            return
        chars = sum(len(a) for a in (*self.args, *args))
        if chars > ARGS_CHARS_MAX:
            self.hub.guard.violation(VENUE, "args")
            self._answer("subscribe", req_id, False,
                         f"args length exceeds {ARGS_CHARS_MAX} characters")
            return
        topics: list[tuple[str, Topic]] = []
        for arg in args:
            found = public.topic(arg)
            if isinstance(found, str):
                self._answer("subscribe", req_id, False, found)
                return
            topics.append((arg, found))
        self._answer("subscribe", req_id, True, "subscribe" if public.kind is (
            InstrumentKind.SPOT) else "")
        for arg, topic in topics:
            if arg not in self.args:
                self.args[arg] = topic.key
                self.hub.subscribe(self.conn, topic.key, topic)

    def _subscribe_private(self, req_id: Any, args: list[str]) -> None:
        if self.api_key is None:
            self._answer("subscribe", req_id, False, "Request not authorized")
            return
        unknown = [a for a in args if a not in PRIVATE_TOPICS]
        if unknown:
            self._answer("subscribe", req_id, False,
                         f"error:handler not found,topic:{unknown[0]}")
            return
        for arg in args:
            self.join(arg)
        self._answer("subscribe", req_id, True, "")

    def _unsubscribe(self, arg: str) -> None:
        if arg in self.channels:
            self.leave(arg)
        key = self.args.pop(arg, None)
        if key is not None:
            self.hub.unsubscribe(self.conn, key)

    def _on_event(self, event: AccountEvent) -> None:
        topics = self.channels
        if not topics:
            return
        market = self.sim.market
        if isinstance(event, OrderUpdate):
            inst = market.catalog.instruments[event.order.symbol]
            if "order" in topics:
                self.conn.send(wire.private("order", [wire.order(event, inst)], event.at_ms))
            trade = wire.execution(event, inst) if "execution" in topics else None
            if trade is not None:
                self.conn.send(wire.private("execution", [trade], event.at_ms))
            return
        for text in wire.account_messages(event, market, topics):
            self.conn.send(text)


def protocols(sim: Simulator) -> list[StreamProtocol]:
    return [BybitPublic(sim, InstrumentKind.SPOT), BybitPublic(sim, InstrumentKind.LINEAR),
            BybitPrivate()]

