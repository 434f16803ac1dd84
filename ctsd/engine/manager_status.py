"""`StatusReads`: what callers read of the engines: statuses, orders, fills, health.

Statuses come from the status hub (what every engine last published, and the
stopped or failed engines without a task), orders and fills from the store a page
at a time; watchers subscribe to the hub. Health counts the engines and names the
running ones whose heartbeat is overdue (`_patience_s`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ctsd.engine.manager_runs import EngineRuns
from ctsd.engine.orders import Fill, Order
from ctsd.engine.paging import Listing, listing, page_request
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.watch import Watcher
from ctsd.errors import NotFound


@dataclass(frozen=True)
class CoordinatorHealth:
    engines: int
    running: int
    failed: int
    stalled: tuple[str, ...]
    """Running engines whose last heartbeat is older than three intervals (plus the idle
    timeout on a WebSocket connection: `EngineManager._patience_s`)."""
    watchers: int
    restarts: int


class StatusReads(EngineRuns):
    """GetEngine, ListEngines, ListOrders, ListTrades, WatchEngines, GetCoordinatorHealth."""

    def get(self, connection_id: str) -> EngineStatus:
        status = self._hub.get(connection_id)
        if status is None:
            raise NotFound(f"no engine on connections/{connection_id}")
        return status

    def list(self) -> tuple[EngineStatus, ...]:
        return self._hub.snapshot()

    async def list_orders(self, connection_id: str, *, open_only: bool, page_size: int,
                          page_token: str) -> Listing[Order]:
        """A page of the engine's orders (all, or the open ones), oldest first."""
        self.get(connection_id)  # NotFound for a connection without an engine
        after, size = page_request(page_size, page_token)
        return listing(await self._store.page_orders(
            connection_id, open_only=open_only, after=after, limit=size))

    async def list_trades(self, connection_id: str, *, page_size: int,
                          page_token: str) -> Listing[Fill]:
        """A page of the engine's fills, oldest first."""
        self.get(connection_id)
        after, size = page_request(page_size, page_token)
        return listing(await self._store.page_fills(connection_id, after=after, limit=size))

    def watch(self) -> Watcher:
        """A bounded subscription: a snapshot first, then changes and heartbeats. Close it."""
        return self._hub.subscribe()

    @property
    def watchers(self) -> int:
        return self._hub.watcher_count

    def health(self) -> CoordinatorHealth:
        statuses = self._hub.snapshot()
        now_ms = self._clock.now_ms()
        running = [s for s in statuses if s.state is EngineState.RUNNING]
        stalled = tuple(
            s.connection_id for s in running
            if s.heartbeat_ms and now_ms - s.heartbeat_ms > 1_000 * self._patience_s(s))
        return CoordinatorHealth(
            len(statuses), len(running), sum(s.state is EngineState.FAILED for s in statuses),
            stalled, self._hub.watcher_count, sum(s.restarts for s in statuses))

    def _patience_s(self, status: EngineStatus) -> float:
        """How old a running engine's heartbeat may grow: three intervals, and on a
        WebSocket connection the idle timeout too (with no market event it may wake, or
        its quiet bands let it sleep, for `idle_cycles` intervals: `ctsd.engine.wakes`)."""
        run = self._runs.get(status.connection_id)
        if run is None:
            return 180.0
        from ctsd.engine.supervisor import RestartPolicy  # loaded: an engine runs here

        interval = run.engine.config.interval_s
        idle = (self._policy or RestartPolicy()).idle_cycles if (
            run.engine.events is not None) else 0
        return interval * (3 + idle)
