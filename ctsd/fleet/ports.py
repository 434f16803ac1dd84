"""What the fleet needs from the store and from the engine manager."""

from __future__ import annotations

from typing import Protocol

from ctsd.engine.config import EngineConfig
from ctsd.engine.lease_ports import Fence, Lease
from ctsd.engine.status import EngineStatus
from ctsd.fleet.model import FleetView, MemberInfo


class FleetStore(Protocol):
    """`ctsd.store.fleet.SqlFleetStore`: every time is the database's clock."""

    async def renew(self, member: MemberInfo, ttl_ms: int) -> dict[str, int]:
        """Heartbeat, and every unexpired lease of the member extended to now + ttl;
        the leases it still holds (connection id -> token)."""
        ...

    async def take(self, connection_id: str, member_id: str, ttl_ms: int, *,
                   running_only: bool) -> int | None:
        """The lease under a new token if free, expired, released or the member's own."""
        ...

    async def release(self, connection_id: str, fence: Fence) -> bool: ...

    async def leave(self, member_id: str) -> None: ...

    async def set_draining(self, member_id: str, draining: bool) -> bool: ...

    async def view(self, ttl_ms: int) -> FleetView: ...

    async def orphans(self) -> list[str]:
        """Engines whose desired state is RUNNING and whose lease is missing or expired."""
        ...

    async def unfinished_stops(self) -> list[str]:
        """Engines stopped while nobody held their lease, with orders still open."""
        ...

    async def stopped(self, connection_ids: list[str]) -> list[str]:
        """Which of these engines' desired state is no longer RUNNING (stopped through
        another daemon)."""
        ...


class FleetEngines(Protocol):
    """`ctsd.engine.manager.EngineManager` as the fleet drives it."""

    async def adopt(self, connection_id: str, lease: Lease) -> None: ...

    async def relinquish(self, connection_id: str) -> None: ...

    async def finish_stop(self, connection_id: str, lease: Lease) -> None: ...

    async def start_here(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        """A start placed on this member: run here, never placed again."""
        ...

    async def stop_here(self, connection_id: str) -> EngineStatus:
        """A stop of an engine this member runs: run here, never sent on."""
        ...
