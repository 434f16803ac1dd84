"""Bybit v5: one API for spot and USDT perpetuals (`category=spot|linear`), UTA 2.0.

Served under `/bybit` with Bybit's own paths (`https://api.bybit.com/v5/...` →
`<base>/bybit/v5/...`). What is Bybit's and nowhere else:

- Signing: `X-BAPI-SIGN` = HMAC-SHA256 hex of timestamp + key + recvWindow + (the
  raw query string on GET | the raw JSON body on POST), with `X-BAPI-API-KEY`,
  `X-BAPI-TIMESTAMP` and `X-BAPI-RECV-WINDOW` headers.
- Errors travel at HTTP 200 as `retCode`/`retMsg` (`ctsd.sim.bybit_wire`).
- Rate limits: per UID and endpoint (some per category) per second, from Bybit's
  published table, reported in `X-Bapi-Limit`, `X-Bapi-Limit-Status` and
  `X-Bapi-Limit-Reset-Timestamp` and refused with retCode 10006; plus 600 requests
  per 5 s per IP, refused with a bare HTTP 403 and a 10-minute ban.
- The account is a unified trading account: one wallet reports spot holdings and
  the derivatives wallet together (the core keeps them apart, and so do the
  funds checks: a spot order spends spot holdings, a linear order margin).

Endpoints are one table (`BybitSim.endpoints`): method, path, handler, permission
and per-UID limit; public ones have neither.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ctsd.sim import auth, unserved
from ctsd.sim import bybit_wire as render
from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
    Order,
    Permission,
    RejectKind,
)
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.bybit_account import BybitAccount
from ctsd.sim.bybit_deriv import LinearDerivatives, account_margin_mode, ticker_funding
from ctsd.sim.bybit_endpoints import (
    FEES,
    INTERVALS,
    IP_BAN_S,
    IP_RULE,
    KIND,
    RECV_WINDOW_DEFAULT,
    UNSIMULATED_CATEGORIES,
    Endpoint,
    UidLimit,
)
from ctsd.sim.bybit_margin import BybitMargin
from ctsd.sim.bybit_market import BybitMarketData
from ctsd.sim.bybit_options import OPTION, BybitOptions
from ctsd.sim.bybit_orders import BybitOrders
from ctsd.sim.bybit_wallet import wallet_balance
from ctsd.sim.bybit_wire import LINEAR, SPOT, Call, Serialized
from ctsd.sim.endpoints import Handler, mount
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.ratelimit import BanList, FixedWindowLimiter
from ctsd.sim.state import Simulator
from ctsd.sim.venue import Venue
from ctsd.sim.wire import RequestData, VenueError, dumps, json_response, read_request

NAME = "bybit"


class BybitSim:
    """Bybit's per-server state (limiters, ban list, symbol maps) and its handlers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.limiter = FixedWindowLimiter(sim.clock, sim.limits)
        self.bans = BanList(sim.clock, sim.limits)
        catalog = sim.market.catalog
        self.symbols: dict[str, dict[str, Instrument]] = {
            c: {render.market_id(i): i for i in catalog.of_kind(KIND[c])} for c in KIND
        }
        self._pages: dict[tuple[str, int, str | None], str] = {}
        self.orders = BybitOrders(self)
        self.margin = BybitMargin(self)
        self.option = BybitOptions(self)
        self._md = BybitMarketData(self)
        self.deriv = LinearDerivatives(sim, self.symbols[LINEAR], self._md.kline)
        sim.on_reset(self.reset)

    def reset(self) -> None:
        self.limiter.reset()
        self.bans.reset()

    # --- the request pipeline --------------------------------------------------------

    async def dispatch(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        forbidden = self._charge_ip(auth.client_ip(request))
        if forbidden is not None:
            return forbidden
        now = self.sim.clock.now_ms()
        headers: dict[str, str] = {}
        try:
            data = await read_request(request, f"/{NAME}")
            params = render.params(data, now)
            account = None
            if endpoint.limit is not None:
                account = self._authenticate(request, data, now)
                headers = self._charge_uid(account, endpoint, params, now)
                if endpoint.permission is not None:
                    self._require(account, endpoint.permission, now, headers)
                self.sim.touch(account)
            result = await endpoint.handler(Call(params, account, now))
        except VenueError as exc:
            exc.headers.update(headers)
            return exc.response()
        if isinstance(result, Serialized):
            body = (f'{{"retCode":0,"retMsg":"OK","result":{result.text},'
                    f'"retExtInfo":{{}},"time":{now}}}')
            return web.Response(text=body, headers=headers, content_type="application/json")
        return json_response(render.envelope(result, now), headers=headers)

    def _charge_ip(self, ip: str) -> web.Response | None:
        """All traffic counts against the IP limit; past it, 403 and a ban."""
        if self.bans.banned_for(ip) > 0:
            self.sim.stats.violation(NAME, "ip_banned")
            return _access_too_frequent()
        if self.limiter.charge(("ip", ip), 1, IP_RULE).allowed:
            return None
        self.sim.stats.violation(NAME, "ip")
        self.bans.ban(ip, IP_BAN_S, IP_BAN_S)
        return _access_too_frequent()

    def _authenticate(self, request: web.Request, data: RequestData, now: int) -> Account:
        """Key, IP whitelist, timestamp, signature: in the order Bybit checks them."""
        headers = request.headers
        key = headers.get("X-BAPI-API-KEY")
        ts = headers.get("X-BAPI-TIMESTAMP", "")
        sign = headers.get("X-BAPI-SIGN", "")
        recv = headers.get("X-BAPI-RECV-WINDOW", RECV_WINDOW_DEFAULT)
        origin = ts + (key or "") + recv + (
            data.raw_body if data.method == "POST" else data.raw_query)
        try:
            if not (key and ts and sign):
                raise AuthError(AuthFailure.MISSING_KEY)
            account = auth.lookup(self.sim, NAME, request, key)
            if not ts.isdigit() or not recv.isdigit():
                raise AuthError(AuthFailure.STALE_TIMESTAMP)
            auth.check_timestamp(now, int(ts), int(recv))
            if not auth.signatures_match(auth.hmac_hex(account.spec.secret, origin), sign):
                raise AuthError(AuthFailure.BAD_SIGNATURE)
        except AuthError as exc:
            code, template = render.AUTH_ERRORS[exc.failure]
            msg = template.format(ts=ts, sign=sign, now=now, recv=recv, origin=origin)
            raise render.error(code, msg, now) from exc
        return account

    def _charge_uid(
        self, account: Account, endpoint: Endpoint, params: Mapping[str, Any], now: int,
    ) -> dict[str, str]:
        assert endpoint.limit is not None
        suffix, rule = endpoint.limit.rule(str(params.get("category") or ""))
        verdict = self.limiter.charge((account.uid, endpoint.path, suffix), 1, rule)
        headers = {
            "X-Bapi-Limit": str(int(verdict.limit)),
            "X-Bapi-Limit-Status": str(int(verdict.remaining)),
            "X-Bapi-Limit-Reset-Timestamp": str(now if verdict.allowed else verdict.reset_at_ms),
        }
        if not verdict.allowed:
            self.sim.stats.violation(NAME, "uid")
            raise render.error(*render.RATE_LIMITED, now, headers)
        return headers

    @staticmethod
    def _require(
        account: Account, permission: Permission, now: int, headers: Mapping[str, str],
    ) -> None:
        try:
            auth.require(account, permission)
        except AuthError as exc:
            code, msg = render.AUTH_ERRORS[exc.failure]
            raise render.error(code, msg, now, headers) from exc

    # --- public ------------------------------------------------------------------------

    async def server_time(self, call: Call) -> Any:
        return {"timeSecond": str(call.now_ms // 1000), "timeNano": str(call.now_ms * 1_000_000)}

    async def system_status(self, call: Call) -> Any:
        return {"list": []}

    async def instruments(self, call: Call) -> Any:
        category = self.market_category(call)
        if category is None:
            return {"category": call.text("category"), "list": [], "nextPageCursor": ""}
        wanted = [i for i in self.symbols[category].values()
                  if call.text("symbol") in (None, render.market_id(i))
                  and call.text("baseCoin") in (None, i.base)]
        if call.text("status") not in (None, "Trading"):
            wanted = []
        full = len(wanted) == len(self.symbols[category])
        if category == SPOT:  # Bybit does not paginate spot: limit and cursor are ignored
            return self._cached((SPOT, 0, None), full, lambda: {
                "category": SPOT, "list": [render.spot_instrument(i) for i in wanted]})
        limit = call.integer("limit", 500, 1, 1000)
        after = render.cursor_value(call.text("cursor"), "next")
        start = next((n + 1 for n, i in enumerate(wanted) if render.market_id(i) == after), 0)
        page = wanted[start:start + limit]
        more = start + limit < len(wanted)
        next_cursor = render.cursor("next", render.market_id(page[-1])) if more else ""
        return self._cached((LINEAR, limit, after), full and (after is None or start > 0), lambda: {
            "category": LINEAR, "list": [render.linear_instrument(i) for i in page],
            "nextPageCursor": next_cursor})

    def _cached(
        self, key: tuple[str, int, str | None], cacheable: bool,
        make: Callable[[], dict[str, Any]],
    ) -> Any:
        """Unfiltered instrument pages never change: serialise each once (2,000 markets)."""
        if not cacheable:
            return make()
        if key not in self._pages:
            self._pages[key] = dumps(make())
        return Serialized(self._pages[key])

    async def tickers(self, call: Call) -> Any:
        category = self.market_category(call)
        if category is None:
            return {"category": call.text("category"), "list": []}
        symbol = call.text("symbol")
        chosen = ([self._listed(category, symbol, call.now_ms)] if symbol
                  else self.symbols[category].values())
        return {"category": category, "list": [self._ticker(i, call.now_ms) for i in chosen]}

    def _ticker(self, inst: Instrument, now: int) -> dict[str, Any]:
        stats = self.sim.market.ticker(inst.symbol)
        if inst.kind is InstrumentKind.SPOT:
            return render.spot_ticker(inst, stats)
        hour_ago = self.sim.market.price(inst.symbol, at_ms=now - 3_600_000)
        rate, next_funding = ticker_funding(self.sim.funding, inst)
        return render.linear_ticker(inst, stats, hour_ago, next_funding, rate)

    # --- account -------------------------------------------------------------------------

    async def query_api(self, call: Call) -> Any:
        return render.api_key_info(call.owner())

    async def account_info(self, call: Call) -> Any:
        mode = call.owner().perp.settings.margin_mode
        return render.account_info(call.now_ms, account_margin_mode(mode))

    async def coin_info(self, call: Call) -> Any:
        coin = call.text("coin")
        return {"rows": [render.coin_info(a) for a in self.sim.market.catalog.assets
                         if coin in (None, a)]}

    async def wallet_balance(self, call: Call) -> Any:
        if call.require("accountType") != "UNIFIED":
            raise render.error(10001, "accountType only support UNIFIED.", call.now_ms)
        coin = call.text("coin")
        return wallet_balance(call.owner(), self.sim.market,
                              set(coin.split(",")) if coin else None)


    # --- helpers ----------------------------------------------------------------------------

    def inst(self, order: Order) -> Instrument:
        return self.sim.market.catalog.instruments[order.symbol]

    @staticmethod
    def market_category(call: Call) -> str | None:
        """spot/linear; None for the categories answered empty; else an error."""
        category = call.require("category")
        if category in UNSIMULATED_CATEGORIES:
            return None
        if category not in KIND:
            raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)
        return category

    @staticmethod
    def trading_category(call: Call) -> str:
        category = call.require("category")
        if category not in KIND:
            raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)
        return category

    def listed(self, category: str, market_id: str, now: int) -> Instrument:
        """The category's instrument for a market id, or Bybit's "Not supported symbols"."""
        return self._listed(category, market_id, now)

    @staticmethod
    def interval(name: str) -> str | None:
        """Bybit's interval name (`1`, `60`, `D`) as a unified timeframe."""
        return INTERVALS.get(name)

    @staticmethod
    def fees(category: str) -> FeeSchedule:
        return FEES[category]

    def _listed(self, category: str, market_id: str, now: int) -> Instrument:
        inst = self.symbols.get(category, {}).get(market_id)
        if inst is None:
            raise render.error(*render.NOT_SUPPORTED_SYMBOLS, now)
        return inst

    def tradable(self, category: str, market_id: str, now: int) -> Instrument:
        inst = self.symbols[category].get(market_id)
        if inst is None:
            raise render.rejection(RejectKind.UNKNOWN_SYMBOL, category, market_id, now)
        return inst

    def endpoints(self) -> list[Endpoint]:
        """The table; the paths that also serve `category=option` route it to
        `ctsd.sim.bybit_options`."""
        o = self.option
        by_option = {"/v5/market/instruments-info": o.instruments, "/v5/market/tickers":
                     o.tickers, "/v5/order/create": o.create_order, "/v5/order/cancel":
                     o.cancel_order, "/v5/order/realtime": o.realtime_orders,
                     "/v5/order/history": o.order_history, "/v5/position/list": o.positions}
        return [dataclasses.replace(e, handler=_or_option(e.handler, by_option[e.path]))
                if e.path in by_option else e for e in self._table()]

    def _table(self) -> list[Endpoint]:
        read, trade = Permission.READ, Permission.TRADE
        d = self.deriv
        return [
            Endpoint("GET", "/v5/market/time", self.server_time),
            Endpoint("GET", "/v5/system/status", self.system_status),
            Endpoint("GET", "/v5/market/instruments-info", self.instruments),
            Endpoint("GET", "/v5/market/tickers", self.tickers),
            *self._market_data_and_history(),
            Endpoint("GET", "/v5/user/query-api", self.query_api, read, UidLimit(10)),
            Endpoint("GET", "/v5/account/info", self.account_info, read, UidLimit(50)),
            Endpoint("GET", "/v5/asset/coin/query-info", self.coin_info, read, UidLimit(5)),
            Endpoint("GET", "/v5/account/wallet-balance", self.wallet_balance, read,
                     UidLimit(50)),
            *self.orders.rows(),
            *self.margin.rows(),
            # derivatives (ctsd.sim.bybit_deriv)
            Endpoint("GET", "/v5/market/risk-limit", d.risk_limits),
            Endpoint("GET", "/v5/market/funding/history", d.funding_history),
            Endpoint("GET", "/v5/market/mark-price-kline", d.mark_price_kline),
            Endpoint("GET", "/v5/position/list", d.positions, read, UidLimit(50)),
            Endpoint("POST", "/v5/position/set-leverage", d.set_leverage, trade, UidLimit(10)),
            Endpoint("POST", "/v5/position/switch-mode", d.switch_mode, trade, UidLimit(10)),
            Endpoint("POST", "/v5/account/set-margin-mode", d.set_margin_mode, trade,
                     UidLimit(5)),
            Endpoint("GET", "/v5/account/transaction-log", d.transaction_log, read,
                     UidLimit(25)),
            Endpoint("GET", "/v5/market/delivery-price", self.option.delivery_price),
            Endpoint("GET", "/v5/asset/delivery-record", self.option.delivery_record, read,
                     UidLimit(10)),
        ]

    def _market_data_and_history(self) -> list[Endpoint]:
        """Book, public trades, klines with Bybit's window, own fills, fee rates."""
        md, acct = self._md, BybitAccount(self)
        read = Permission.READ
        return [
            Endpoint("GET", "/v5/market/kline", md.kline),
            Endpoint("GET", "/v5/market/orderbook", md.orderbook),
            Endpoint("GET", "/v5/market/recent-trade", md.recent_trades),
            Endpoint("GET", "/v5/execution/list", acct.executions, read, UidLimit(50)),
            Endpoint("GET", "/v5/account/fee-rate", acct.fee_rate, read, UidLimit(10)),
        ]


def _or_option(handler: Handler[Call], option: Handler[Call]) -> Handler[Call]:
    async def route(call: Call) -> Any:
        return await (option if call.text("category") == OPTION else handler)(call)

    return route


def _access_too_frequent() -> web.Response:
    """The IP limit's answer: a bare 403 (ccxt's bybit maps HTTP 403 to RateLimitExceeded)."""
    return web.Response(status=403, text="403, access too frequent")


def build(sim: Simulator) -> web.Application:
    state = BybitSim(sim)
    return mount(state.endpoints(), state.dispatch, unserved.fallback(sim, NAME, _route_not_found))


def _route_not_found(_request: web.Request) -> web.Response:
    """Bybit's answer for a path it does not have (ccxt: 10017 → BadRequest)."""
    return json_response(render.envelope({}, _wall_ms(), *render.ROUTE_NOT_FOUND), status=404)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def maintenance_response() -> web.Response:
    """Bybit documents 10016 for "service is restarting"; ccxt raises ExchangeError."""
    return json_response(render.envelope({}, _wall_ms(), *render.RESTARTING))


def rate_limited_response(retry_after: int) -> web.Response:
    """Bybit's system-level 429 ("please retry"), with its rate-limit body."""
    return json_response(render.envelope({}, _wall_ms(), *render.RATE_LIMITED), status=429,
                         headers={"Retry-After": str(retry_after)})


VENUE = Venue(
    name=NAME, build=build, maintenance_response=maintenance_response,
    rate_limited_response=rate_limited_response, ccxt_ids=("bybit",),
)
