"""`EngineManager`: the one owner of every engine task, at most one engine per connection.

It validates configs, opens each connection's clients through the injected
`EngineBackend`, picks the broker for the mode (PAPER or LIVE, separate
classes), persists the desired state, resumes engines that should be running
after a daemon restart, fans status out to watchers, and stops everything at
shutdown. It is transport-agnostic: the gRPC servicer calls these methods and
translates `ctsd.errors` at its edge.

Callers hold this one object; its methods are kept by concern, each part a class
on `EngineRuns`, the state and the steps they share:

    manager_runs.py       EngineRuns: the runs, and the steps every path shares (open a
                          connection's clients, build, launch, resume, release; leases)
    manager_lifecycle.py  ManagerLifecycle: the daemon's start (resume) and shutdown
    manager_starts.py     StartsAndStops: StartEngine and StopEngine
    manager_fleet.py      FleetHandovers: adopt, finish a stop, relinquish, under leases
    manager_status.py     StatusReads: statuses, orders and fills, watchers, health
    manager_dry_runs.py   DryRuns: one cycle with nothing placed (TestEngine)
"""

from __future__ import annotations

from types import TracebackType

from ctsd.engine.manager_dry_runs import DryRuns
from ctsd.engine.manager_fleet import FleetHandovers
from ctsd.engine.manager_lifecycle import ManagerLifecycle
from ctsd.engine.manager_starts import StartsAndStops
from ctsd.engine.manager_status import StatusReads


class EngineManager(ManagerLifecycle, StartsAndStops, FleetHandovers, StatusReads, DryRuns):
    """All of it: what the gRPC servicers, the fleet and the daemon call."""

    async def __aenter__(self) -> EngineManager:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
