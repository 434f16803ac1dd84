"""The simulator's aiohttp application: venues under `/<name>`, admin under `/admin`.

Each venue's sub-application serves its REST paths; its WebSocket paths
(`ctsd.sim.ws`) are mounted by the `StreamHub` on the root app, under the same
`/<name>` prefix, ahead of the venues' catch-all; `/admin/ws` lists connections.

One middleware, on the root app, counts requests per venue and applies injected
transport faults before any venue code runs, so a venue module only ever deals
with well-formed traffic (and the two credential faults, via `ctsd.sim.auth`).

The admin API checks every value of a body before anything changes: a wrong
type, NaN, an infinity, a negative or absurd number, an unknown key, venue or
fault kind is a 400 naming the field, never a 500 and never a state (a NaN
price, a fault that raises on every later request) that breaks later answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ctsd.sim import derivatives, faults, option_trading
from ctsd.sim.accounts import DEFAULT_PERMISSIONS, AccountSpec, Permission
from ctsd.sim.faults import TRANSPORT_FAULTS, FaultKind, FaultSpec
from ctsd.sim.matching import derivatives_balances
from ctsd.sim.state import Simulator
from ctsd.sim.venue import Venue, VenueRegistry
from ctsd.sim.ws.hub import StreamHub
from ctsd.sim.ws.venues import stream_protocols

SIM_KEY: web.AppKey[Simulator] = web.AppKey("sim", Simulator)
HUB_KEY: web.AppKey[StreamHub] = web.AppKey("hub", StreamHub)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(sim: Simulator, registry: VenueRegistry) -> web.Application:
    app = web.Application(middlewares=[_fault_middleware(sim, registry)])
    app[SIM_KEY] = sim
    hub = app[HUB_KEY] = StreamHub(sim, stream_protocols(sim))
    _add_admin_routes(app, sim, {venue.name for venue in registry})
    hub.add_admin_routes(app)
    for venue in registry:  # before the venues: their catch-all would shadow the streams
        hub.mount(app, venue.name)
    for venue in registry:
        app.add_subapp(f"/{venue.name}", venue.build(sim))
    app.on_startup.append(hub.start)
    app.on_shutdown.append(hub.stop)
    return app


def _split(path: str) -> tuple[str, str]:
    """`/binance/api/v3/time` → (`binance`, `/api/v3/time`)."""
    _, _, rest = path.partition("/")
    name, slash, tail = rest.partition("/")
    return name, slash + tail


def _fault_middleware(sim: Simulator, registry: VenueRegistry) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        name, path = _split(request.path)
        venue = registry.get(name)
        if venue is None:
            return await handler(request)
        sim.stats.requests[name] += 1
        sim.stats.endpoints[f"{name} {request.method} {path}"] += 1
        fault = sim.faults.take(name, path, TRANSPORT_FAULTS, method=request.method)
        if fault is None:
            return await handler(request)
        return await _apply(sim, venue, fault, request, handler)

    return middleware


async def _apply(
    sim: Simulator, venue: Venue, fault: FaultSpec, request: web.Request, handler: Handler,
) -> web.StreamResponse:
    kind = fault.kind
    if kind is FaultKind.RATE_LIMIT:
        return venue.rate_limited_response(fault.retry_after_s)
    if kind is FaultKind.SERVER_ERROR:
        return faults.server_error(fault.status)
    if kind is FaultKind.HTML_503:
        return faults.html_503()
    if kind is FaultKind.MAINTENANCE:
        return venue.maintenance_response()
    if kind is FaultKind.MALFORMED_JSON:
        return faults.malformed_json()
    if kind is FaultKind.CONNECTION_RESET:
        faults.reset_connection(request)
        return web.Response(status=500)
    if kind in (FaultKind.LATENCY, FaultKind.HANG):
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(fault.delay_s, sim.config.hang_max_s)):
                await sim.closing.wait()
        return await handler(request)
    if kind is FaultKind.TRUNCATED_JSON:
        return faults.truncate(await handler(request))
    raise AssertionError(f"unhandled fault kind {kind}")


# --- admin ----------------------------------------------------------------------


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _json_body(request: web.Request, allowed: frozenset[str] | None = None,
                     ) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad_request(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad_request("expected a JSON object")
    unknown = set(body) - allowed if allowed is not None else set()
    if unknown:
        raise _bad_request(f"unknown fields {sorted(unknown)}")
    return body


def _number(body: Mapping[str, Any], key: str, low: Decimal, high: Decimal, *,
            default: Decimal | None = None) -> Decimal:
    """A finite number from `low` to `high` (JSON number or numeric string)."""
    if key not in body and default is not None:
        return default
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _bad_request(f"{key}: expected a number")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _bad_request(f"{key}: expected a number, got {str(value)[:40]!r}") from None
    if not number.is_finite() or not low <= number <= high:
        raise _bad_request(f"{key}: must be a finite number from {low} to {high}")
    return number


def _integer(body: Mapping[str, Any], key: str, low: int, high: int, *,
             default: int | None = None) -> int:
    number = _number(body, key, Decimal(low), Decimal(high),
                     default=None if default is None else Decimal(default))
    if number != number.to_integral_value():
        raise _bad_request(f"{key}: must be a whole number")
    return int(number)


def _text(body: Mapping[str, Any], key: str, *, optional: bool = False,
          max_length: int = 256) -> str | None:
    value = body.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise _bad_request(f"{key}: expected a string of 1 to {max_length} characters")
    return value


MAX_FILL_SPLIT = 100
"""Parts an order may fill in (`/admin/fills`): beyond, a lot step is the part."""
MAX_AMOUNT = Decimal("1e15")
WALLETS = ("spot", "derivatives", "margin", "options")
FAULT_FIELDS = frozenset({"kind", "count", "venue", "path_prefix", "method", "status",
                          "delay_s", "retry_after_s"})
FAULT_METHODS = ("GET", "POST", "PUT", "DELETE")
ACCOUNT_FIELDS = frozenset({"api_key", "secret", "passphrase", "balances", "permissions",
                            "ip_whitelist", "uid", "leverage"})


def _fault_spec(body: Mapping[str, Any], venues: set[str]) -> FaultSpec:
    kind = body.get("kind")
    if not isinstance(kind, str) or kind not in {k.value for k in FaultKind}:
        raise _bad_request(f"kind: one of {sorted(k.value for k in FaultKind)}")
    venue = _text(body, "venue", optional=True)
    if venue is not None and venue not in venues:
        raise _bad_request(f"venue: one of {sorted(venues)}")
    prefix = _text(body, "path_prefix", optional=True)
    if prefix is not None and not prefix.startswith("/"):
        raise _bad_request("path_prefix: must start with /")
    method = _text(body, "method", optional=True)
    if method is not None and method not in FAULT_METHODS:
        raise _bad_request(f"method: one of {list(FAULT_METHODS)}")
    return FaultSpec(
        kind=FaultKind(kind), count=_integer(body, "count", 1, 1_000_000, default=1),
        venue=venue, path_prefix=prefix, method=method,
        status=_integer(body, "status", 400, 599, default=500),
        delay_s=float(_number(body, "delay_s", Decimal(0), Decimal(3600),
                              default=Decimal(30))),
        retry_after_s=_integer(body, "retry_after_s", 0, 3600, default=1))


def _amounts(raw: Any, what: str) -> dict[str, Decimal]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _bad_request(f"{what}: expected an object of asset amounts")
    return {_text({"asset": k}, "asset", max_length=20) or "":
            _number(raw, k, Decimal(0), MAX_AMOUNT) for k in raw}


def _account_spec(body: Mapping[str, Any]) -> AccountSpec:
    balances = body.get("balances", {})
    if not isinstance(balances, dict) or set(balances) - set(WALLETS):
        raise _bad_request(f"balances: an object with {', '.join(WALLETS)} amounts")
    perms = body.get("permissions", [p.value for p in DEFAULT_PERMISSIONS])
    if not isinstance(perms, list) or not set(perms) <= {p.value for p in Permission}:
        raise _bad_request(f"permissions: a list of {sorted(p.value for p in Permission)}")
    whitelist = body.get("ip_whitelist", [])
    try:
        if not isinstance(whitelist, list):
            raise ValueError
        ips = tuple(str(ipaddress.ip_network(str(ip), strict=False)) for ip in whitelist)
    except ValueError:
        raise _bad_request("ip_whitelist: a list of IP addresses or networks") from None
    api_key, secret = _text(body, "api_key"), _text(body, "secret")
    assert api_key is not None and secret is not None
    return AccountSpec(
        api_key=api_key, secret=secret, passphrase=_text(body, "passphrase", optional=True),
        spot=_amounts(balances.get("spot"), "balances.spot"),
        derivatives=_amounts(balances.get("derivatives"), "balances.derivatives"),
        margin=_amounts(balances.get("margin"), "balances.margin"),
        options=_amounts(balances.get("options"), "balances.options"),
        permissions=frozenset(Permission(p) for p in perms), ip_whitelist=ips,
        uid=None if body.get("uid") is None else _integer(body, "uid", 1, 2**53),
        leverage=_integer(body, "leverage", 1, 125, default=10))


def _add_admin_routes(app: web.Application, sim: Simulator, venues: set[str]) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "markets": len(sim.market.catalog.instruments)})

    async def provision(request: web.Request) -> web.Response:
        spec = _account_spec(await _json_body(request, ACCOUNT_FIELDS))
        account = sim.provision(spec)
        return web.json_response({"api_key": spec.api_key, "uid": account.uid}, status=201)

    async def remove(request: web.Request) -> web.Response:
        if not sim.remove_account(request.match_info["api_key"]):
            raise web.HTTPNotFound()
        return web.json_response({})

    async def account(request: web.Request) -> web.Response:
        acct = sim.accounts.get(request.match_info["api_key"])
        if acct is None:
            raise web.HTTPNotFound()
        sim.touch(acct)
        return web.json_response({
            "uid": acct.uid,
            "spot": {
                a: {"free": str(h.free), "locked": str(h.locked)} for a, h in acct.spot.items()
            },
            "derivatives": {
                b.asset: {"wallet": str(b.wallet), "available": str(b.available)}
                for b in derivatives_balances(acct, sim.market)
            },
            "open_orders": len(acct.open_orders()),
            "orders": len(acct.orders),
            "option_orders": len(option_trading.book_of(acct).orders),
            "positions": [{
                "symbol": v.position.symbol, "side": v.position.side.value,
                "margin_mode": v.position.margin_mode.value, "qty": str(v.position.qty),
                "entry_price": str(v.position.entry_price), "mark_price": str(v.mark),
                "leverage": str(v.position.leverage),
                "liquidation_price": str(v.liquidation_price or ""),
            } for v in derivatives.views(acct, sim.market)],
        })

    async def account_orders(request: web.Request) -> web.Response:
        """Every order the account placed, oldest first, as a test's failure message names
        them (e.g. an order the venue has and a daemon's store lacks)."""
        acct = sim.accounts.get(request.match_info["api_key"])
        if acct is None:
            raise web.HTTPNotFound()
        sim.touch(acct)
        return web.json_response([{
            "id": str(o.id), "client_id": o.client_id, "symbol": o.symbol,
            "side": o.side.value, "price": None if o.price is None else str(o.price),
            "qty": str(o.qty), "filled": str(o.filled), "status": o.status.value,
            "created_ms": o.created_ms, "updated_ms": o.updated_ms, "fill_ms": o.fill_ms,
        } for o in sorted(acct.orders.values(), key=lambda o: o.id)])

    async def add_fault(request: web.Request) -> web.Response:
        spec = _fault_spec(await _json_body(request, FAULT_FIELDS), venues)
        sim.add_fault(spec)
        return web.json_response(spec.to_json(), status=201)

    async def list_faults(_request: web.Request) -> web.Response:
        return web.json_response([f.to_json() for f in sim.faults.pending()])

    async def clear_faults(_request: web.Request) -> web.Response:
        sim.clear_faults()
        return web.json_response({})

    async def reset(_request: web.Request) -> web.Response:
        sim.reset()
        return web.json_response({})

    async def get_price(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")
        if sim.market.catalog.get(symbol) is None:
            raise web.HTTPNotFound()
        return web.json_response({"symbol": symbol, "price": str(sim.market.price(symbol))})

    async def set_price(request: web.Request) -> web.Response:
        body = await _json_body(request, frozenset({"symbol", "price"}))
        symbol = _text(body, "symbol", max_length=40) or ""
        price = _number(body, "price", Decimal("1e-12"), Decimal("1e12"))
        if sim.market.catalog.get(symbol) is None:
            raise _bad_request(f"symbol: {symbol!r} is not listed")
        sim.set_price(symbol, price)
        return web.json_response({"symbol": symbol, "price": str(sim.market.price(symbol))})

    async def advance(request: web.Request) -> web.Response:
        body = await _json_body(request, frozenset({"seconds"}))
        sim.advance(float(_number(body, "seconds", Decimal(0), Decimal(366 * 86_400))))
        return web.json_response({})

    async def funding_rate(request: web.Request) -> web.Response:
        """Fix the rate a symbol's pair pays at its next funding time (or at `index`)."""
        body = await _json_body(request, frozenset({"symbol", "rate", "index"}))
        symbol = _text(body, "symbol")
        assert symbol is not None
        rate = _number(body, "rate", Decimal(-1), Decimal(1))
        index = None if body.get("index") is None else _integer(body, "index", 0, 2**53)
        if sim.market.catalog.get(symbol) is None:
            raise _bad_request(f"symbol: unknown symbol {symbol}")
        k = sim.set_funding_rate(symbol, rate, index)
        return web.json_response({"symbol": symbol, "rate": str(rate), "index": k,
                                  "funding_time": sim.funding.stamp(k)})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(sim.snapshot())

    async def fills(request: web.Request) -> web.Response:
        """How many trades orders placed from now on fill in (1: one each)."""
        body = await _json_body(request, frozenset({"split"}))
        sim.fill_split = _integer(body, "split", 1, MAX_FILL_SPLIT)
        return web.json_response({"split": sim.fill_split})

    app.router.add_get("/admin/health", health)
    app.router.add_post("/admin/accounts", provision)
    app.router.add_get("/admin/accounts/{api_key}", account)
    app.router.add_get("/admin/accounts/{api_key}/orders", account_orders)
    app.router.add_delete("/admin/accounts/{api_key}", remove)
    app.router.add_post("/admin/faults", add_fault)
    app.router.add_get("/admin/faults", list_faults)
    app.router.add_delete("/admin/faults", clear_faults)
    app.router.add_post("/admin/reset", reset)
    app.router.add_get("/admin/price", get_price)
    app.router.add_post("/admin/price", set_price)
    app.router.add_post("/admin/advance", advance)
    app.router.add_post("/admin/funding-rate", funding_rate)
    app.router.add_get("/admin/stats", stats)
    app.router.add_post("/admin/fills", fills)
