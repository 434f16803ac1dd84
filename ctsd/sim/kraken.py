"""Kraken spot: `/0/public/*` and `/0/private/*`, as ccxt's `kraken` class calls them.

Served under `/kraken`, so `point_at_simulator` maps `https://api.kraken.com` to
`<base>/kraken`. What is Kraken's and nowhere else:

* Private calls are form POSTs signed with `API-Sign` = base64(HMAC-SHA512(
  base64decode(secret), uri_path + SHA256(nonce + body))) next to `API-Key`. The
  nonce must exceed the last one accepted for the key (`EAPI:Invalid nonce`), so
  two processes sharing a key fail here exactly as they would in production. The
  secret is base64 as on Kraken: a key provisioned with a non-base64 secret can
  never produce a valid signature (and ccxt cannot even sign with it).
* Two decaying counters per API key, with the Starter tier's numbers: the REST
  call counter (max 15, draining 0.33/s; +1 per private call except AddOrder and
  CancelOrder) answering `EAPI:Rate limit exceeded`, and the trading counter per
  key and pair (max 60, draining 1/s; +1 per order, plus a cancel penalty that
  shrinks as the order ages) answering `EOrder:Rate limit exceeded`. Public calls
  are not counted: Kraken publishes no number for them.
* Every answer, errors included, is HTTP 200 with `{"error": [...], "result": ...}`;
  ccxt's kraken class maps the error strings (the table is in `kraken_wire`).

Endpoints are one table (`KrakenSim.endpoints`): method, path, access, counter cost,
handler; any other `/0/...` path answers `EGeneral:Unknown method`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web

from ctsd.sim import auth, unserved, wire
from ctsd.sim import kraken_wire as render
from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
    Permission,
)
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.endpoints import Handler, RequestCall, Route, mount
from ctsd.sim.kraken_account import KrakenAccount
from ctsd.sim.kraken_margin import KrakenMargin, posted
from ctsd.sim.kraken_market import KrakenMarketData
from ctsd.sim.kraken_orders import KrakenOrders
from ctsd.sim.kraken_wire import KrakenAsset, KrakenPair
from ctsd.sim.market import TIMEFRAMES, InstrumentKind, Timeframe
from ctsd.sim.ratelimit import DecayingCounter, RateRule
from ctsd.sim.state import Simulator
from ctsd.sim.venue import Venue
from ctsd.sim.wire import RequestData, VenueError, json_response, read_request

NAME = "kraken"

API_COUNTER = RateRule(limit=15, window_s=15 / 0.33)
"""Starter tier: the call counter tops out at 15 and drains 0.33 a second."""
FEES = FeeSchedule(maker=Decimal("0.0025"), taker=Decimal("0.0040"),
                   decimals=render.COST_DECIMALS)
"""Kraken Pro's entry tier (0.25 % maker, 0.40 % taker), charged in the quote asset, each
trade's fee to the decimals Kraken reports it in (an order's fee is its trades' sum)."""
OHLC_ENTRIES = 720
"""Kraken serves only the 720 most recent candles, whatever `since` asks for."""
INTERVALS = frozenset({1, 5, 15, 30, 60, 240, 1440, 10080, 21600})
_SPOT = InstrumentKind.SPOT
_T = TypeVar("_T")
_N = TypeVar("_N", int, Decimal)


class Access(Enum):
    """Which key permission an endpoint needs (Kraken's query-funds/orders vs trade)."""

    PUBLIC = None
    QUERY = Permission.READ
    TRADE = Permission.TRADE


