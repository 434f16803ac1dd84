"""Paths a venue has but the simulator does not serve: the venue's own unknown-path
answer, what unmodified ccxt makes of it, and one log line per path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import ccxt.async_support as ccxt
import pytest
from aiohttp import web

from ctsd.sim import binance_wire, bybit_wire, kraken_wire, okx_wire
from ctsd.sim.accounts import Rejection, RejectKind
from ctsd.sim.endpoints import Route, mount
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator
from ctsd.sim.venue import Venue
from ctsd.sim.venues import default_registry
from tests.sim.conftest import API_KEY, PASSPHRASE, SECRET, ExchangeFactory, trader_spec

KRAKEN_SECRET = "c2ltLXNlY3JldC0wMDAx"

CASES: list[tuple[type[Any], str, Callable[[Any], Awaitable[Any]], type[Exception], str]] = [
    (ccxt.binance, "binance", lambda ex: ex.public_get_avgprice({"symbol": "BTCUSDT"}),
     ccxt.ExchangeNotAvailable, "GET /api/v3/avgPrice"),
    (ccxt.binanceusdm, "binance", lambda ex: ex.fapipublic_get_insurancebalance(),
     ccxt.ExchangeNotAvailable, "GET /fapi/v1/insuranceBalance"),
    (ccxt.bybit, "bybit", lambda ex: ex.public_get_v5_market_insurance(),
     ccxt.BadRequest, "GET /v5/market/insurance"),
    (ccxt.okx, "okx", lambda ex: ex.public_get_public_insurance_fund({"instType": "SWAP"}),
     ccxt.ExchangeNotAvailable, "GET /api/v5/public/insurance-fund"),
    (ccxt.kraken, "kraken", lambda ex: ex.private_post_queryledgers({"id": "L1"}),
     ccxt.ExchangeError, "POST /0/private/QueryLedgers"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("cls,venue,call,error,key", CASES, ids=[c[4] for c in CASES])
async def test_an_unserved_path_answers_as_the_venue_and_is_logged_once(
    server: SimulatorServer, make_exchange: ExchangeFactory, caplog: pytest.LogCaptureFixture,
    cls: type[Any], venue: str, call: Callable[[Any], Awaitable[Any]], error: type[Exception],
    key: str,
) -> None:
    if venue == "kraken":
        server.sim.provision(trader_spec(api_key="kraken-key", secret=KRAKEN_SECRET))
    keys = ({"apiKey": "kraken-key", "secret": KRAKEN_SECRET} if venue == "kraken" else
            {"apiKey": API_KEY, "secret": SECRET, "password": PASSPHRASE})
    ex = make_exchange(cls, server.base_url, **keys)
    with caplog.at_level(logging.WARNING, logger="ctsd.sim"):
        for _ in range(2):
            with pytest.raises(error) as raised:
                await call(ex)
            assert type(raised.value) is error
    assert server.sim.snapshot()["unserved"] == {f"{venue} {key}": 2}
    lines = [r.getMessage() for r in caplog.records if r.name == "ctsd.sim"]
    assert len(lines) == 1 and key.split()[1] in lines[0]


def test_a_route_listed_twice_is_refused() -> None:
    """Two per-concern modules claiming one path would leave one silently shadowed."""
    routes = [Route("GET", "/v5/execution/list"), Route("GET", "/v5/execution/list")]

    async def dispatch(_request: web.Request, _route: Route) -> web.Response:
        return web.Response()

    with pytest.raises(ValueError, match="listed twice: GET /v5/execution/list"):
        mount(routes, dispatch)
    mount(routes[:1], dispatch)


@pytest.mark.parametrize("venue", list(default_registry()), ids=lambda v: v.name)
def test_every_venue_lists_each_route_once(venue: Venue) -> None:
    venue.build(Simulator())  # mount refuses a duplicate


@pytest.mark.parametrize("kind", list(RejectKind))
def test_every_rejection_has_each_venues_answer(kind: RejectKind) -> None:
    """A core refusal the venue's table forgot would surface as an HTTP 500."""
    rejected = Rejection(kind, "trigger 1, last 2")
    inst = Simulator().market.instrument("BTC/USDT")
    for futures in (False, True):
        assert binance_wire.rejection(rejected, futures=futures).status == 400
    for category in (bybit_wire.SPOT, bybit_wire.LINEAR):
        assert bybit_wire.rejection(kind, category, rejected.detail, 0).status == 200
    assert okx_wire.order_failure(kind, inst, True).code
    assert kraken_wire.rejection(rejected).body["error"]
