"""Binance WebSockets: spot and USDⓈ-M market streams, USDⓈ-M user data by listenKey,
and the spot WebSocket API's `userDataStream.subscribe.signature` (the spot account's
user data) and `userDataStream.subscribe.listenToken` (a margin account's).

Paths under `/binance` (see `ctsd.sim.ws` for the whole URL map):

- `/stream/ws[/<stream>]`, `/stream/stream?streams=a/b` — spot raw and combined
  streams (`wss://stream.binance.com:9443`); the `/stream` prefix keeps ccxt's
  "is this a spot URL" test (`'/stream' in url`) true, as on the real host;
- `/fstream/{public,market,private}/ws[/<stream>]`, `/fstream/ws[/<stream>]`,
  `/fstream/stream?streams=…` — USDⓈ-M (`wss://fstream.binance.com`); a
  `listenKey` query parameter (or a `/ws/<listenKey>` path) adds the account's
  user data events;
- `/ws-api/v3` — the spot WebSocket API (`wss://ws-api.binance.com:443/ws-api/v3`).

Market streams answer `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`,
`SET_PROPERTY` and `GET_PROPERTY` as Binance does. Limits (docs "WebSocket
Streams"/"Websocket Market Streams"): 300 connection attempts per 5 minutes per IP
(streams and WS API share it; Binance documents no futures figure, the spot one
is used), 5 incoming messages a second on spot and 10 on futures (text, ping and
pong frames; over it the connection is closed with 1008 "Too many requests"),
1024 streams a connection; the server pings every 20 s on spot (3 min on
futures) and cuts a connection whose pong is a minute (10 minutes) late.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ctsd.sim import auth
from ctsd.sim import binance_wire as rest
from ctsd.sim.accounts import SPOT_WALLET
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.binance import LISTEN_KEY_KIND
from ctsd.sim.binance_margin import LISTEN_TOKEN_KIND
from ctsd.sim.book import BookSnapshot, Level
from ctsd.sim.events import AccountEvent
from ctsd.sim.market import TIMEFRAMES, Instrument, InstrumentKind
from ctsd.sim.state import Simulator
from ctsd.sim.wire import dumps
from ctsd.sim.ws import binance_wire as wire
from ctsd.sim.ws.books import BookFeed, BookRender, TradeFeed
from ctsd.sim.ws.connection import WsConnection
from ctsd.sim.ws.feeds import CandleFeed, TickerFeed
from ctsd.sim.ws.hub import StreamHub
from ctsd.sim.ws.protocol import Heartbeat, Session, StreamProtocol, Topic, WsLimits
from ctsd.sim.ws.sampler import Sampler
from ctsd.sim.ws.tokens import StreamToken

VENUE = "binance"
RECV_WINDOW_DEFAULT, RECV_WINDOW_MAX = 5000, 60_000
SPOT_LIMITS = WsLimits(connections=300, connection_window_s=300, connection_pool="spot",
                       messages_per_s=5, streams=1024)
FUTURES_LIMITS = WsLimits(connections=300, connection_window_s=300,
                          connection_pool="futures", messages_per_s=10, streams=1024)
API_LIMITS = WsLimits(connections=300, connection_window_s=300, connection_pool="spot")
SPOT_HEARTBEAT = Heartbeat(server_ping_s=20, pong_timeout_s=60)
FUTURES_HEARTBEAT = Heartbeat(server_ping_s=180, pong_timeout_s=600)
TICKER_MS = 1000
KLINE_MS = {False: 2000, True: 250}
"""Kline push period: 2 s on spot, 250 ms on USDⓈ-M (keyed by `futures`)."""
TRADE_MS = 50
DEPTH_MS = {False: {"": 1000, "@100ms": 100, "@1000ms": 1000},
            True: {"": 250, "@100ms": 100, "@250ms": 250, "@500ms": 500, "@0ms": 50}}
"""Diff-depth periods by stream suffix (`btcusdt@depth@100ms`); `@0ms` is every tick."""
DEPTH_LEVELS = 1000
"""Levels the diff stream covers: what ccxt's REST snapshot asks for by default."""


class DepthRender(BookRender):
    """Binance sends no snapshot on the stream; the client syncs with REST `depth`."""

    def __init__(self, inst: Instrument) -> None:
        self.inst = inst

    def update(self, old: BookSnapshot, new: BookSnapshot, bids: list[Level],
               asks: list[Level]) -> list[str]:
        return [wire.depth_update(self.inst, old, new, bids, asks)]


# --- market stream topics ------------------------------------------------------------