@dataclass(frozen=True, slots=True)
class Call(RequestCall):
    """What a handler gets: the parsed request and (private endpoints) the account."""

    data: RequestData
    account: Account | None

    def missing(self, name: str) -> VenueError:
        return render.error(f"{render.INVALID_ARGUMENTS}:{name}")

    def decimal(self, name: str) -> Decimal | None:
        return self._number(name, Decimal)

    def integer(self, name: str) -> int | None:
        return self._number(name, int)

    def _number(self, name: str, parse: Callable[[str], _N]) -> _N | None:
        raw = self.params.get(name)
        try:
            return parse(raw) if raw else None
        except (ValueError, InvalidOperation) as exc:
            raise render.error(f"{render.INVALID_ARGUMENTS}:{name}") from exc

    def flag(self, name: str) -> bool:
        """ccxt sends Python booleans urlencoded (`True`); Kraken documents `true`."""
        return self.params.get(name, "").lower() in ("true", "1")


@dataclass(frozen=True, slots=True)
class Endpoint(Route):
    access: Access
    cost: int
    """Points on the REST call counter (0: not counted there)."""
    handler: Handler[Call]


class KrakenSim:
    """Kraken's per-server state (counters, pair names, order tags) and handlers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.calls = DecayingCounter(sim.clock, sim.limits)
        self.trades = DecayingCounter(sim.clock, sim.limits)
        self.pairs = [KrakenPair.of(i) for i in sim.market.catalog.of_kind(_SPOT)]
        self._pair_names: dict[str, KrakenPair] = {}
        for pair in self.pairs:
            self._pair_names[pair.key] = self._pair_names[pair.altname] = pair
        self._by_symbol = {pair.inst.symbol: pair for pair in self.pairs}
        self.assets = [render.asset(code) for code in sim.market.catalog.assets]
        self._asset_names: dict[str, KrakenAsset] = {}
        for a in self.assets:
            self._asset_names[a.id] = self._asset_names[a.altname] = a
        self.orders = KrakenOrders(self)
        self.margin = KrakenMargin(self)
        self._cached: dict[str, str] = {}
        sim.on_reset(self.reset)

    def reset(self) -> None:
        self.calls.reset()
        self.trades.reset()

    # --- the request pipeline ----------------------------------------------------

    async def dispatch(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        data = await read_request(request, f"/{NAME}")
        try:
            account = None
            if endpoint.access.value is not None:
                account = self._authenticate(request, data, endpoint)
            result = await endpoint.handler(Call(data, account))
        except AuthError as exc:
            return render.error(render.AUTH_ERRORS[exc.failure]).response()
        except VenueError as exc:
            return exc.response()
        if isinstance(result, web.Response):
            return result
        return json_response(render.ok(result))

    def _authenticate(self, request: web.Request, data: RequestData, endpoint: Endpoint) -> Account:
        """Key (and IP), call counter, signature, nonce, permission — Kraken counts failures too."""
        account = auth.lookup(self.sim, NAME, request, request.headers.get("API-Key"))
        if endpoint.cost:
            self.charge(self.calls, account.api_key, endpoint.cost, API_COUNTER, "api_counter",
                         render.API_RATE_LIMIT)
        nonce = data.params.get("nonce", "")
        expected = api_sign(account.spec.secret, data.path, nonce, data.raw_body)
        if expected is None or not auth.signatures_match(expected, request.headers.get("API-Sign")):
            raise AuthError(AuthFailure.BAD_SIGNATURE)
        if not nonce.isdigit() or int(nonce) <= account.last_nonce:
            raise AuthError(AuthFailure.NONCE_REUSED, f"{nonce} <= {account.last_nonce}")
        account.last_nonce = int(nonce)
        assert endpoint.access.value is not None
        auth.require(account, endpoint.access.value)
        self.sim.touch(account)
        return account

    def charge(
        self, counter: DecayingCounter, key: Hashable, cost: int, rule: RateRule, kind: str,
        message: str,
    ) -> None:
        if not counter.charge(key, cost, rule).allowed:
            self.sim.stats.violation(NAME, kind)
            raise render.error(message)

    # --- public ---------------------------------------------------------------------

    async def time(self, call: Call) -> Any:
        return render.server_time(self.sim.clock.now_ms())

    async def system_status(self, call: Call) -> Any:
        return {"status": "online", "timestamp": render.iso_seconds(self.sim.clock.now_ms()),
                "upcoming_maintenance": [], "emergency": []}

    async def assets_info(self, call: Call) -> Any:
        wanted = call.params.get("asset")
        if not wanted:
            return self._cached_ok("assets", lambda: {a.id: a.info() for a in self.assets})
        found = [self._asset_names.get(name) for name in wanted.split(",")]
        return {a.id: a.info() for a in _all_known(found, render.UNKNOWN_ASSET)}

    async def asset_pairs(self, call: Call) -> Any:
        if not call.params.get("pair"):
            return self._cached_ok(
                "pairs", lambda: {p.key: render.asset_pair(p, FEES) for p in self.pairs})
        return {p.key: render.asset_pair(p, FEES) for p in self._pairs_param(call)}

    async def ticker(self, call: Call) -> Any:
        pairs = self._pairs_param(call) if call.params.get("pair") else self.pairs
        market, day = self.sim.market, TIMEFRAMES["1d"]
        return {p.key: render.ticker(p, market.ticker(p.inst.symbol),
                                     market.candles(p.inst.symbol, day, limit=1)[-1])
                for p in pairs}

    async def ohlc(self, call: Call) -> Any:
        pair = self._pair(call.require("pair"))
        minutes = call.integer("interval") or 1
        if minutes not in INTERVALS:
            raise render.error(f"{render.INVALID_ARGUMENTS}:interval")
        candles = self.sim.market.candles(pair.inst.symbol, Timeframe(minutes * 60),
                                          limit=OHLC_ENTRIES)
        last = candles[-2 if len(candles) > 1 else -1].open_ms // 1000
        since = call.integer("since")
        if since is not None:  # the current, uncommitted candle is always included
            candles = [c for c in candles[:-1] if c.open_ms // 1000 > since] + candles[-1:]
        return {pair.key: [render.ohlc_row(pair, c) for c in candles], "last": last}

    # --- private: account ---------------------------------------------------------------

    async def balance(self, call: Call) -> Any:
        return render.balance(call.owner(), posted(call.owner()))

    async def balance_ex(self, call: Call) -> Any:
        return render.balance_ex(call.owner(), posted(call.owner()))

    # --- private: trading ----------------------------------------------------------------

    async def websockets_token(self, call: Call) -> Any:
        """A token for `wss://ws-auth.kraken.com/v2`: use it within 15 minutes."""
        token = self.sim.stream_tokens.kraken_token(call.owner().api_key)
        return {"token": token.value, "expires": 900}

    # --- helpers ------------------------------------------------------------------------

    def _pair(self, name: str) -> KrakenPair:
        pair = self._pair_names.get(name)
        if pair is None:
            raise render.error(render.UNKNOWN_PAIR)
        return pair

    def _pairs_param(self, call: Call) -> list[KrakenPair]:
        found = [self._pair_names.get(n) for n in call.require("pair").split(",")]
        return _all_known(found, render.UNKNOWN_PAIR)

    def _cached_ok(self, key: str, build: Callable[[], Any]) -> web.Response:
        """Assets and AssetPairs never change for a server: serialise them once."""
        body = self._cached.get(key)
        if body is None:
            body = self._cached[key] = wire.dumps(render.ok(build()))
        return wire.raw_json_response(body)

    def endpoints(self) -> list[Endpoint]:
        public, query, trade = Access.PUBLIC, Access.QUERY, Access.TRADE
        o = self.orders
        table = [
            ("GET", "/0/public/Time", public, 0, self.time),
            ("GET", "/0/public/SystemStatus", public, 0, self.system_status),
            ("GET", "/0/public/Assets", public, 0, self.assets_info),
            ("GET", "/0/public/AssetPairs", public, 0, self.asset_pairs),
            ("GET", "/0/public/Ticker", public, 0, self.ticker),
            ("GET", "/0/public/OHLC", public, 0, self.ohlc),
            ("POST", "/0/private/Balance", query, 1, self.balance),
            ("POST", "/0/private/BalanceEx", query, 1, self.balance_ex),
            ("POST", "/0/private/OpenOrders", query, 1, o.open_orders),
            ("POST", "/0/private/ClosedOrders", query, 1, o.closed_orders),
            ("POST", "/0/private/QueryOrders", query, 1, o.query_orders),
            ("POST", "/0/private/AddOrder", trade, 0, o.add_order),
            ("POST", "/0/private/CancelOrder", trade, 0, o.cancel_order),
            ("POST", "/0/private/GetWebSocketsToken", query, 1, self.websockets_token),
            ("POST", "/0/private/OpenPositions", query, 1, self.margin.open_positions),
            ("POST", "/0/private/TradeBalance", query, 1, self.margin.trade_balance),
            ("POST", "/0/private/Ledgers", query, 2, self.margin.ledgers),
            *self._market_data_and_history(),
        ]
        return [Endpoint(*row) for row in table]

    def _market_data_and_history(self) -> list[tuple[Any, ...]]:
        """Book, public trades, own trades, fee tiers."""
        md, acct = KrakenMarketData(self), KrakenAccount(self)
        public, query = Access.PUBLIC, Access.QUERY
        return [
            ("GET", "/0/public/Depth", public, 0, md.depth),
            ("GET", "/0/public/Trades", public, 0, md.trades),
            ("POST", "/0/private/TradesHistory", query, 2, acct.trades_history),
            ("POST", "/0/private/QueryTrades", query, 1, acct.query_trades),
            ("POST", "/0/private/TradeVolume", query, 1, acct.trade_volume),
        ]

    def pair(self, name: str) -> KrakenPair:
        """A pair by key or altname, or `EQuery:Unknown asset pair`."""
        return self._pair(name)

    def pair_of(self, symbol: str) -> KrakenPair:
        return self._by_symbol[symbol]

    def is_spot(self, symbol: str) -> bool:
        return symbol in self._by_symbol

    @property
    def fees(self) -> FeeSchedule:
        return FEES


def _all_known(found: Iterable[_T | None], message: str) -> list[_T]:
    items = list(found)
    if any(item is None for item in items):
        raise render.error(message)
    return [item for item in items if item is not None]


def api_sign(secret: str, path: str, nonce: str, body: str) -> str | None:
    """Kraken's API-Sign, or None when the stored secret is not base64 (as Kraken's are)."""
    try:
        key = base64.b64decode(secret, validate=True)
    except binascii.Error:
        return None
    digest = hashlib.sha256((nonce + body).encode()).digest()
    return auth.hmac_b64(key, path.encode() + digest, "sha512")


def _unknown_method(_request: web.Request) -> web.Response:
    return render.error(render.UNKNOWN_METHOD).response()


def build(sim: Simulator) -> web.Application:
    state = KrakenSim(sim)
    return mount(state.endpoints(), state.dispatch, unserved.fallback(sim, NAME, _unknown_method))


def maintenance_response() -> web.Response:
    """Kraken's answer while the API is down for maintenance (ccxt: ExchangeNotAvailable)."""
    return json_response(render.error(render.SERVICE_UNAVAILABLE).body)


def rate_limited_response(retry_after: int) -> web.Response:
    """A 429 carrying Kraken's own body (ccxt matches the body first: DDoSProtection)."""
    return json_response(render.error(render.API_RATE_LIMIT).body, status=429,
                         headers={"Retry-After": str(retry_after)})


VENUE = Venue(
    name=NAME, build=build, maintenance_response=maintenance_response,
    rate_limited_response=rate_limited_response, ccxt_ids=("kraken",),
    url_overrides={
        "wss://ws.kraken.com": "/ws", "wss://ws-auth.kraken.com": "/ws-auth",
        "wss://beta-ws.kraken.com": "/beta-ws", "wss://beta-ws-auth.kraken.com": "/beta-ws-auth",
    },
)
