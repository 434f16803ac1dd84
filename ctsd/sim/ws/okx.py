"""OKX v5 WebSockets: `/ws/v5/public`, `/ws/v5/business` and `/ws/v5/private`.

Served under `/okx` with OKX's paths (`wss://ws.okx.com:443/ws/v5/...`). Requests
are `{"op": "subscribe"|"unsubscribe"|"login", "args": [...], "id"?: ...}`; each
subscribed arg is confirmed by `{"event": "subscribe", "arg": ..., "connId": ...}`,
a failure is `{"event": "error", "code": "60xxx", "msg": ...}`. The client keeps
the connection alive with the text `ping` (answered `pong`). Candles live on
`business`, as on OKX since 2023; private channels need `login` with
`sign = base64(HMAC_SHA256(secret, timestamp + "GET" + "/users/self/verify"))`,
`timestamp` in seconds, within 30 s of the server's clock.

Limits (OKX docs "WebSocket" overview): 3 new connections a second per IP; 480
subscribe, unsubscribe and login requests per connection per hour (over it:
60014 "Requests too frequent."); a connection with no subscription, or with no
data pushed and no message received, for 30 seconds is closed.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from ctsd.sim import auth, derivatives
from ctsd.sim import okx_wire as rest
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.book import BookSnapshot, Level
from ctsd.sim.events import AccountEvent, OrderUpdate
from ctsd.sim.market import TIMEFRAMES, Instrument, InstrumentKind
from ctsd.sim.okx import TIMESTAMP_WINDOW_MS
from ctsd.sim.state import Simulator
from ctsd.sim.ws import okx_wire as wire
from ctsd.sim.ws.books import BookFeed, BookRender, TradeFeed
from ctsd.sim.ws.connection import WsConnection
from ctsd.sim.ws.feeds import CandleFeed, TickerFeed
from ctsd.sim.ws.guard import Window
from ctsd.sim.ws.hub import StreamHub
from ctsd.sim.ws.protocol import Heartbeat, Session, StreamProtocol, Topic, WsLimits

VENUE = "okx"
LIMITS = WsLimits(connections=3, connection_window_s=1, connection_pool="ws",
                  subscribe_ops=480, subscribe_window_s=3600)
HEARTBEAT = Heartbeat(idle_timeout_s=30, data_keeps_alive=True)
TICKER_MS = 100
CANDLE_MS = 500
PRIVATE_CHANNELS = ("account", "positions", "orders")
TRADE_MS = 50
BOOKS = {"books": (400, 100), "books5": (5, 100), "bbo-tbt": (1, 10)}
"""Book channels: (levels, push period ms); the `l2-tbt` ones need VIP levels we do not have."""


class OkxBook(BookRender):
    """`books`: a snapshot then updates chained by `prevSeqId`/`seqId`, each with the
    checksum of the book after it; `books5`/`bbo-tbt`: the top, whole, on each change."""

    reports_depth_exits = True

    def __init__(self, arg: dict[str, str], inst: Instrument, incremental: bool) -> None:
        self.arg, self.inst, self.incremental = arg, inst, incremental

    def _push(self, snap: BookSnapshot, bids: list[list[str]], asks: list[list[str]],
              action: str | None, prev: int) -> str:
        item: dict[str, Any] = {"asks": asks, "bids": bids}
        if not self.incremental:
            item["instId"] = self.arg["instId"]
        item["ts"] = str(snap.time_ms)
        if self.incremental:
            item["checksum"] = wire.checksum(wire.levels(self.inst, snap.bids),
                                             wire.levels(self.inst, snap.asks))
            item["prevSeqId"] = prev
        item["seqId"] = snap.sequence
        extra = {"action": action} if action else {}
        return wire.push(self.arg, [item], **extra)

    def snapshot(self, snap: BookSnapshot) -> list[str]:
        bids, asks = wire.levels(self.inst, snap.bids), wire.levels(self.inst, snap.asks)
        return [self._push(snap, bids, asks, "snapshot" if self.incremental else None, -1)]

    def update(self, old: BookSnapshot, new: BookSnapshot, bids: list[Level],
               asks: list[Level]) -> list[str]:
        if not self.incremental:
            return self.snapshot(new)
        return [self._push(new, wire.levels(self.inst, bids), wire.levels(self.inst, asks),
                           "update", old.sequence)]
INST_TYPES = {"SPOT": InstrumentKind.SPOT, "SWAP": InstrumentKind.LINEAR}
LOGIN_ERRORS = {
    AuthFailure.MISSING_KEY: ("60013", "Invalid args"),
    AuthFailure.UNKNOWN_KEY: ("60005", "Invalid apiKey"),
    AuthFailure.BAD_SIGNATURE: ("60007", "Invalid sign"),
    AuthFailure.STALE_TIMESTAMP: ("60006", "Timestamp request expired"),
    AuthFailure.BAD_PASSPHRASE: ("60024", "Wrong passphrase"),
    AuthFailure.IP_NOT_ALLOWED: ("60009", "Login failed."),
    AuthFailure.PERMISSION_DENIED: ("60009", "Login failed."),
}


class OkxProtocol(StreamProtocol):
    venue = VENUE
    limits = LIMITS
    heartbeat = HEARTBEAT

    def __init__(self, sim: Simulator, surface: str) -> None:
        self.sim = sim
        self.surface = surface
        self.by_id = {rest.inst_id(i): i for i in sim.market.catalog.instruments.values()}

    def paths(self) -> list[str]:
        return [f"/ws/v5/{self.surface}"]

    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        return OkxSession(conn, hub, self)

    def topic(self, channel: str, inst: Instrument) -> Topic | None:
        arg = {"channel": channel, "instId": rest.inst_id(inst)}
        key = (VENUE, self.surface, channel, arg["instId"])
        if channel == "tickers" and self.surface == "public":
            def tickers(stats: Any) -> list[str]:
                return [wire.push(arg, [wire.ticker(inst, stats, self.sim.market)])]

            return TickerFeed(key, TICKER_MS, inst, tickers, tickers)
        if channel == "trades" and self.surface == "public":
            return TradeFeed(key, TRADE_MS, inst, lambda trades: [
                wire.push(arg, wire.trades(inst, trades))])
        if channel in BOOKS and self.surface == "public":
            depth, period = BOOKS[channel]
            return BookFeed(key, period, inst, depth, OkxBook(arg, inst, channel == "books"))
        bar = channel.removeprefix("candle")
        if channel.startswith("candle") and bar in rest.BARS and self.surface == "business":
            return CandleFeed(
                key, CANDLE_MS, inst, TIMEFRAMES[rest.BARS[bar]],
                lambda c, now, closed: wire.push(arg, [rest.candle(inst, c, now)]),
                snapshot=True)
        return None


class OkxSession(Session):
    def __init__(self, conn: WsConnection, hub: StreamHub, protocol: OkxProtocol) -> None:
        super().__init__(conn, hub)
        self.protocol = protocol
        self.conn_id = secrets.token_hex(4)
        self.ops = Window()
        self.api_key: str | None = None
        self.uid = ""
        self.keys: dict[tuple[str, str], object] = {}
        self.private: dict[tuple[str, str, str], dict[str, Any]] = {}
        """(channel, instType, instId) → the subscribed arg."""

    def on_text(self, text: str) -> None:
        if text == "ping":
            self.conn.reply("pong")
            return
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            self.conn.reply(wire.error("60012", f"Invalid request: {text[:200]}", self.conn_id))
            return
        if not isinstance(request, dict):
            self.conn.reply(wire.error("60012", f"Invalid request: {text[:200]}", self.conn_id))
            return
        op = request.get("op")
        request_id = request.get("id")
        request_id = None if request_id is None else str(request_id)
        args = request.get("args")
        if op not in ("subscribe", "unsubscribe", "login"):
            self.conn.reply(wire.error("60019", f"Invalid op: {op}", self.conn_id, request_id))
            return
        if not isinstance(args, list) or not args or not all(isinstance(a, dict) for a in args):
            self.conn.reply(wire.error("60013", "Invalid args", self.conn_id, request_id))
            return
        if not self.hub.charge_subscribe_op(self.conn, self.ops):
            self.conn.reply(wire.error("60014", "Requests too frequent.", self.conn_id,
                                       request_id))
            return
        if op == "login":
            self._login(args[0], request_id)
        else:
            for arg in args:
                self._subscription(op, arg, request_id)

    def _login(self, arg: dict[str, Any], request_id: str | None) -> None:
        try:
            account = auth.lookup(self.sim, VENUE, self.conn.request, arg.get("apiKey"))
            stamp = str(arg.get("timestamp", ""))
            try:
                stamp_ms = int(float(stamp) * 1000)
            except ValueError as exc:
                raise AuthError(AuthFailure.STALE_TIMESTAMP) from exc
            if abs(self.sim.clock.now_ms() - stamp_ms) > TIMESTAMP_WINDOW_MS:
                raise AuthError(AuthFailure.STALE_TIMESTAMP)
            if account.spec.passphrase != arg.get("passphrase"):
                raise AuthError(AuthFailure.BAD_PASSPHRASE)
            expected = auth.hmac_b64(account.spec.secret, f"{stamp}GET/users/self/verify")
            if not auth.signatures_match(expected, arg.get("sign")):
                raise AuthError(AuthFailure.BAD_SIGNATURE)
        except AuthError as exc:
            code, msg = LOGIN_ERRORS[exc.failure]
            self.conn.reply(wire.error(code, msg, self.conn_id, request_id))
            return
        if self.api_key is None:
            self.conn.on_cleanup(self.sim.events.subscribe(account.api_key, self._on_event))
        self.api_key, self.uid = account.api_key, str(account.uid)
        self.conn.reply(wire.event("login", self.conn_id, request_id=request_id, code="0",
                                   msg=""))

    def _subscription(self, op: str, arg: dict[str, Any], request_id: str | None) -> None:
        channel = str(arg.get("channel", ""))
        if channel in PRIVATE_CHANNELS:
            self._private(op, channel, arg, request_id)
            return
        inst = self.protocol.by_id.get(str(arg.get("instId", "")))
        topic = None if inst is None else self.protocol.topic(channel, inst)
        if inst is None or topic is None:
            self.conn.reply(wire.error(
                "60018", f"Wrong URL or channel:{channel},instId:{arg.get('instId')} doesn't "
                "exist. Please use the correct URL, channel and parameters referring to API "
                "document.", self.conn_id, request_id))
            return
        echo = {"channel": channel, "instId": rest.inst_id(inst)}
        self.conn.reply(wire.event(op, self.conn_id, echo, request_id))
        slot = (channel, echo["instId"])
        if op == "subscribe" and slot not in self.keys:
            self.keys[slot] = topic.key
            self.hub.subscribe(self.conn, topic.key, topic)
        elif op == "unsubscribe" and slot in self.keys:
            self.hub.unsubscribe(self.conn, self.keys.pop(slot))

    def _private(self, op: str, channel: str, arg: dict[str, Any],
                 request_id: str | None) -> None:
        if self.protocol.surface != "private" or self.api_key is None:
            code, msg = ("60011", "Please log in") if self.protocol.surface == "private" else (
                "60018", f"Wrong URL or channel:{channel} doesn't exist.")
            self.conn.reply(wire.error(code, msg, self.conn_id, request_id))
            return
        inst_type = str(arg.get("instType", "ANY"))
        echo = {"channel": channel, **({"instType": inst_type} if channel != "account" else {}),
                **({"instId": arg["instId"]} if "instId" in arg else {}),
                **({"ccy": arg["ccy"]} if "ccy" in arg else {}), "uid": self.uid}
        slot = (channel, inst_type, str(arg.get("instId", "")))
        self.conn.reply(wire.event(op, self.conn_id, echo, request_id))
        if op == "unsubscribe":
            self.private.pop(slot, None)
            if channel not in {c for c, _, _ in self.private}:
                self.leave(channel)
            return
        self.private[slot] = echo
        self.join(channel)
        self._snapshot(channel, echo)

    def _snapshot(self, channel: str, echo: dict[str, Any]) -> None:
        account = self.sim.accounts.get(self.api_key or "")
        if account is None:
            return
        market = self.sim.market
        self.sim.touch(account)
        if channel == "account":
            self.conn.send(wire.push(echo, [rest.trading_balance(account, market, None)]))
        elif channel == "positions":
            self.conn.send(wire.push(echo, wire.positions(account, market)))

    def _on_event(self, event: AccountEvent) -> None:
        market = self.sim.market
        for (channel, inst_type, inst_id), echo in self.private.items():
            if isinstance(event, OrderUpdate):
                if channel != "orders":
                    continue
                inst = market.catalog.instruments[event.order.symbol]
                if not _matches(inst, inst_type, inst_id):
                    continue
                data = wire.order(event, inst,
                                  derivatives.order_leverage(event.account, event.order))
                self.conn.send(wire.push(echo, [data]))
            elif channel == "account":
                ccys = set(event.spot_assets) | set(event.derivative_assets)
                balance = rest.trading_balance(event.account, market, ccys)
                if balance["details"]:
                    self.conn.send(wire.push(echo, [balance]))
            elif channel == "positions" and event.positions:
                items = [item for s in event.positions
                         if _matches(market.catalog.instruments[s], inst_type, inst_id)
                         for item in wire.positions(event.account, market, s, event.at_ms)]
                if items:
                    self.conn.send(wire.push(echo, items))


def _matches(inst: Instrument, inst_type: str, inst_id: str) -> bool:
    if inst_id and rest.inst_id(inst) != inst_id:
        return False
    kind = INST_TYPES.get(inst_type)
    return inst_type == "ANY" or kind is inst.kind


def protocols(sim: Simulator) -> list[StreamProtocol]:
    return [OkxProtocol(sim, "public"), OkxProtocol(sim, "business"),
            OkxProtocol(sim, "private")]