class BookTickerTopic(Topic):
    """`<symbol>@bookTicker`: the best bid and ask, pushed as they change."""

    def __init__(self, key: object, inst: Instrument, interval_ms: int) -> None:
        super().__init__(key, interval_ms)
        self.inst = inst
        self._last: tuple[object, ...] = ()
        self._update_id = 0

    def poll(self, now_ms: int, sampler: Sampler) -> list[str]:
        stats = sampler.ticker(self.inst.symbol)
        if (stats.bid, stats.ask) == self._last:
            return []
        self._last = (stats.bid, stats.ask)
        self._update_id += 1
        return [wire.book_ticker(self.inst, stats, self._update_id)]


# --- protocols ----------------------------------------------------------------------


class BinanceStreams(StreamProtocol):
    """Spot or USDⓈ-M market streams (plus USDⓈ-M user data on a listenKey)."""

    venue = VENUE

    def __init__(self, sim: Simulator, futures: bool) -> None:
        self.futures = futures
        self.surface = "futures-streams" if futures else "spot-streams"
        self.limits = FUTURES_LIMITS if futures else SPOT_LIMITS
        self.heartbeat = FUTURES_HEARTBEAT if futures else SPOT_HEARTBEAT
        kind = InstrumentKind.LINEAR if futures else InstrumentKind.SPOT
        self.symbols: dict[str, Instrument] = {
            rest.market_id(i).lower(): i for i in sim.market.catalog.of_kind(kind)}

    def paths(self) -> list[str]:
        if not self.futures:
            return ["/stream/ws", "/stream/ws/{name}", "/stream/stream"]
        paths = ["/fstream/ws", "/fstream/ws/{name}", "/fstream/stream"]
        for category in ("public", "market", "private"):
            paths += [f"/fstream/{category}/ws", f"/fstream/{category}/ws/{{name}}",
                      f"/fstream/{category}/stream"]
        return paths

    async def refuse(self, request: web.Request, hub: StreamHub) -> web.StreamResponse | None:
        key = self.listen_key(request)
        if key is None or hub.sim.stream_tokens.get(key, LISTEN_KEY_KIND) is not None:
            return None
        return web.json_response({"code": -1125, "msg": "This listenKey does not exist."},
                                 status=400)

    def listen_key(self, request: web.Request) -> str | None:
        """A futures connection's listenKey (query parameter or `/ws/<listenKey>`)."""
        if not self.futures:
            return None
        if "listenKey" in request.query:
            return request.query["listenKey"]
        name = request.match_info.get("name")
        if name and "@" not in name and len(name) > 20:
            return name
        return None

    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        return StreamSession(conn, hub, self)

    def parse(self, name: str) -> tuple[Instrument, str] | None:
        """`btcusdt@kline_1m` → (instrument, `kline_1m`); None when not a stream here."""
        symbol, _, channel = name.partition("@")
        inst = self.symbols.get(symbol)
        if inst is None or symbol != symbol.lower():
            return None
        return (inst, channel) if self.make_topic(name, inst, channel) is not None else None

    def make_topic(self, key: object, inst: Instrument, channel: str) -> Topic | None:
        if channel in ("ticker", "miniTicker"):
            mini = channel == "miniTicker"
            return TickerFeed(key, TICKER_MS, inst,
                              lambda stats: [wire.ticker(inst, stats, mini)])
        interval = channel.removeprefix("kline_")
        if channel.startswith("kline_") and interval in TIMEFRAMES:
            return CandleFeed(
                key, KLINE_MS[self.futures], inst, TIMEFRAMES[interval],
                lambda candle, now, closed: wire.kline(inst, interval, candle, now, closed))
        if channel == "bookTicker":
            return BookTickerTopic(key, inst, 50)
        if channel in ("trade", "aggTrade"):
            aggregate = channel == "aggTrade"
            return TradeFeed(key, TRADE_MS, inst, lambda trades: wire.trades(
                inst, trades, trades[-1].time_ms, aggregate))
        speed = channel.removeprefix("depth")
        periods = DEPTH_MS[self.futures]
        if channel.startswith("depth") and speed in periods:
            return BookFeed(key, periods[speed], inst, DEPTH_LEVELS, DepthRender(inst))
        return None


