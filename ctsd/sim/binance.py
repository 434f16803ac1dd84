"""Binance: spot (`/api/v3`, `/sapi/v1`) and USDⓈ-M futures (`/fapi/v1..v3`).

Served under `/binance` with Binance's own paths, so `point_at_simulator` maps
`https://api.binance.com/api/v3` to `<base>/binance/api/v3` and
`https://fapi.binance.com/fapi/v1` to `<base>/binance/fapi/v1`. What is Binance's
and nowhere else: HMAC-SHA256 over query string + form body with `X-MBX-APIKEY`,
`timestamp`/`recvWindow`; request weight per IP per minute, separately for spot
and futures, published in `X-MBX-USED-WEIGHT-1M`, refused with 429/-1003 and,
for a client that keeps going, an IP ban with 418; error codes as Binance sends
them. Endpoints are one table (`BinanceSim.endpoints`): method, path, weight, security, handler.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ctsd.sim import auth, unserved
from ctsd.sim import binance_market as market_data
from ctsd.sim import binance_wire as render
from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
)
from ctsd.sim.auth import AuthError, AuthFailure
from ctsd.sim.binance_account import BinanceAccount
from ctsd.sim.binance_api import (
    FEES,
    KIND,
    WEIGHT_RULES,
    Call,
    Endpoint,
    Security,
    Surface,
    by_symbol,
    kline_weight,
)
from ctsd.sim.binance_deriv import FuturesDerivatives, render_mark_kline
from ctsd.sim.binance_margin import BinanceMargin
from ctsd.sim.binance_market import BinanceMarketData
from ctsd.sim.binance_options import BinanceOptions
from ctsd.sim.binance_orders import BinanceOrders
from ctsd.sim.endpoints import mount
from ctsd.sim.market import TIMEFRAMES, Instrument, InstrumentKind
from ctsd.sim.ratelimit import BanList, FixedWindowLimiter, Verdict
from ctsd.sim.state import Simulator
from ctsd.sim.venue import Venue
from ctsd.sim.wire import RequestData, VenueError, json_response, raw_json_response, read_request

NAME = "binance"
BAN_BASE_S, BAN_MAX_S = 120.0, 3 * 86_400.0
RECV_WINDOW_DEFAULT, RECV_WINDOW_MAX = 5000, 60_000
KLINE_LIMIT_MAX = {Surface.SPOT: 1000, Surface.FUTURES: 1500}
LISTEN_KEY_KIND = "binance-futures"
"""The `StreamTokens` kind of a USDⓈ-M listenKey (checked by `ctsd.sim.ws.binance`)."""


class BinanceSim:
    """Binance's per-server state (weights, bans, symbol maps) and handlers."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.weights = FixedWindowLimiter(sim.clock, sim.limits)
        self.bans = BanList(sim.clock, sim.limits)
        self._warned: dict[tuple[Surface, str], float] = {}
        catalog = sim.market.catalog
        self.symbols: dict[Surface, dict[str, Instrument]] = {
            s: {render.market_id(i): i for i in catalog.of_kind(KIND[s])} for s in KIND
        }
        self._exchange_info: dict[Surface, str] = {}
        self.deriv = FuturesDerivatives(sim, self.symbols[Surface.FUTURES])
        self.orders = BinanceOrders(self)
        self.account = BinanceAccount(self)
        self.margin = BinanceMargin(self)
        self.options = BinanceOptions(self)
        sim.on_reset(self.reset)

    def reset(self) -> None:
        self.weights.reset()
        self.bans.reset()
        self._warned.clear()

    # --- the request pipeline ----------------------------------------------------

    async def dispatch(self, request: web.Request, endpoint: Endpoint) -> web.Response:
        surface = endpoint.surface
        ip = auth.client_ip(request)
        data = await read_request(request, f"/{NAME}")
        weight = endpoint.weight if isinstance(endpoint.weight, int) else endpoint.weight(
            data.params)
        try:
            verdict = self._charge(surface, ip, weight)
            headers = {"X-MBX-USED-WEIGHT-1M": str(int(verdict.used))}
            try:
                account = self._authenticate(request, data, endpoint.security)
                result = await endpoint.handler(Call(data, surface, account))
            except AuthError as exc:
                status, code, msg = render.AUTH_ERRORS[exc.failure]
                raise render.error(status, code, msg, headers) from exc
            except VenueError as exc:
                exc.headers.update(headers)
                raise
        except VenueError as exc:
            return exc.response()
        if isinstance(result, web.Response):
            result.headers.update(headers)
            return result
        return json_response(result, headers=headers)

    def _charge(self, surface: Surface, ip: str, weight: int) -> Verdict:
        key = (surface, ip)
        banned = self.bans.banned_for(key)
        if banned > 0:
            self.sim.stats.violation(NAME, "banned")
            raise render.banned(self.sim.clock.now_ms(), banned)
        verdict = self.weights.charge(key, weight, WEIGHT_RULES[surface])
        if verdict.allowed:
            return verdict
        self.sim.stats.violation(NAME, "weight")
        if self._warned.get(key, -1.0) >= verdict.now:
            length = self.bans.ban(key, BAN_BASE_S, BAN_MAX_S)
            raise render.banned(self.sim.clock.now_ms(), length)
        self._warned[key] = verdict.reset_at
        raise render.error(429, -1003, f"Too much request weight used; current limit is "
                    f"{int(verdict.limit)} request weight per 1 MINUTE. Please use WebSocket "
                    "Streams for live updates to avoid polling the API.",
                    {"Retry-After": str(verdict.retry_after_s),
                     "X-MBX-USED-WEIGHT-1M": str(int(verdict.used))})

    def _authenticate(
        self, request: web.Request, data: RequestData, security: Security,
    ) -> Account | None:
        """Key, IP, timestamp, signature, permission: in the order Binance checks them."""
        if security.value is None:
            return None
        account = auth.lookup(self.sim, NAME, request, request.headers.get("X-MBX-APIKEY"))
        if security is Security.USER_STREAM:
            return account
        raw_ts = data.params.get("timestamp")
        if not raw_ts or not raw_ts.isdigit():
            raise render.missing("timestamp")
        window = int(data.params.get("recvWindow") or RECV_WINDOW_DEFAULT)
        if window > RECV_WINDOW_MAX:
            raise render.error(400, -1131, "recvWindow must be less than 60000")
        auth.check_timestamp(self.sim.clock.now_ms(), int(raw_ts), window)
        payload, signature = _signed_payload(data)
        if not auth.signatures_match(auth.hmac_hex(account.spec.secret, payload), signature):
            raise AuthError(AuthFailure.BAD_SIGNATURE)
        auth.require(account, security.value)
        self.sim.touch(account)
        return account

    # --- public ---------------------------------------------------------------------

    async def ping(self, call: Call) -> Any:
        return {}

    async def time(self, call: Call) -> Any:
        return {"serverTime": self.sim.clock.now_ms()}

    async def exchange_info(self, call: Call) -> Any:
        cached = self._exchange_info.get(call.surface)
        if cached is None:
            limit = self.sim.limits.limit(WEIGHT_RULES[call.surface].limit)
            instruments = list(self.symbols[call.surface].values())
            cached = render.exchange_info_tail(call.surface is Surface.SPOT, instruments, limit)
            self._exchange_info[call.surface] = cached
        return raw_json_response(
            f'{{"timezone":"UTC","serverTime":{self.sim.clock.now_ms()},{cached}')

    async def ticker_24hr(self, call: Call) -> Any:
        if "symbol" in call.params:
            return self._ticker(call, self._instrument(call, call.params["symbol"]))
        return [self._ticker(call, i) for i in self.symbols[call.surface].values()]

    def _ticker(self, call: Call, inst: Instrument) -> dict[str, Any]:
        stats = self.sim.market.ticker(inst.symbol)
        return render.ticker(inst, stats, spot=call.surface is Surface.SPOT)

    async def klines(self, call: Call) -> Any:
        inst = self._instrument(call, call.require("symbol"))
        timeframe = TIMEFRAMES.get(call.require("interval"))
        if timeframe is None:
            raise render.error(400, -1120, "Invalid interval.")
        limit = min(int(call.params.get("limit") or 500), KLINE_LIMIT_MAX[call.surface])
        start, end = call.params.get("startTime"), call.params.get("endTime")
        candles = self.sim.market.candles(
            inst.symbol, timeframe, start_ms=int(start) if start else None,
            end_ms=int(end) if end else None, limit=limit)
        return [render.kline(inst, c) for c in candles]

    async def mark_price_klines(self, call: Call) -> Any:
        """The mark price is the last price here: its candles, without volumes."""
        return [render_mark_kline(row) for row in await self.klines(call)]

    async def system_status(self, call: Call) -> Any:
        return {"status": 0, "msg": "normal"}

    async def empty_exchange_info(self, call: Call) -> Any:
        """COIN-M futures are not simulated; ccxt still loads them by default."""
        return {"timezone": "UTC", "serverTime": self.sim.clock.now_ms(), "rateLimits": [],
                "exchangeFilters": [], "symbols": []}

    # --- signed -----------------------------------------------------------------------

    async def coins(self, call: Call) -> Any:
        account = call.owner()
        return [render.coin(asset, account.spot.get(asset))
                for asset in self.sim.market.catalog.assets]

    async def spot_account(self, call: Call) -> Any:
        return render.spot_account(call.owner(), FEES[Surface.SPOT], self.sim.clock.now_ms())

    async def futures_account_v2(self, call: Call) -> Any:
        return self.deriv.futures_account(call.owner(), v3=False)

    async def futures_account_v3(self, call: Call) -> Any:
        return self.deriv.futures_account(call.owner(), v3=True)

    async def futures_balance(self, call: Call) -> Any:
        return render.futures_balance(call.owner(), self.sim.market)

    # --- user data streams (USDⓈ-M listenKey) ------------------------------------------

    async def new_listen_key(self, call: Call) -> Any:
        """The account's active listenKey, extended 60 minutes, or a new one."""
        token = self.sim.stream_tokens.listen_key(call.owner().api_key, LISTEN_KEY_KIND)
        return {"listenKey": token.value}

    async def keep_alive_listen_key(self, call: Call) -> Any:
        for token in self._listen_keys(call):
            self.sim.stream_tokens.keep_alive(token, LISTEN_KEY_KIND)
            return {"listenKey": token}
        raise render.error(400, -1125, "This listenKey does not exist.")

    async def close_listen_key(self, call: Call) -> Any:
        for token in self._listen_keys(call):
            self.sim.stream_tokens.revoke(token)
        return {}

    def _listen_keys(self, call: Call) -> list[str]:
        token = self.sim.stream_tokens.active(call.owner().api_key, LISTEN_KEY_KIND)
        return [] if token is None else [token.value]

    # --- helpers ------------------------------------------------------------------------

    def fees(self, surface: Surface) -> FeeSchedule:
        return FEES[surface]

    @staticmethod
    def kind(surface: Surface) -> InstrumentKind:
        return KIND[surface]

    def instrument(self, call: Call, market_id: str) -> Instrument:
        """The listed instrument of the call's surface, or -1121."""
        return self._instrument(call, market_id)

    def _instrument(self, call: Call, market_id: str) -> Instrument:
        inst = self.symbols[call.surface].get(market_id)
        if inst is None:
            raise render.error(400, -1121, "Invalid symbol.")
        return inst

    def endpoints(self) -> list[Endpoint]:
        S, F = Surface.SPOT, Surface.FUTURES
        none, user, trade = Security.NONE, Security.USER_DATA, Security.TRADE
        d, o = self.deriv, self.orders
        stream = Security.USER_STREAM
        table = [
            ("GET", "/api/v3/ping", S, 1, none, self.ping),
            ("GET", "/api/v3/time", S, 1, none, self.time),
            ("GET", "/api/v3/exchangeInfo", S, 20, none, self.exchange_info),
            ("GET", "/api/v3/ticker/24hr", S, by_symbol(2, 80), none, self.ticker_24hr),
            ("GET", "/api/v3/klines", S, 2, none, self.klines),
            ("GET", "/api/v3/account", S, 20, user, self.spot_account),
            ("POST", "/api/v3/order", S, 1, trade, o.new_order),
            ("GET", "/api/v3/order", S, 4, user, o.get_order),
            ("DELETE", "/api/v3/order", S, 1, trade, o.cancel_order),
            ("GET", "/api/v3/openOrders", S, by_symbol(6, 80), user, o.open_orders),
            ("GET", "/sapi/v1/system/status", S, 1, none, self.system_status),
            ("GET", "/sapi/v1/capital/config/getall", S, 10, user, self.coins),
            *self._margin(),
            *self.options.rows(),
            ("GET", "/dapi/v1/exchangeInfo", F, 1, none, self.empty_exchange_info),
            ("GET", "/fapi/v1/ping", F, 1, none, self.ping),
            ("GET", "/fapi/v1/time", F, 1, none, self.time),
            ("GET", "/fapi/v1/exchangeInfo", F, 1, none, self.exchange_info),
            ("GET", "/fapi/v1/ticker/24hr", F, by_symbol(1, 40), none, self.ticker_24hr),
            ("GET", "/fapi/v1/klines", F, kline_weight, none, self.klines),
            ("GET", "/fapi/v2/account", F, 5, user, self.futures_account_v2),
            ("GET", "/fapi/v3/account", F, 5, user, self.futures_account_v3),
            ("GET", "/fapi/v2/balance", F, 5, user, self.futures_balance),
            ("GET", "/fapi/v3/balance", F, 5, user, self.futures_balance),
            ("POST", "/fapi/v1/order", F, 1, trade, o.new_order),
            ("GET", "/fapi/v1/order", F, 1, user, o.get_order),
            ("DELETE", "/fapi/v1/order", F, 1, trade, o.cancel_order),
            ("GET", "/fapi/v1/openOrders", F, by_symbol(1, 40), user, o.open_orders),
            # derivatives (ctsd.sim.binance_deriv)
            ("GET", "/fapi/v2/positionRisk", F, 5, user, d.position_risk_v2),
            ("GET", "/fapi/v3/positionRisk", F, 5, user, d.position_risk_v3),
            ("POST", "/fapi/v1/leverage", F, 1, trade, d.set_leverage),
            ("POST", "/fapi/v1/marginType", F, 1, trade, d.set_margin_type),
            ("GET", "/fapi/v1/positionSide/dual", F, 30, user, d.position_mode),
            ("POST", "/fapi/v1/positionSide/dual", F, 1, trade, d.set_position_mode),
            ("GET", "/fapi/v1/multiAssetsMargin", F, 30, user, d.multi_assets_margin),
            ("GET", "/fapi/v1/accountConfig", F, 5, user, d.account_config),
            ("GET", "/fapi/v1/symbolConfig", F, 5, user, d.symbol_config),
            ("GET", "/fapi/v1/leverageBracket", F, 1, user, d.leverage_brackets),
            ("GET", "/fapi/v1/premiumIndex", F, by_symbol(1, 10), none, d.premium_index),
            ("GET", "/fapi/v1/fundingRate", F, 1, none, d.funding_rates),
            ("GET", "/fapi/v1/fundingInfo", F, 1, none, d.funding_info),
            ("GET", "/fapi/v1/income", F, 30, user, d.income),
            ("GET", "/fapi/v1/forceOrders", F, by_symbol(20, 50), user, d.force_orders),
            ("GET", "/fapi/v1/markPriceKlines", F, kline_weight, none, self.mark_price_klines),
            ("POST", "/fapi/v1/listenKey", F, 1, stream, self.new_listen_key),
            ("PUT", "/fapi/v1/listenKey", F, 1, stream, self.keep_alive_listen_key),
            ("DELETE", "/fapi/v1/listenKey", F, 1, stream, self.close_listen_key),
            *self._market_data_and_history(),
        ]
        return [Endpoint(*row) for row in table]

    def _margin(self) -> list[tuple[Any, ...]]:
        """Spot margin (`ctsd.sim.binance_margin`) and the key's API restrictions. Binance
        weighs borrow-repay, margin orders and transfers per UID, not per IP: their IP
        weight here is 1 (the UID budget is not simulated)."""
        S = Surface.SPOT
        user, trade, margin = Security.USER_DATA, Security.TRADE, Security.MARGIN
        m = self.margin
        return [
            ("GET", "/sapi/v1/account/apiRestrictions", S, 1, user, m.api_restrictions),
            ("POST", "/sapi/v1/userListenToken", S, 1, Security.USER_STREAM,
             m.new_listen_token),
            ("GET", "/sapi/v1/margin/allPairs", S, 1, user, m.all_pairs),
            ("GET", "/sapi/v1/margin/isolated/allPairs", S, 10, user, m.all_pairs),
            ("GET", "/sapi/v1/margin/account", S, 10, user, m.cross_account),
            ("GET", "/sapi/v1/margin/isolated/account", S, 10, user, m.isolated_account),
            ("POST", "/sapi/v1/margin/borrow-repay", S, 1, margin, m.borrow_repay),
            ("GET", "/sapi/v1/margin/maxBorrowable", S, 50, user, m.max_borrowable),
            ("GET", "/sapi/v1/margin/interestHistory", S, 1, user, m.interest_history),
            ("GET", "/sapi/v1/margin/interestRateHistory", S, 1, user,
             m.interest_rate_history),
            ("GET", "/sapi/v1/margin/isolatedMarginData", S, 1, user, m.isolated_margin_data),
            ("GET", "/sapi/v1/margin/forceLiquidationRec", S, 1, user, m.force_liquidations),
            ("POST", "/sapi/v1/margin/order", S, 1, margin, m.new_order),
            ("GET", "/sapi/v1/margin/order", S, 10, user, m.get_order),
            ("DELETE", "/sapi/v1/margin/order", S, 10, margin, m.cancel_order),
            ("GET", "/sapi/v1/margin/openOrders", S, 10, user, m.open_orders),
            ("GET", "/sapi/v1/margin/allOrders", S, 200, user, m.all_orders),
            ("GET", "/sapi/v1/margin/myTrades", S, 10, user, m.my_trades),
            ("POST", "/sapi/v1/asset/transfer", S, 1, trade, m.transfer),
        ]

    def _market_data_and_history(self) -> list[tuple[Any, ...]]:
        """Books, trades, book tickers, own fills, order history, fee rates, algo orders."""
        S, F = Surface.SPOT, Surface.FUTURES
        none, user, trade = Security.NONE, Security.USER_DATA, Security.TRADE
        md, acct = BinanceMarketData(self), self.account
        return [
            ("GET", "/api/v3/depth", S, market_data.spot_depth_weight, none, md.depth),
            ("GET", "/api/v3/trades", S, 25, none, md.recent_trades),
            ("GET", "/api/v3/historicalTrades", S, 25, none, md.historical_trades),
            ("GET", "/api/v3/aggTrades", S, 4, none, md.agg_trades),
            ("GET", "/api/v3/ticker/bookTicker", S, by_symbol(2, 4), none, md.book_ticker),
            ("GET", "/api/v3/myTrades", S, 20, user, acct.my_trades),
            ("GET", "/api/v3/allOrders", S, 20, user, acct.all_orders),
            ("GET", "/api/v3/account/commission", S, 20, user, acct.commission),
            ("GET", "/sapi/v1/asset/tradeFee", S, 1, user, acct.trade_fee),
            ("GET", "/fapi/v1/depth", F, market_data.futures_depth_weight, none, md.depth),
            ("GET", "/fapi/v1/trades", F, 5, none, md.recent_trades),
            ("GET", "/fapi/v1/historicalTrades", F, 20, none, md.historical_trades),
            ("GET", "/fapi/v1/aggTrades", F, 20, none, md.agg_trades),
            ("GET", "/fapi/v1/ticker/bookTicker", F, by_symbol(2, 5), none, md.book_ticker),
            ("GET", "/fapi/v1/userTrades", F, 5, user, acct.my_trades),
            ("GET", "/fapi/v1/allOrders", F, 5, user, acct.all_orders),
            ("GET", "/fapi/v1/commissionRate", F, 20, user, acct.commission),
            ("POST", "/fapi/v1/algoOrder", F, 0, trade, acct.new_algo),
            ("GET", "/fapi/v1/algoOrder", F, 1, user, acct.get_algo),
            ("DELETE", "/fapi/v1/algoOrder", F, 1, trade, acct.cancel_algo),
            ("GET", "/fapi/v1/openAlgoOrders", F, by_symbol(1, 40), user, acct.open_algos),
            ("GET", "/fapi/v1/allAlgoOrders", F, 5, user, acct.all_algos),
        ]


