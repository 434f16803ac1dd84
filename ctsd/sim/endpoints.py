"""The generic half of a venue's endpoint table: route, handler, call, mounting.

Every venue module describes its API as a list of endpoints and runs each request
through its own pipeline (limits, signature, permission) before the handler. What
an endpoint needs beyond its method and path (a weight, a permission, a limit) is
the venue's and stays in the venue's `Endpoint`, a subclass of `Route`; what a
handler receives is the venue's `Call`, a subclass of `AccountCall`. Mounting the
table on an aiohttp app is the same everywhere, so it is `mount` here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

if TYPE_CHECKING:
    from ctsd.sim.accounts import Account
    from ctsd.sim.wire import RequestData, VenueError


class AccountCall:
    """Base of every venue's `Call`: the account a signed request was made with."""

    __slots__ = ()
    account: Account | None
    """None for public endpoints; the venue's pipeline sets it for signed ones."""

    def owner(self) -> Account:
        """The account, for handlers that only serve signed endpoints."""
        assert self.account is not None, "handler of a signed endpoint"
        return self.account


class RequestCall(AccountCall):
    """A `Call` over form/query parameters; the venue says how a missing one is refused."""

    __slots__ = ()
    data: RequestData

    @property
    def params(self) -> dict[str, str]:
        return self.data.params

    def require(self, name: str) -> str:
        """The parameter's value; absent or empty is the venue's `missing` error."""
        value = self.params.get(name)
        if not value:
            raise self.missing(name)
        return value

    def missing(self, name: str) -> VenueError:
        """The venue's error for a required parameter that is absent or empty."""
        raise NotImplementedError


CallT = TypeVar("CallT", bound=AccountCall)
Handler = Callable[[CallT], Awaitable[Any]]
"""A venue handler: `Handler[Call]` takes the venue's `Call` and returns a JSON-able
result (wrapped in the venue's envelope) or a ready `web.Response`."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where an endpoint is served; venues subclass it with what they check."""

    method: str
    path: str
    """Under the venue's mount point (`/api/v3/order`, not `/binance/api/v3/order`)."""


RouteT = TypeVar("RouteT", bound=Route)


def mount(
    endpoints: Iterable[RouteT],
    dispatch: Callable[[web.Request, RouteT], Awaitable[web.Response]],
    fallback: Callable[[web.Request], Awaitable[web.Response]] | None = None,
) -> web.Application:
    """A sub-application with one route per endpoint, each handled by `dispatch`, and
    `fallback` (`ctsd.sim.unserved`) for every other path and method.

    A (method, path) listed twice is refused: aiohttp would silently serve the first
    and shadow the other, which is how two modules end up each believing they serve
    a path (the venues' tables are assembled from several per-concern modules)."""
    app = web.Application()
    seen: set[tuple[str, str]] = set()
    for endpoint in endpoints:
        key = (endpoint.method, endpoint.path)
        if key in seen:
            raise ValueError(f"route listed twice: {endpoint.method} {endpoint.path}")
        seen.add(key)
        async def handle(request: web.Request, endpoint: RouteT = endpoint) -> web.Response:
            return await dispatch(request, endpoint)

        app.router.add_route(endpoint.method, endpoint.path, handle)
    if fallback is not None:
        app.router.add_route("*", "/{tail:.*}", fallback)
    return app