class StreamSession(Session):
    """A market stream connection: raw (`/ws`) or combined (`/stream`)."""

    def __init__(self, conn: WsConnection, hub: StreamHub, protocol: BinanceStreams) -> None:
        super().__init__(conn, hub)
        self.protocol = protocol
        self.combined = conn.venue_path.endswith("/stream")
        self.names: dict[str, object] = {}
        self.token: StreamToken | None = None
        self._expired_sent = False

    def on_open(self) -> None:
        request = self.conn.request
        key = self.protocol.listen_key(request)
        if key is not None:
            self.token = self.sim.stream_tokens.get(key, LISTEN_KEY_KIND)
        if self.token is not None:
            self.conn.on_cleanup(self.sim.events.subscribe(self.token.api_key, self._on_event))
            self.join("userData")
        name = request.match_info.get("name")
        if name and "@" in name:
            self._subscribe([name])
        streams = request.query.get("streams")
        if streams:
            self._subscribe(streams.split("/"))

    def _on_event(self, event: AccountEvent) -> None:
        self.check()
        if self._expired_sent:
            return
        for text in wire.user_events(event, self.sim.market, futures=True):
            self.conn.send(text)

    def check(self) -> None:
        """An expired listenKey: one `listenKeyExpired`, then no more user data."""
        token = self.token
        if token is None or self._expired_sent or not self.sim.stream_tokens.expired(token):
            return
        self._expired_sent = True
        self.conn.send(wire.listen_key_expired(token.value, self.sim.clock.now_ms()))

    def on_text(self, text: str) -> None:
        try:
            request = json.loads(text)
        except json.JSONDecodeError as exc:
            self._error(3, f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                        None)
            return
        if not isinstance(request, dict) or "method" not in request:
            self._error(2, "Invalid request: missing field `method`", None)
            return
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._error(2, "Invalid request: params must be an array of strings",
                            request_id)
                return
            handle = self._subscribe if method == "SUBSCRIBE" else self._unsubscribe
            error = handle(params)
            if error is not None:
                self._error(2, error, request_id)
                return
            self.conn.reply(dumps({"result": None, "id": request_id}))
        elif method == "LIST_SUBSCRIPTIONS":
            self.conn.reply(dumps({"result": list(self.names), "id": request_id}))
        elif method == "SET_PROPERTY" and params and params[0] == "combined":
            self.combined = bool(params[1]) if len(params) > 1 else self.combined
            self.conn.reply(dumps({"result": None, "id": request_id}))
        elif method == "GET_PROPERTY" and params == ["combined"]:
            self.conn.reply(dumps({"result": self.combined, "id": request_id}))
        else:
            self._error(2, f"Invalid request: unknown variant `{method}`, expected one of "
                        "`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, "
                        "`GET_PROPERTY`", request_id)

    def _error(self, code: int, msg: str, request_id: Any) -> None:
        self.conn.reply(dumps({"error": {"code": code, "msg": msg}, "id": request_id}))

    def _subscribe(self, names: list[str]) -> str | None:
        parsed = []
        for name in names:
            found = self.protocol.parse(name)
            if found is None:
                return f"Invalid request: invalid stream name `{name}`"
            parsed.append((name, *found))
        fresh = [p for p in parsed if p[0] not in self.names]
        if not self.hub.stream_room(self.conn, len(fresh)):
            limit = self.hub.guard.stream_limit(self.conn.protocol.limits)
            return f"Invalid request: a connection may listen to {limit} streams at most"
        for name, inst, channel in fresh:
            key = (VENUE, self.protocol.futures, name)
            prefix = f'{{"stream":"{name}","data":' if self.combined else None
            self.hub.subscribe(
                self.conn, key, functools.partial(self._topic, key, inst, channel), prefix)
            self.names[name] = key
        return None

    def _topic(self, key: object, inst: Instrument, channel: str) -> Topic:
        topic = self.protocol.make_topic(key, inst, channel)
        assert topic is not None, "parse() accepted the stream"
        return topic

    def _unsubscribe(self, names: list[str]) -> str | None:
        for name in names:
            key = self.names.pop(name, None)
            if key is not None:
                self.hub.unsubscribe(self.conn, key)
        return None


class BinanceSpotApi(StreamProtocol):
    """The spot WebSocket API, as far as ccxt.pro uses it for user data."""

    venue = VENUE
    surface = "spot-ws-api"
    limits = API_LIMITS
    heartbeat = SPOT_HEARTBEAT

    def paths(self) -> list[str]:
        return ["/ws-api/v3"]

    def open(self, conn: WsConnection, hub: StreamHub) -> Session:
        return ApiSession(conn, hub)


