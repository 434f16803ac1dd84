"""Readiness: the local start-up checks, re-run on a schedule, drive grpc.health.v1.

A load balancer or systemd probe asks `grpc.health.v1.Health/Check`; it
should hear NOT_SERVING when this daemon cannot do its job (database
corrupt, state directory read-only, master key gone), and SERVING again once
that is fixed, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ctsd.health.startup import CheckResult, StartupChecks
from ctsd.tasks import Interrupted, cancel_and_wait, unless_set

log = logging.getLogger("ctsd.health")

DEFAULT_INTERVAL_S = 30.0


class ReadinessMonitor:
    """Owns one background task; `close()` ends it."""

    def __init__(
        self,
        checks: StartupChecks,
        set_serving: Callable[[bool], Awaitable[None]],
        interval_s: float = DEFAULT_INTERVAL_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._checks = checks
        self._set_serving = set_serving
        self._interval_s = interval_s
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self.ready: bool | None = None

    def poke(self) -> None:
        """Check again now, not at the next interval (the store just failed a write)."""
        self._poked.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="readiness")

    async def check_once(self) -> list[CheckResult]:
        results = await self._checks.run_local()
        ready = all(r.passed for r in results)
        if ready != self.ready:
            failed = {r.name: r.detail for r in results if not r.passed}
            if ready:
                log.info("ready: local checks pass")
            else:
                log.error("not ready: local checks fail", extra={"checks": failed})
            await self._set_serving(ready)
            self.ready = ready
        return results

    async def _loop(self) -> None:
        while True:
            self._poked.clear()
            try:
                await self.check_once()
            except Exception:
                log.exception("readiness check crashed")
            with contextlib.suppress(Interrupted):  # poked: check again at once
                await unless_set(self._poked, self._sleep(self._interval_s))

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
