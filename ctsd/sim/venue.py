"""What a venue module provides, and the explicit registry of venues.

A venue is one module (`ctsd/sim/<name>.py`) exporting `VENUE: Venue`. The app
mounts `VENUE.build(sim)` under `/<name>`; the fault middleware calls the two
response hooks so injected maintenance and rate-limit faults look like that
exchange; `point_at_simulator` uses `ccxt_ids` and `url_overrides` to rewrite a
ccxt instance's URLs. Registration is a line in `ctsd.sim.venues`, never module
scanning.

Writing a venue (see `ctsd.sim.binance` for the shape):

1. `build(sim)` creates the venue's state object (its limiters from
   `ctsd.sim.ratelimit`, keyed as the exchange keys them), registers
   `sim.on_reset(state.reset)`, and mounts its endpoint table with
   `ctsd.sim.endpoints.mount` (an `Endpoint` is a `Route` plus what the venue
   checks; a handler is a `Handler[Call]`, `Call` an `AccountCall`/`RequestCall`).
2. Each request: `wire.read_request` → charge the limiter (on refusal call
   `sim.stats.violation(name, kind)` and answer the exchange's limit error) →
   for private endpoints `auth.lookup(sim, name, request, key)` (unknown key, IP
   whitelist, injected credential faults), the venue's own timestamp/nonce and
   signature check with `auth.hmac_hex`/`hmac_b64`/`signatures_match`,
   `auth.require(account, Permission.X)`, `sim.touch(account)` → handler.
3. Handlers read `sim.market` (catalog, `price`, `candles`, `ticker`) and trade
   with `sim.place_order(account, OrderRequest(...), fees)` and
   `sim.cancel_order`; `Rejection.kind` and `AuthError.failure` map to the
   exchange's own codes in a table (raise `wire.VenueError` with the body).
4. Wire shapes (field names, number formats) go in `<name>_wire.py` when the
   module would pass ~500 lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ctsd.sim.state import Simulator


@dataclass(frozen=True)
class Venue:
    name: str
    """Path prefix (`/binance`) and the key of counters and fault filters."""
    build: Callable[[Simulator], web.Application]
    """Build the venue's sub-application; called once per server."""
    maintenance_response: Callable[[], web.Response]
    """What the exchange answers while in maintenance."""
    rate_limited_response: Callable[[int], web.Response]
    """An HTTP 429 in the exchange's own body, given Retry-After seconds."""
    ccxt_ids: tuple[str, ...] = ()
    """ccxt exchange ids this venue serves (`binance`, `binanceusdm`, …)."""
    url_overrides: Mapping[str, str] = field(default_factory=dict)
    """Original ccxt URL prefix → path under `/<name>`, for hosts whose paths collide.

    By default `https://HOST/PATH` becomes `<base>/<name>/PATH`.
    """


class VenueRegistry:
    """Venues by name, in registration order."""

    def __init__(self, venues: tuple[Venue, ...] = ()) -> None:
        self._venues: dict[str, Venue] = {}
        for venue in venues:
            self.register(venue)

    def register(self, venue: Venue) -> None:
        if venue.name in self._venues:
            raise ValueError(f"venue {venue.name!r} registered twice")
        self._venues[venue.name] = venue

    def get(self, name: str) -> Venue | None:
        return self._venues.get(name)

    def for_ccxt_id(self, ccxt_id: str) -> Venue | None:
        for venue in self._venues.values():
            if ccxt_id == venue.name or ccxt_id in venue.ccxt_ids:
                return venue
        return None

    def __iter__(self) -> Iterator[Venue]:
        return iter(self._venues.values())

    def names(self) -> list[str]:
        return list(self._venues)


def unimplemented_venue(name: str, ccxt_ids: tuple[str, ...] = ()) -> Venue:
    """A placeholder that answers 501 everywhere, until the venue's module is written."""

    def build(_sim: Simulator) -> web.Application:
        app = web.Application()

        async def not_implemented(_request: web.Request) -> web.Response:
            return web.json_response({"error": f"{name} is not simulated yet"}, status=501)

        app.router.add_route("*", "/{tail:.*}", not_implemented)
        return app

    def maintenance() -> web.Response:
        return web.Response(status=503, text="maintenance")

    def rate_limited(retry_after: int) -> web.Response:
        return web.Response(
            status=429, text="rate limited", headers={"Retry-After": str(retry_after)})

    return Venue(name, build, maintenance, rate_limited, ccxt_ids)
