"""The simulator's aiohttp application: venues under `/<name>`, admin under `/admin`.

Each venue's sub-application serves its REST paths; its WebSocket paths
(`ctsd.sim.ws`) are mounted by the `StreamHub` on the root app, under the same
`/<name>` prefix, ahead of the venues' catch-all; `/admin/ws` lists connections.

One middleware, on the root app, counts requests per venue and applies injected
transport faults before any venue code runs, so a venue module only ever deals
with well-formed traffic (and the two credential faults, via `ctsd.sim.auth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ctsd.sim import derivatives, faults
from ctsd.sim.accounts import AccountSpec
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
    _add_admin_routes(app, sim)
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
        fault = sim.faults.take(name, path, TRANSPORT_FAULTS)
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
            await asyncio.wait_for(sim.closing.wait(), min(fault.delay_s, sim.config.hang_max_s))
        return await handler(request)
    if kind is FaultKind.TRUNCATED_JSON:
        return faults.truncate(await handler(request))
    raise AssertionError(f"unhandled fault kind {kind}")


# --- admin ----------------------------------------------------------------------


def _bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"error": message}), content_type="application/json")


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except json.JSONDecodeError as exc:
        raise _bad_request(f"invalid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _bad_request("expected a JSON object")
    return body


def _add_admin_routes(app: web.Application, sim: Simulator) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "markets": len(sim.market.catalog.instruments)})

    async def provision(request: web.Request) -> web.Response:
        try:
            spec = AccountSpec.from_json(await _json_body(request))
        except (KeyError, ValueError, InvalidOperation) as exc:
            raise _bad_request(f"invalid account: {exc!r}") from exc
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
            "positions": [{
                "symbol": v.position.symbol, "side": v.position.side.value,
                "margin_mode": v.position.margin_mode.value, "qty": str(v.position.qty),
                "entry_price": str(v.position.entry_price), "mark_price": str(v.mark),
                "leverage": str(v.position.leverage),
                "liquidation_price": str(v.liquidation_price or ""),
            } for v in derivatives.views(acct, sim.market)],
        })

    async def add_fault(request: web.Request) -> web.Response:
        try:
            spec = FaultSpec.from_json(await _json_body(request))
            sim.add_fault(spec)
        except (KeyError, ValueError) as exc:
            raise _bad_request(f"invalid fault: {exc!r}") from exc
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
        body = await _json_body(request)
        try:
            symbol, price = str(body["symbol"]), Decimal(str(body["price"]))
        except (KeyError, InvalidOperation) as exc:
            raise _bad_request(f"need symbol and price: {exc!r}") from exc
        if sim.market.catalog.get(symbol) is None or price <= 0:
            raise _bad_request(f"unknown symbol or bad price: {symbol} {price}")
        sim.set_price(symbol, price)
        return web.json_response({"symbol": symbol, "price": str(sim.market.price(symbol))})

    async def advance(request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            seconds = float(body["seconds"])
        except (KeyError, ValueError) as exc:
            raise _bad_request(f"need seconds: {exc!r}") from exc
        sim.advance(seconds)
        return web.json_response({})

    async def funding_rate(request: web.Request) -> web.Response:
        """Fix the rate a symbol's pair pays at its next funding time (or at `index`)."""
        body = await _json_body(request)
        try:
            symbol, rate = str(body["symbol"]), Decimal(str(body["rate"]))
            index = None if body.get("index") is None else int(body["index"])
        except (KeyError, InvalidOperation, ValueError) as exc:
            raise _bad_request(f"need symbol and rate: {exc!r}") from exc
        if sim.market.catalog.get(symbol) is None or not rate.is_finite():
            raise _bad_request(f"unknown symbol or bad rate: {symbol} {rate}")
        k = sim.set_funding_rate(symbol, rate, index)
        return web.json_response({"symbol": symbol, "rate": str(rate), "index": k,
                                  "funding_time": sim.funding.stamp(k)})

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(sim.snapshot())

    app.router.add_get("/admin/health", health)
    app.router.add_post("/admin/accounts", provision)
    app.router.add_get("/admin/accounts/{api_key}", account)
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
