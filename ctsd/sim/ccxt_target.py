"""Point an unmodified ccxt exchange instance at the simulator.

Every URL under `exchange.urls['api']` (nested for some venues) goes from
`https://HOST/PATH` to `<base>/<venue>/PATH`, so each venue app routes by
the exchange's own paths; sandbox and demo URLs are dropped so they cannot
switch back to the real hosts. The rewriting itself, and keeping the error
map of classes that pick it by host name (Binance's `get_exceptions_by_url`)
as in production, is the exchange layer's `ccxt_internals.rebase_urls`: the
one place that touches ccxt's internals. This module adds the simulator's
layout (a venue per path prefix, `Venue.url_overrides` for colliding hosts).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ctsd.exchanges.ccxt_internals import rebase_urls
from ctsd.sim.venue import Venue
from ctsd.sim.venues import default_registry


def _rewrite(url: str, base: str, venue: Venue) -> str:
    for original, path in venue.url_overrides.items():
        if url.startswith(original):
            return f"{base}/{venue.name}{path}{url[len(original):]}"
    parts = urlsplit(url)
    return f"{base}/{venue.name}{parts.path}"


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
    return rebase_urls(exchange, lambda url: _rewrite(url, base, found))
