"""OKX v5: spot and USDT-margined perpetual swaps under `/okx/api/v5`.

ccxt's `okx` builds every URL as `urls['api']['rest'] + '/api/v5/' + path`, so
`point_at_simulator` turns `https://www.okx.com` into `<base>/okx` and the paths
stay OKX's own. What is OKX's and nowhere else:

- Signing: `OK-ACCESS-SIGN` = base64(HMAC-SHA256(timestamp + METHOD + path[?query]
  + body)) with an ISO-8601 millisecond `OK-ACCESS-TIMESTAMP` valid for 30 s, plus
  the key's `OK-ACCESS-PASSPHRASE`; every failure is HTTP 401 with its own 501xx code.
- Limits per endpoint, keyed as OKX keys them (IP, IP + instType, UID, or UID +
  instId counted per order for the batch endpoints; a one-order batch counts as the
  single-order endpoint), answered with HTTP 429 / 50011. `LIMITS` is the table.
- Orders go through `trade/batch-orders` (ccxt's default) or `trade/order`; either
  answers HTTP 200 with a per-order `sCode`, the top-level code being "1" when every
  order failed — ccxt raises from the `sCode` (51008 → InsufficientFunds).
- One trading account: spot holdings and the swap wallet are reported together.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from typing import Any

from aiohttp import web

from ctsd.sim import auth, unserved
from ctsd.sim import okx_wire as render
from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
    Order,
    Permission,
)
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.endpoints import Handler, RequestCall, Route, mount
from ctsd.sim.market import TIMEFRAMES, Instrument, InstrumentKind
from ctsd.sim.okx_account import OkxAccount
from ctsd.sim.okx_algo import OkxAlgo
from ctsd.sim.okx_deriv import DERIVATIVES_LIMITS, SwapDerivatives, lever_param, pos_mode
from ctsd.sim.okx_margin import OkxMargin
from ctsd.sim.okx_market import OkxMarketData
from ctsd.sim.okx_options import OkxOptions
from ctsd.sim.okx_orders import OkxOrders
from ctsd.sim.okx_wire import OrderFailure
from ctsd.sim.ratelimit import FixedWindowLimiter, RateRule
from ctsd.sim.state import Simulator
from ctsd.sim.venue import Venue
from ctsd.sim.wire import RequestData, VenueError, json_response, raw_json_response, read_request

NAME = "okx"
PREFIX = "/okx"
TIMESTAMP_WINDOW_MS = 30_000
FEES = {  # regular user, Lv1
    InstrumentKind.SPOT: FeeSchedule(maker=Decimal("0.0008"), taker=Decimal("0.001"),
                                     base_fee_on_buy=True),
    InstrumentKind.LINEAR: FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0005")),
    InstrumentKind.OPTION: FeeSchedule(maker=Decimal("0.0002"), taker=Decimal("0.0003")),
}
INST_TYPES = {"SPOT": InstrumentKind.SPOT, "SWAP": InstrumentKind.LINEAR}
"""Simulated instrument types; MARGIN, FUTURES and OPTION are valid but list nothing."""


class Scope(Enum):
    """What OKX counts a limit per ("Rate limit rule" in its docs)."""

    IP = "IP"
    IP_INST_TYPE = "IP + instrument type"
    UID = "User ID"
    UID_INST = "User ID + instrument ID"


@dataclass(frozen=True, slots=True)
class Limit:
    """One documented limit: `rule.limit` requests (orders, for batches) per window."""

    bucket: str
    rule: RateRule
    scope: Scope
    single: Limit | None = None
    """Batch endpoints: a one-order request is charged to this (the single-order) limit."""


_PLACE = Limit("POST trade/order", RateRule(60, 2), Scope.UID_INST)
_CANCEL = Limit("POST trade/cancel-order", RateRule(60, 2), Scope.UID_INST)
LIMITS = {limit.bucket: limit for limit in (
    Limit("GET public/time", RateRule(10, 2), Scope.IP),
    Limit("GET system/status", RateRule(1, 5), Scope.IP),
    Limit("GET public/instruments", RateRule(20, 2), Scope.IP_INST_TYPE),
    Limit("GET market/ticker", RateRule(20, 2), Scope.IP),
    Limit("GET public/opt-summary", RateRule(20, 2), Scope.IP),
    Limit("GET market/candles", RateRule(40, 2), Scope.IP),
    Limit("GET market/history-candles", RateRule(20, 2), Scope.IP),
    Limit("GET asset/currencies", RateRule(6, 1), Scope.UID),
    Limit("GET asset/balances", RateRule(6, 1), Scope.UID),
    Limit("GET account/balance", RateRule(10, 2), Scope.UID),
    Limit("GET account/config", RateRule(5, 2), Scope.UID),
    _PLACE,
    Limit("POST trade/batch-orders", RateRule(300, 2), Scope.UID_INST, _PLACE),
    _CANCEL,
    Limit("POST trade/cancel-batch-orders", RateRule(300, 2), Scope.UID_INST, _CANCEL),
    Limit("GET trade/order", RateRule(60, 2), Scope.UID_INST),
    Limit("GET trade/orders-pending", RateRule(60, 2), Scope.UID),
    *(Limit(bucket, RateRule(limit, seconds), Scope[scope])  # ctsd.sim.okx_deriv
      for bucket, limit, seconds, scope in DERIVATIVES_LIMITS),
)}
"""OKX's published per-endpoint limits (requests per seconds, before the sim's scaling)."""


@dataclass(frozen=True, slots=True)
class Call(RequestCall):
    """What a handler gets: the parsed request, its JSON body and (signed) the account."""

    data: RequestData
    account: Account | None
    body: Any = None

    def missing(self, name: str) -> VenueError:
        return render.empty_param(name)

    def entries(self, batch: bool) -> list[dict[str, Any]]:
        """The order objects of a POST: one object, or a list of them for batch endpoints."""
        items = self.body if batch else [self.body]
        if self.body is None or items == []:
            raise render.error(400, "50000", "Body cannot be empty")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise render.error(400, "50002", "JSON syntax error")
        if len(items) > render.BATCH_MAX:
            raise render.error(200, "51111", f"Maximum {render.BATCH_MAX} orders can be placed "
                                             "in bulk")
        return items

    def instrument_ids(self) -> list[str]:
        if self.data.method == "GET":
            return [self.params.get("instId", "")]
        items = self.body if isinstance(self.body, list) else [self.body]
        return [str(i.get("instId", "")) if isinstance(i, dict) else "" for i in items]


@dataclass(frozen=True, slots=True)
class Endpoint(Route):
    limit: Limit
    permission: Permission | None
    """None for public endpoints."""
    handler: Handler[Call]


class OkxSim:
    """OKX's per-server state (limiters, instrument maps, order tags) and handlers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.limiter = FixedWindowLimiter(sim.clock, sim.limits)
        instruments = sim.market.catalog.instruments.values()
        self.by_id = {render.inst_id(i): i for i in instruments}
        self.codes = {inst_id: 10_000 + n for n, inst_id in enumerate(self.by_id)}
        """`instIdCode`: OKX's numeric instrument id, stable for the server's life."""
        self.orders = OkxOrders(self)
        self.margin = OkxMargin(self)
        self.option = OkxOptions(self)
        self._instruments: dict[str, str] = {}
        self.deriv = SwapDerivatives(sim, self.by_id, self.candles)
        sim.on_reset(self.reset)

    def reset(self) -> None:
        self.limiter.reset()

    # --- the request pipeline ----------------------------------------------------

    async def dispatch(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        data = await read_request(request, PREFIX)
        limit = endpoint.limit
        try:
            ip = auth.client_ip(request)
            if limit.scope is Scope.IP:
                self._charge(limit, (ip,))
            elif limit.scope is Scope.IP_INST_TYPE:
                self._charge(limit, (ip, data.params.get("instType", "")))
            account = None
            if endpoint.permission is not None:
                account = self._authenticate(request, data, endpoint.permission)
            call = Call(data, account, _json_body(request, data))
            if limit.scope is Scope.UID:
                self._charge(limit, (call.owner().uid,))
            elif limit.scope is Scope.UID_INST:
                self._charge_instruments(limit, call)
            result = await endpoint.handler(call)
        except AuthError as exc:
            return render.auth_error(exc.failure, exc.detail).response()
        except VenueError as exc:
            return exc.response()
        return result if isinstance(result, web.Response) else json_response(result)

    def _charge(self, limit: Limit, key: tuple[object, ...], cost: int = 1) -> None:
        if not self.limiter.charge((limit.bucket, *key), cost, limit.rule).allowed:
            self.sim.stats.violation(NAME, limit.bucket)
            raise render.rate_limited()

    def _charge_instruments(self, limit: Limit, call: Call) -> None:
        """Per order and per instrument; a batch of one counts as the single-order call."""
        ids = call.instrument_ids()
        if len(ids) == 1 and limit.single is not None:
            limit = limit.single
        for inst_id, count in Counter(ids).items():
            self._charge(limit, (call.owner().uid, inst_id), count)

    def _authenticate(
        self, request: web.Request, data: RequestData, permission: Permission,
    ) -> Account:
        """Headers, timestamp, key and IP, passphrase, signature, permission — in that order."""
        headers = request.headers
        api_key = headers.get("OK-ACCESS-KEY")
        if not api_key:
            raise AuthError(AuthFailure.MISSING_KEY)
        for name in ("OK-ACCESS-SIGN", "OK-ACCESS-TIMESTAMP", "OK-ACCESS-PASSPHRASE"):
            if not headers.get(name):
                raise render.missing_header(name)
        stamp = headers["OK-ACCESS-TIMESTAMP"]
        auth.check_timestamp(self.sim.clock.now_ms(), render.timestamp_ms(stamp),
                             TIMESTAMP_WINDOW_MS, ahead_ms=TIMESTAMP_WINDOW_MS)
        account = auth.lookup(self.sim, NAME, request, api_key)
        passphrase = account.spec.passphrase
        if passphrase is None or not auth.signatures_match(
                passphrase, headers["OK-ACCESS-PASSPHRASE"]):
            raise AuthError(AuthFailure.BAD_PASSPHRASE)
        query = f"?{data.raw_query}" if data.raw_query else ""
        payload = f"{stamp}{data.method}{data.path}{query}{data.raw_body}"
        expected = auth.hmac_b64(account.spec.secret, payload)
        if not auth.signatures_match(expected, headers["OK-ACCESS-SIGN"]):
            raise AuthError(AuthFailure.BAD_SIGNATURE)
        auth.require(account, permission)
        self.sim.touch(account)
        return account

    # --- public ---------------------------------------------------------------------

    async def time(self, call: Call) -> Any:
        return render.ok([{"ts": str(self.sim.clock.now_ms())}])

    async def system_status(self, call: Call) -> Any:
        """No maintenance scheduled; injected MAINTENANCE faults answer 50001 instead."""
        return render.ok([])

    async def instruments(self, call: Call) -> Any:
        """The whole list is serialised once per type; `instId` narrows it to one."""
        inst_type = call.require("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise render.bad_param("instType")
        if inst_type == "OPTION":
            return self.option.instruments(call)
        kind = INST_TYPES.get(inst_type)
        listed = self.sim.market.catalog.of_kind(kind) if kind else []
        if call.params.get("instId"):
            listed = [i for i in listed if render.inst_id(i) == call.params["instId"]]
            return raw_json_response(render.instruments_body(listed, self.codes))
        cached = self._instruments.get(inst_type)
        if cached is None:
            cached = self._instruments[inst_type] = render.instruments_body(listed, self.codes)
        return raw_json_response(cached)

    async def ticker(self, call: Call) -> Any:
        contract = self.option.contract(call.require("instId"))
        if contract is not None:
            return render.ok([self.option.ticker_of(contract)])
        return render.ok([self.ticker_of(self._instrument(call.require("instId")))])

    async def mark_price(self, call: Call) -> Any:
        if call.params.get("instType") == "OPTION":
            return self.option.mark_prices(call)
        return await self.deriv.mark_price(call)

    async def opt_summary(self, call: Call) -> Any:
        return self.option.opt_summary(call)

    def ticker_of(self, inst: Instrument) -> dict[str, Any]:
        market = self.sim.market
        now = market.now_ms()
        day = 86_400_000
        utc0 = now - now % day
        utc8 = (now + 8 * 3_600_000) // day * day - 8 * 3_600_000
        return render.ticker(inst, market.ticker(inst.symbol),
                             market.price(inst.symbol, at_ms=utc0),
                             market.price(inst.symbol, at_ms=utc8))

    async def candles(self, call: Call) -> Any:
        """Newest first; `after`/`before` are exclusive open-time bounds (older/newer than)."""
        inst = self._instrument(call.require("instId"))
        timeframe = render.BARS.get(call.params.get("bar") or "1m")
        if timeframe is None:
            raise render.bad_param("bar")
        limit = min(max(_int_param(call, "limit", 100), 1), render.CANDLES_MAX)
        after, before = _int_param(call, "after", 0), _int_param(call, "before", -1)
        market = self.sim.market
        candles = market.candles(inst.symbol, TIMEFRAMES[timeframe],
                                 end_ms=after - 1 if after else None, limit=limit)
        now = market.now_ms()
        return render.ok([render.candle(inst, c, now) for c in reversed(candles)
                          if c.open_ms > before])

    # --- signed: account ------------------------------------------------------------

    async def currencies(self, call: Call) -> Any:
        wanted = _ccy_filter(call)
        return render.ok([render.currency(a) for a in self.sim.market.catalog.assets
                          if not wanted or a in wanted])

    async def balance(self, call: Call) -> Any:
        return render.ok([render.trading_balance(call.owner(), self.sim.market,
                                                 _ccy_filter(call))])

    async def funding_balances(self, call: Call) -> Any:
        """The funding account is not simulated: every key's is empty."""
        return render.ok([])

    async def config(self, call: Call) -> Any:
        return render.ok([render.account_config(call.owner(), pos_mode(call.owner()))])

    # --- positions and leverage of every kind ---------------------------------------------

    async def positions(self, call: Call) -> Any:
        """Swap (`ctsd.sim.okx_deriv`), MARGIN (`ctsd.sim.okx_margin`) and OPTION
        (`ctsd.sim.okx_options`) positions, newest first, filtered by `instType`,
        `instId` and `posId`."""
        inst_type = call.params.get("instType") or None
        if inst_type not in (None, "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise render.bad_param("instType")
        ids = {i for i in (call.params.get("instId") or "").split(",") if i}
        pos_ids = {i for i in (call.params.get("posId") or "").split(",") if i}
        account = call.owner()
        rows = (self.deriv.swap_rows(account, ids) + self.margin.position_rows(account, ids)
                + self.option.position_rows(account, ids))
        rows = [r for r in rows if inst_type in (None, r["instType"])
                and (not pos_ids or r["posId"] in pos_ids)]
        rows.sort(key=lambda r: int(r["cTime"]), reverse=True)
        return render.ok(rows)

    def _spot_body(self, call: Call) -> tuple[Instrument, str, Decimal] | None:
        """(instrument, margin mode, leverage) of a set-leverage for a spot instrument."""
        body = call.body if isinstance(call.body, dict) else {}
        inst = self.by_id.get(str(body.get("instId") or ""))
        if inst is None or inst.kind is not InstrumentKind.SPOT:
            return None
        mode = str(body.get("mgnMode") or "")
        if mode not in ("cross", "isolated"):
            raise render.bad_param("mgnMode")
        lever = lever_param(body)
        return inst, mode, lever

    async def set_leverage(self, call: Call) -> Any:
        """MARGIN leverage for a spot instrument, else the swap's (`okx_deriv`)."""
        spot = self._spot_body(call)
        if spot is None:
            return await self.deriv.set_leverage(call)
        return render.ok([self.margin.set_leverage(call.owner(), *spot)])

    async def leverage_info(self, call: Call) -> Any:
        ids = [i for i in call.require("instId").split(",") if i]
        spot = [self.by_id[i] for i in ids if i in self.by_id
                and self.by_id[i].kind is InstrumentKind.SPOT]
        if not spot:
            return await self.deriv.leverage_info(call)
        mode = call.require("mgnMode")
        return render.ok([self.margin.leverage_of(call.owner(), i, mode) for i in spot])

    # --- helpers ------------------------------------------------------------------------

    def instrument(self, inst_id: str) -> Instrument:
        """The instrument of an `instId`, or 51001."""
        return self._instrument(inst_id)

    def entry_instrument(self, entry: dict[str, Any]) -> Instrument:
        """The instrument of one order object of a POST, or its per-order failure."""
        return self._entry_instrument(entry)

    @staticmethod
    def fees(kind: InstrumentKind) -> FeeSchedule:
        return FEES[kind]

    def render_order(self, account: Account, order: Order) -> dict[str, Any]:
        return self.orders.render(account, order)

    def _instrument(self, inst_id: str) -> Instrument:
        inst = self.by_id.get(inst_id)
        if inst is None:
            raise render.error(200, "51001", "Instrument ID does not exist.")
        return inst

    def _entry_instrument(self, entry: dict[str, Any]) -> Instrument:
        inst_id = entry.get("instId")
        if not inst_id:
            raise OrderFailure("50014", "Parameter instId can not be empty")
        inst = self.by_id.get(str(inst_id))
        if inst is None:
            raise OrderFailure("51001", "Instrument ID does not exist.")
        return inst

    def endpoints(self) -> list[Endpoint]:
        read, trade = Permission.READ, Permission.TRADE
        d = self.deriv
        table: list[tuple[str, str, Permission | None, Handler[Call]]] = [
            ("GET", "public/time", None, self.time),
            ("GET", "system/status", None, self.system_status),
            ("GET", "public/instruments", None, self.instruments),
            ("GET", "market/ticker", None, self.ticker),
            ("GET", "market/candles", None, self.candles),
            ("GET", "market/history-candles", None, self.candles),
            ("GET", "asset/currencies", read, self.currencies),
            ("GET", "asset/balances", read, self.funding_balances),
            ("GET", "account/balance", read, self.balance),
            ("GET", "account/config", read, self.config),
            *self.orders.rows(),
            # derivatives (ctsd.sim.okx_deriv)
            ("GET", "account/positions", read, self.positions),
            ("GET", "account/leverage-info", read, self.leverage_info),
            ("POST", "account/set-leverage", trade, self.set_leverage),
            ("POST", "account/set-position-mode", trade, d.set_position_mode),
            ("GET", "account/bills", read, d.bills),
            ("GET", "account/bills-archive", read, d.bills_archive),
            ("GET", "public/position-tiers", None, d.position_tiers),
            ("GET", "public/mark-price", None, self.mark_price),
            ("GET", "public/opt-summary", None, self.opt_summary),
            ("GET", "public/funding-rate", None, d.funding_rate),
            ("GET", "public/funding-rate-history", None, d.funding_rate_history),
            ("GET", "market/mark-price-candles", None, d.mark_price_candles),
            ("GET", "market/history-mark-price-candles", None, d.mark_price_candles),
        ]
        endpoints = [Endpoint(method, f"/api/v5/{path}", LIMITS[f"{method} {path}"], perm,
                              handler) for method, path, perm, handler in table]
        return endpoints + self._market_data_history_and_algos()

    def _market_data_history_and_algos(self) -> list[Endpoint]:
        """Books, trades, tickers, own fills, order history, fee rates, algo orders."""
        rows = [*OkxMarketData(self).rows(), *OkxAccount(self).rows(), *OkxAlgo(self).rows(),
                *self.margin.rows()]
        return [Endpoint(method, f"/api/v5/{path}", Limit(f"{method} {path}", rule,
                                                          Scope[scope]), perm, handler)
                for method, path, perm, handler, rule, scope in rows]


def _int_param(call: Call, name: str, default: int) -> int:
    value = render.int_param(call.params, name)
    return default if value is None else value


def _ccy_filter(call: Call) -> set[str] | None:
    raw = call.params.get("ccy")
    return {c.strip() for c in raw.split(",") if c.strip()} if raw else None


def _json_body(request: web.Request, data: RequestData) -> Any:
    """POST bodies are JSON (50006 otherwise); GET carries none."""
    if data.method != "POST":
        return None
    if request.content_type != "application/json":
        raise render.error(400, "50006", "Invalid Content-Type, please use "
                                         '"application/json" format')
    try:
        return data.json_body()
    except ValueError as exc:
        raise render.error(400, "50002", "JSON syntax error") from exc


def build(sim: Simulator) -> web.Application:
    state = OkxSim(sim)
    return mount(state.endpoints(), state.dispatch, unserved.fallback(
        sim, NAME, unserved.html_404(unserved.OKX_404_PAGE)))


def maintenance_response() -> web.Response:
    """What OKX answers while the matching engine is down (ccxt: 50001 → OnMaintenance)."""
    return json_response(render.MAINTENANCE_BODY, status=503)


def rate_limited_response(retry_after: int) -> web.Response:
    return render.rate_limited({"Retry-After": str(retry_after)}).response()


VENUE = Venue(
    name=NAME, build=build, maintenance_response=maintenance_response,
    rate_limited_response=rate_limited_response, ccxt_ids=("okx", "myokx", "okxus"),
)
