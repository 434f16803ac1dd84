"""Point an unmodified ccxt exchange instance at the simulator.

The only module of `ctsd.sim` that imports ccxt. It rewrites every string under
`exchange.urls['api']` (nested for some venues) from `https://HOST/PATH` to
`<base>/<venue>/PATH` — and `wss://HOST/PATH` to `ws://…/<venue>/PATH`, which
`ccxt.pro` classes read for their WebSockets (hosts whose paths collide get a
prefix from the venue's `url_overrides`, see `ctsd.sim.ws`) — so each venue
app routes by the exchange's own paths, and
deletes `urls['test']` (and the demo-mode `demo`/`demotrading` entries) so that
sandbox or demo mode cannot silently switch back to the real hosts.

Some ccxt classes pick their error map by host name — Binance's
`get_exceptions_by_url` returns the spot/linear/inverse map only for
`https://api.binance.com/…`, `https://fapi.binance.com/…` and so on, so on
loopback a `-2019` would become a bare ExchangeError instead of InsufficientFunds.
We wrap that method so it sees the original production URL of every simulated
URL: exceptions are then exactly those raised in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ctsd.sim.venue import Venue
from ctsd.sim.venues import default_registry

UrlMap = list[tuple[str, str]]
"""(simulated URL prefix, original URL prefix), longest simulated prefix first."""


def _rewrite(url: str, base: str, venue: Venue) -> str:
    if url.startswith(("wss://", "ws://")):
        base = "ws" + base[len("http"):]  # http://h:p → ws://h:p (https → wss)
    for original, path in venue.url_overrides.items():
        if url.startswith(original):
            return f"{base}/{venue.name}{path}{url[len(original):]}"
    parts = urlsplit(url)
    return f"{base}/{venue.name}{parts.path}"


def _walk(node: Any, rewrite: Callable[[str], str], pairs: UrlMap) -> Any:
    if isinstance(node, str):
        new = rewrite(node)
        pairs.append((new, node))
        return new
    if isinstance(node, dict):
        return {key: _walk(value, rewrite, pairs) for key, value in node.items()}
    if isinstance(node, list):
        return [_walk(value, rewrite, pairs) for value in node]
    return node


def point_at_simulator(exchange: Any, base_url: str, venue: str | None = None) -> Any:
    """Rewrite `exchange` (a ccxt or ccxt.async_support instance) in place; returns it.

    `venue` defaults to the venue registered for `exchange.id` (e.g. `binanceusdm`
    → `binance`).
    """
    registry = default_registry()
    found = registry.get(venue) if venue else registry.for_ccxt_id(str(exchange.id))
    if found is None:
        raise ValueError(f"no simulated venue for ccxt exchange {exchange.id!r}")
    base = base_url.rstrip("/")
    pairs: UrlMap = []

    def rewrite(url: str) -> str:
        return _rewrite(exchange.implode_hostname(url), base, found)

    exchange.urls["api"] = _walk(exchange.urls["api"], rewrite, pairs)
    for key in ("test", "demo", "demotrading"):  # every mode that swaps urls["api"] back
        exchange.urls.pop(key, None)
    pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
    _restore_host_based_exceptions(exchange, pairs)
    return exchange


def _restore_host_based_exceptions(exchange: Any, pairs: UrlMap) -> None:
    """Make `get_exceptions_by_url` see the production URL behind a simulated one."""
    original = getattr(exchange, "get_exceptions_by_url", None)
    if original is None:
        return

    def get_exceptions_by_url(url: str | None, exact_or_broad: str) -> Any:
        if url is not None:
            for simulated, production in pairs:
                if url.startswith(simulated):
                    url = production + url[len(simulated):]
                    break
        return original(url, exact_or_broad)

    exchange.get_exceptions_by_url = get_exceptions_by_url