def build(sim: Simulator) -> web.Application:
    state = BinanceSim(sim)
    return mount(state.endpoints(), state.dispatch, unserved.fallback(
        sim, NAME, unserved.html_404(unserved.BINANCE_404_PAGE)))


def maintenance_response() -> web.Response:
    """Binance's answer during system maintenance (ccxt maps the message to OnMaintenance)."""
    return json_response({"code": 1, "msg": "System is under maintenance."}, status=503)


def rate_limited_response(retry_after: int) -> web.Response:
    return json_response(
        {"code": -1003, "msg": "Too many requests; please use the websocket for live updates "
                               "to avoid polling the API."},
        status=429, headers={"Retry-After": str(retry_after)})


VENUE = Venue(
    name=NAME, build=build, maintenance_response=maintenance_response,
    rate_limited_response=rate_limited_response,
    ccxt_ids=("binance", "binanceusdm"),
    url_overrides={
        "wss://stream.binance.com:9443": "/stream",
        "wss://fstream.binance.com": "/fstream",
    },
)


def _signed_payload(data: RequestData) -> tuple[str, str | None]:
    """Binance signs `query string + request body` with the `signature` parameter removed."""
    signature: str | None = None
    parts: list[str] = []
    for raw in (data.raw_query, data.raw_body):
        kept = []
        for item in raw.split("&") if raw else ():
            if item.startswith("signature="):
                signature = item[len("signature="):]
            else:
                kept.append(item)
        parts.append("&".join(kept))
    return "".join(parts), signature
