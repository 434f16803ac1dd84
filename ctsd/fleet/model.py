"""What the fleet's tables hold, as the domain sees them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemberInfo:
    """What a daemon says about itself when it joins and at every heartbeat."""

    id: str
    address: str
    version: str
    schema_version: int


@dataclass(frozen=True)
class Member:
    info: MemberInfo
    started_ms: int
    heartbeat_ms: int
    """The database's clock at the member's last renewal."""
    draining: bool
    alive: bool
    """Renewed within one lease TTL, by the database's clock when it was read."""


@dataclass(frozen=True)
class LeaseRow:
    connection_id: str
    owner: str
    """'' once released."""
    token: int
    expires_ms: int
    acquired_ms: int
    live: bool
    """Unexpired by the database's clock when it was read."""


@dataclass(frozen=True)
class FleetView:
    """One consistent read of the fleet: members and every engine lease."""

    members: tuple[Member, ...]
    leases: tuple[LeaseRow, ...]
    now_ms: int
