"""The exchange simulator on a thread of its own, for tests that also block on gRPC.

A test that calls the daemon with a synchronous stub blocks its thread; a
simulator on the same event loop would then never answer the daemon. Here the
simulator runs its own loop on a daemon thread; the test drives it through the
admin HTTP API (the same one the demo and benchmarks use) and moves its clock
through `OffsetClock`, whose offset is a plain attribute (read atomically).
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ctsd.sim.clock import SystemClock
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig

START_TIMEOUT_S = 30.0  # a bound: a simulator that never starts fails; not a speed check
DEFAULT_CONFIG = SimulatorConfig(seed=3, markets=20, hang_max_s=10.0)


class OffsetClock(SystemClock):
    """The wall clock moved by `offset_ms`: an exchange whose clock differs from ours."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return super().now_ms() + self.offset_ms


class SimulatorThread:
    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.clock = OffsetClock()
        self._config = config or DEFAULT_CONFIG
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="simulator", daemon=True)
        self.base_url = ""
        self.server: SimulatorServer | None = None
        """The running server (tests read its state, e.g. the option chain, from here)."""
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with SimulatorServer(self._config, clock=self.clock) as server:
            self.base_url = server.base_url
            self.server = server
            self._ready.set()
            await self._stop.wait()

    def start(self) -> SimulatorThread:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            raise RuntimeError(f"simulator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_TIMEOUT_S)

    # --- the admin API ------------------------------------------------------------------

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/admin/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            text = answer.read().decode()
        return json.loads(text) if text else None

    def provision(self, api_key: str, secret: str, **extra: Any) -> None:
        account = {
            "api_key": api_key,
            "secret": secret,
            "balances": {
                "spot": {"USDT": "1000", "BTC": "0.5"},
                "derivatives": {"USDT": "500"},
            },
            "permissions": ["read", "trade"],
            **extra,
        }
        self.admin("POST", "accounts", account)

    def fault(self, kind: str, **spec: Any) -> None:
        self.admin("POST", "faults", {"kind": kind, **spec})

    def clear_faults(self) -> None:
        self.admin("DELETE", "faults")

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self.admin("GET", "stats")
        return found


@contextmanager
def running_simulator(config: SimulatorConfig | None = None) -> Iterator[SimulatorThread]:
    sim = SimulatorThread(config).start()
    try:
        yield sim
    finally:
        sim.stop()
