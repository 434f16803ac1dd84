"""HTTP plumbing every venue shares: parameters, JSON answers, number formatting.

Venues differ in what they sign and how they spell errors, not in how a form
body is parsed or a Decimal printed; that part lives here so venue modules stay
about their exchange.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from ctsd.sim.accounts import Order, OrderStatus

_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class VenueError(Exception):
    """An answer a venue wants to give from deep inside a handler (an error body)."""

    def __init__(
        self, status: int, body: Any, headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return json_response(self.body, self.status, self.headers)


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.Response(
        body=_DUMPS(payload).encode(), status=status, headers=headers,
        content_type="application/json",
    )


def raw_json_response(
    body: str, status: int = 200, headers: Mapping[str, str] | None = None,
) -> web.Response:
    """For pre-serialised answers (large, cached market lists)."""
    return web.Response(body=body.encode(), status=status, headers=headers,
                        content_type="application/json")


def dumps(payload: Any) -> str:
    return _DUMPS(payload)


@dataclass(frozen=True, slots=True)
class RequestData:
    """A request's parameters and the raw strings signatures are computed over."""

    method: str
    path: str
    raw_query: str
    raw_body: str
    params: dict[str, str] = field(default_factory=dict)
    """Query and form body merged (body wins); JSON bodies are left in `raw_body`."""

    def json_body(self) -> Any:
        return json.loads(self.raw_body) if self.raw_body else None


async def read_request(request: web.Request, venue_prefix: str = "") -> RequestData:
    raw_query = request.rel_url.raw_query_string
    raw_body = await request.text() if request.body_exists else ""
    params = dict(parse_qsl(raw_query, keep_blank_values=True))
    if raw_body and request.content_type == "application/x-www-form-urlencoded":
        params.update(parse_qsl(raw_body, keep_blank_values=True))
    path = request.path
    if venue_prefix and path.startswith(venue_prefix):
        path = path[len(venue_prefix):]
    return RequestData(request.method, path, raw_query, raw_body, params)


def fixed(value: Decimal, places: int = 8) -> str:
    """`Decimal('0.01')` → `'0.01000000'`: Binance-style fixed decimals."""
    return f"{value:.{places}f}"


def plain(value: Decimal) -> str:
    """Shortest exact decimal without exponent: `Decimal('1.500')` → `'1.5'`."""
    text = f"{value.normalize():f}"
    return text if text != "-0" else "0"


def order_status(order: Order, names: Mapping[OrderStatus, str], partial: str) -> str:
    """The venue's name of an order's status: an open order with fills is `partial`
    (Binance PARTIALLY_FILLED, OKX and Kraken partially_filled)."""
    if order.status is OrderStatus.NEW and order.filled:
        return partial
    return names[order.status]
