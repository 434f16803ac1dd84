"""Engine ownership in a fleet: the lease an engine runs under and the fence its
writes carry.

Why apart from `store_ports`: `ctsd.fleet` implements these, not the store, and the
store only checks a `Fence` it is handed; a daemon alone in its fleet runs engines
without a lease. Errors as every engine port raises them (`ctsd.engine`), plus
`LeaseLost` once ownership is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ctsd.engine.config import EngineConfig
from ctsd.engine.status import EngineStatus


@dataclass(frozen=True)
class Fence:
    """Who holds an engine's lease and under which token (fleet; `ctsd.fleet`).

    A write passed a fence commits only if, in the same transaction, the lease row
    still names this owner and token and has not expired by the database's clock:
    a daemon that lost the lease (paused, partitioned) can no longer write a
    PENDING order, so it can no longer place one."""

    owner: str
    token: int


class Lease(Protocol):
    """An engine's lease as its engine sees it; held by `ctsd.fleet`, renewed there."""

    @property
    def fence(self) -> Fence: ...

    @property
    def lost(self) -> bool:
        """Another daemon may own the engine now: end it here, touching nothing."""
        ...

    def check(self) -> None:
        """Raise `LeaseLost` once the lease is lost or its renewal deadline passed, by this
        daemon's own clock: before anything is placed, cancelled or written."""
        ...

    def deadline_ms(self) -> int:
        """Wall-clock ms until which a request sent now may be acted upon."""
        ...

    async def ready(self) -> None:
        """Return once the lease may be relied on (renewed in time); raise `LeaseLost` if
        it was lost. Cycles wait here while a renewal is overdue."""
        ...


class EngineLeases(Protocol):
    """Engine ownership in a fleet: an explicit start takes the lease, a stop gives it back."""

    async def acquire(self, connection_id: str) -> Lease:
        """The lease of `connection_id` for this daemon (a new token); FailedPrecondition
        naming the owner when another live daemon holds it."""
        ...

    async def release(self, connection_id: str) -> None:
        """Give up the lease (the engine stopped): nobody adopts a stopped engine."""
        ...

    async def place(self, connection_id: str, config: EngineConfig) -> EngineStatus | None:
        """Start the engine on the member the fleet's load picks: its status, or its
        refusal raised; None to start it here."""
        ...

    async def stop_elsewhere(self, connection_id: str) -> EngineStatus | None:
        """Stop the engine on the live member that owns it, once it did; None to stop
        it here."""
        ...
