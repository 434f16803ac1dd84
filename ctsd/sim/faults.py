"""Faults on command: the next N requests misbehave the way real exchanges do.

A `FaultSpec` says what to inject, how many times, and optionally only for one
venue or one path prefix (matched against the path below the venue prefix, e.g.
`/api/v3/order`, or a WebSocket path such as `/stream/ws`). Transport-level faults
are applied by the app's middleware (`ctsd.sim.app`) before any venue code runs,
so every venue gets them for free;
the two credential faults (`INVALID_KEY`, `IP_NOT_WHITELISTED`) are consumed by
`ctsd.sim.auth` so that each venue answers them with its own error body; the
`WS_*` faults are applied to open WebSocket connections by `ctsd.sim.ws.hub`.
"""

from __future__ import annotations

import itertools
import socket
import struct
from collections.abc import Container, Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from aiohttp import web


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    """HTTP 429 with Retry-After and the venue's own rate-limit body."""
    SERVER_ERROR = "server_error"
    """HTTP `status` (5xx) with a plain-text body."""
    HTML_503 = "html_503"
    """HTTP 503 with an HTML page, as a CDN or load balancer answers."""
    MAINTENANCE = "maintenance"
    """The venue's own maintenance answer."""
    LATENCY = "latency"
    """Wait `delay_s`, then answer normally."""
    HANG = "hang"
    """Wait `delay_s` (past the client's timeout), then answer; cut short on shutdown."""
    MALFORMED_JSON = "malformed_json"
    """HTTP 200, JSON content type, a body that is not JSON."""
    TRUNCATED_JSON = "truncated_json"
    """The real answer, cut in half."""
    CONNECTION_RESET = "connection_reset"
    """TCP RST instead of an answer."""
    INVALID_KEY = "invalid_key"
    """Authenticated requests are answered as for an unknown API key."""
    IP_NOT_WHITELISTED = "ip_not_whitelisted"
    """Authenticated requests are answered as from an address outside the whitelist."""
    WS_DROP = "ws_drop"
    """`count` open WebSocket connections are cut (TCP reset, no close frame)."""
    WS_STALL = "ws_stall"
    """`count` connections stop getting data for `delay_s` (heartbeats and replies go on);
    what they would have got is lost, as when a venue's feed silently stalls."""
    WS_DELAY = "ws_delay"
    """The next `count` data messages of a connection arrive `delay_s` late, in order."""
    WS_GAP = "ws_gap"
    """The next order-book update of `count` connections is lost: a sequence gap."""
    WS_DISCONNECT_EVERY = "ws_disconnect_every"
    """Every matching connection is closed `delay_s` after it opened, until faults are
    cleared (the venues' forced 24 h disconnect, on a short clock)."""


AUTH_FAULTS = frozenset({FaultKind.INVALID_KEY, FaultKind.IP_NOT_WHITELISTED})
WS_FAULTS = frozenset({
    FaultKind.WS_DROP, FaultKind.WS_STALL, FaultKind.WS_DELAY, FaultKind.WS_GAP,
    FaultKind.WS_DISCONNECT_EVERY,
})
"""Applied by `ctsd.sim.ws.hub` to open connections whose path matches, on its next tick."""
TRANSPORT_FAULTS = frozenset(FaultKind) - AUTH_FAULTS - WS_FAULTS


@dataclass(frozen=True, slots=True)
class FaultSpec:
    kind: FaultKind
    count: int = 1
    venue: str | None = None
    path_prefix: str | None = None
    method: str | None = None
    """An HTTP request's method ("POST": a venue's order entry, not its order reads
    under the same path); None matches any request, WebSocket connections included."""
    status: int = 500
    delay_s: float = 30.0
    retry_after_s: int = 1
    serial: int = field(default=0, compare=False)
    """Set by `FaultInjector.add`: which injection a use belongs to, so a WebSocket fault
    of `count` N hits N different connections (a connection remembers what hit it)."""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FaultSpec:
        return cls(
            kind=FaultKind(raw["kind"]),
            count=int(raw.get("count", 1)),
            venue=raw.get("venue"),
            path_prefix=raw.get("path_prefix"),
            method=raw.get("method"),
            status=int(raw.get("status", 500)),
            delay_s=float(raw.get("delay_s", 30.0)),
            retry_after_s=int(raw.get("retry_after_s", 1)),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def matches(self, venue: str, path: str, method: str = "") -> bool:
        return (self.venue is None or self.venue == venue) and (
            self.path_prefix is None or path.startswith(self.path_prefix)
        ) and self.method in (None, method)


class FaultInjector:
    """Pending faults, consumed first-in first-out by matching requests."""

    def __init__(self) -> None:
        self._pending: list[FaultSpec] = []
        self._serials = itertools.count(1)

    def add(self, spec: FaultSpec) -> None:
        if spec.count < 1:
            raise ValueError("fault count must be at least 1")
        self._pending.append(replace(spec, serial=next(self._serials)))

    def clear(self) -> None:
        self._pending.clear()

    def pending(self) -> list[FaultSpec]:
        return list(self._pending)

    def take(self, venue: str, path: str, kinds: frozenset[FaultKind],
             taken: Container[int] = (), method: str = "") -> FaultSpec | None:
        """Consume one use of the first pending fault of `kinds` that matches, skipping
        the injections (`serial`s) in `taken`: those already hit this one target.
        `method`: the HTTP request's ("" for a WebSocket connection's data)."""
        if not self._pending:
            return None
        for i, spec in enumerate(self._pending):
            if (spec.kind in kinds and spec.serial not in taken
                    and spec.matches(venue, path, method)):
                if spec.count == 1:
                    del self._pending[i]
                else:
                    self._pending[i] = replace(spec, count=spec.count - 1)
                return spec
        return None


HTML_503_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"
    "<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n"
    "</body>\r\n</html>\r\n"
)


def html_503() -> web.Response:
    return web.Response(status=503, text=HTML_503_PAGE, content_type="text/html")


def server_error(status: int) -> web.Response:
    return web.Response(status=status, text=f"{status} Internal Server Error")


def malformed_json() -> web.Response:
    return web.Response(
        status=200, text='{"code":0,"data":[{"symbol":', content_type="application/json")


def truncate(response: web.StreamResponse) -> web.StreamResponse:
    """Cut a buffered answer in half, keeping status and headers."""
    if isinstance(response, web.Response) and response.body is not None:
        body = bytes(response.body)  # type: ignore[arg-type]
        response.body = body[: max(len(body) // 2, 1)]
    return response


def reset_connection(request: web.Request) -> None:
    """Abort the TCP connection with RST (SO_LINGER 0), as a dropped proxy does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.close()