class ApiSession(Session):
    """Requests `{"id", "method", "params"}`; answers `{"id", "status", "result"|"error"}`."""

    def __init__(self, conn: WsConnection, hub: StreamHub) -> None:
        super().__init__(conn, hub)
        self.subscriptions: dict[int, Callable[[], None]] = {}
        self._next_subscription = 0

    def on_text(self, text: str) -> None:
        try:
            request = json.loads(text)
        except json.JSONDecodeError:
            self._answer(None, 400, error=(-1100, "Malformed request: invalid JSON."))
            return
        if not isinstance(request, dict):
            self._answer(None, 400, error=(-1100, "Malformed request."))
            return
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        if method == "ping":
            self._answer(request_id, 200, {})
        elif method == "time":
            self._answer(request_id, 200, {"serverTime": self.sim.clock.now_ms()})
        elif method == "userDataStream.subscribe.signature":
            self._subscribe_signature(request_id, params)
        elif method == "userDataStream.subscribe.listenToken":
            self._subscribe_listen_token(request_id, params)
        elif method == "userDataStream.unsubscribe":
            for stop in self.subscriptions.values():
                stop()
            self.subscriptions.clear()
            self.leave("userData")
            self._answer(request_id, 200, {})
        else:
            self._answer(request_id, 400, error=(-1100, f"Unknown method '{method}'."))

    def _subscribe_signature(self, request_id: Any, params: dict[str, Any]) -> None:
        try:
            api_key = self._verify(params)
        except AuthError as exc:
            status, code, msg = rest.AUTH_ERRORS[exc.failure]
            self._answer(request_id, status, error=(code, msg))
            return
        except ValueError as exc:
            self._answer(request_id, 400, error=(-1102, str(exc)))
            return
        self._answer(request_id, 200, {"subscriptionId": self._user_data(api_key, SPOT_WALLET)})

    def _subscribe_listen_token(self, request_id: Any, params: dict[str, Any]) -> None:
        """A margin account's user data by the listenToken `POST /sapi/v1/userListenToken`
        issued (no signature: the token is the credential); -1209 for one that is unknown
        or expired."""
        value = params.get("listenToken")
        token = self.sim.stream_tokens.get(value, LISTEN_TOKEN_KIND) if isinstance(
            value, str) else None
        if token is None:
            self._answer(request_id, 400, error=(-1209, "Invalid listenToken."))
            return
        expires_ms = self.sim.clock.now_ms() + int(
            (token.expires_at - self.sim.clock.monotonic()) * 1000)
        self._answer(request_id, 200, {"subscriptionId": self._user_data(token.api_key,
                                                                         token.scope),
                                       "expirationTime": expires_ms})

    def _user_data(self, api_key: str, wallet: str) -> int:
        """Deliver `api_key`'s events of `wallet` from now on; the subscription's id."""
        subscription_id = self._next_subscription
        self._next_subscription += 1

        def deliver(event: AccountEvent, sid: int = subscription_id) -> None:
            for text in wire.user_events(event, self.sim.market, futures=False, wallet=wallet):
                self.conn.send(f'{{"subscriptionId":{sid},"event":{text}}}')

        stop = self.sim.events.subscribe(api_key, deliver)
        self.conn.on_cleanup(stop)
        self.subscriptions[subscription_id] = stop
        self.join("userData")
        return subscription_id

    def _verify(self, params: dict[str, Any]) -> str:
        """Key, IP, timestamp, signature: in the order Binance checks them."""
        account = auth.lookup(self.sim, VENUE, self.conn.request, params.get("apiKey"))
        raw_ts = str(params.get("timestamp", ""))
        if not raw_ts.isdigit():
            raise ValueError(rest.missing("timestamp").body["msg"])
        window = int(params.get("recvWindow") or RECV_WINDOW_DEFAULT)
        auth.check_timestamp(self.sim.clock.now_ms(), int(raw_ts), min(window, RECV_WINDOW_MAX))
        payload = "&".join(f"{k}={_text(v)}" for k, v in sorted(params.items())
                           if k != "signature")
        expected = auth.hmac_hex(account.spec.secret, payload)
        if not auth.signatures_match(expected, params.get("signature")):
            raise AuthError(AuthFailure.BAD_SIGNATURE)
        return account.api_key

    def _answer(self, request_id: Any, status: int, result: Any = None,
                error: tuple[int, str] | None = None) -> None:
        body: dict[str, Any] = {"id": request_id, "status": status}
        if error is not None:
            body["error"] = {"code": error[0], "msg": error[1]}
        else:
            body["result"] = result
        body["rateLimits"] = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                               "intervalNum": 1, "limit": 6000, "count": 2}]
        self.conn.reply(dumps(body))


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def protocols(sim: Simulator) -> list[StreamProtocol]:
    return [BinanceStreams(sim, futures=False), BinanceStreams(sim, futures=True),
            BinanceSpotApi()]

