"""WATCHDOG=1 keep-alives sent from the event loop itself.

The pings come from a task on the daemon's loop, not from a thread: if the
loop hangs (a blocking call, a busy coroutine that never yields) the pings
stop and systemd restarts the service, which is the point of `WatchdogSec=`.
"""

from __future__ import annotations

import asyncio

from ctsd.clock import Clock, SystemClock
from ctsd.ops.sd_notify import Notifier
from ctsd.tasks import cancel_and_wait


class Watchdog:
    """Pings every half interval, as sd_watchdog_enabled(3) recommends."""

    def __init__(self, notifier: Notifier, interval_s: float,
                 clock: Clock | None = None) -> None:
        self._notifier = notifier
        self.period_s = interval_s / 2
        self._clock = clock or SystemClock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    async def _run(self) -> None:
        while True:
            self._notifier.watchdog()
            await self._clock.sleep(self.period_s)

    async def close(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
