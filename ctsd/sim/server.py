"""`SimulatorServer`: the simulator on a loopback TCP port, as an async context manager.

    async with SimulatorServer(SimulatorConfig(seed=7)) as server:
        point_at_simulator(exchange, server.base_url)
        server.sim.set_price("BTC/USDT", Decimal("60000"))

Port 0 picks a free port; `base_url` tells which.
"""

from __future__ import annotations

import ipaddress
import socket
from types import TracebackType

from aiohttp import web

from ctsd.sim.app import HUB_KEY, build_app
from ctsd.sim.clock import Clock
from ctsd.sim.state import Simulator, SimulatorConfig
from ctsd.sim.venue import VenueRegistry
from ctsd.sim.venues import default_registry
from ctsd.sim.ws.hub import StreamHub


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class SimulatorServer:
    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        registry: VenueRegistry | None = None,
        allow_remote: bool = False,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to serve the simulator on non-loopback host {host!r}")
        self.sim = Simulator(config, clock)
        self.registry = registry or default_registry()
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._hub: StreamHub | None = None

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("simulator server is not started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    def venue_url(self, venue: str) -> str:
        return f"{self.base_url}/{venue}"

    @property
    def streams(self) -> StreamHub:
        """The WebSocket side: connections, topics, the data loop."""
        if self._hub is None:
            raise RuntimeError("simulator server is not started")
        return self._hub

    async def start(self) -> SimulatorServer:
        app = build_app(self.sim, self.registry)
        self._hub = app[HUB_KEY]
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self._host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self._bound_port = sock.getsockname()[1]
        return self

    async def close(self) -> None:
        """Release hung requests first, then stop accepting and close connections."""
        self.sim.closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimulatorServer:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
