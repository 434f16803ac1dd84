"""Paths a venue has but the simulator does not serve: answered as the venue answers an
unknown path, and logged once each, so a gap shows instead of hiding in retries.

What each venue answers for a path it does not know (how ccxt 4.5.90 then raises):

- Binance (`api`, `fapi`, `sapi`): HTTP 404 with its HTML error page (seen in ccxt
  issue #18797 for `fapi.binance.com`); ccxt: ExchangeNotAvailable from the status.
- Bybit: HTTP 404 ("Cannot find path: wrong path" in Bybit's v5 error table) with
  its envelope, retCode 10017 "Route not found"; ccxt: BadRequest (10017 is in its
  exact map: "request path not found or request method is invalid").
- OKX: HTTP 404 with the site's HTML page (`www.okx.com` serves the web site beside
  `/api/v5`); ccxt: ExchangeNotAvailable from the status.
- Kraken: HTTP 200 `{"error": ["EGeneral:Unknown method"]}` under `/0/`; ccxt:
  ExchangeError.

Each venue mounts `fallback(...)` last; `Simulator.snapshot()` lists what was asked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ctsd.sim.state import Simulator

log = logging.getLogger("ctsd.sim")

Answer = Callable[[web.Request], web.Response]


def fallback(
    sim: Simulator, venue: str, answer: Answer,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A catch-all handler: note the path (logging it the first time), answer as `venue`."""

    async def handle(request: web.Request) -> web.Response:
        path = request.path.removeprefix(f"/{venue}")
        if sim.note_unserved(venue, request.method, path):
            log.warning("simulated %s does not serve %s %s; answered as %s answers an "
                        "unknown path", venue, request.method, path, venue)
        return answer(request)

    return handle


BINANCE_404_PAGE = (
    "<!DOCTYPE html>\n<!-- saved from url=(0032)https://www.binance.com/en/error -->\n"
    "<html>\n<head>\n  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\">\n"
    "  <title>Binance</title>\n</head>\n<body>\n  <div class=\"info\">\n"
    "    <h3>Sorry! The page you're looking for cannot be found.</h3>\n  </div>\n"
    "</body>\n</html>\n"
)
OKX_404_PAGE = (
    "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>404 | OKX</title></head>"
    "<body><h1>404</h1><p>Sorry, the page you visited does not exist.</p></body></html>"
)


def html_404(page: str) -> Answer:
    def answer(_request: web.Request) -> web.Response:
        return web.Response(status=404, text=page, content_type="text/html")

    return answer
