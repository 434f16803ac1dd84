"""What the engine keeps across restarts: the records, orders, fills and funding the
store (`ctsd.store.engines`, SQL) keeps for it.

Why a module of its own: the store implements `EngineStore` and imports these values
(and the lease's `Fence` its writes check), none of the venue-side ports; the engine
reaches SQL only through it. Errors as every engine port raises them (`ctsd.engine`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ctsd.engine.config import EngineConfig
from ctsd.engine.lease_ports import Fence
from ctsd.engine.orders import Execution, Fill, Order
from ctsd.engine.perpetual import FundingPayment

T = TypeVar("T")


class DesiredState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class EngineRecord:
    """What survives a daemon restart: which engine should run, with what, and how far it got.

    `engine_id` is minted at each explicit start and is part of every client order
    id; `cycle` is the last cycle that placed an order, persisted with that cycle's
    first PENDING order (`save_execution`) before anything is sent, so a resumed engine
    (numbering on from it) never reuses a client order id. Cycles that place nothing
    are not stored: they need no id.
    """

    connection_id: str
    engine_id: str
    config: EngineConfig
    desired: DesiredState
    cycle: int = 0
    last_error: str = ""


class EngineStore(Protocol):
    async def load_engines(self) -> list[EngineRecord]: ...

    async def load_engine(self, connection_id: str) -> EngineRecord | None:
        """The record of one connection's engine (a start reads it: not every record)."""
        ...

    async def create_engine(self, record: EngineRecord) -> None:
        """Insert or replace the record of `record.connection_id` (an explicit start)."""
        ...

    async def set_desired(
        self, connection_id: str, desired: DesiredState, last_error: str,
        fence: Fence | None = None,
    ) -> None:
        """Change only the desired state and last error; never the cycle.

        Every write taking a `fence` refuses with `LeaseLost` (nothing written) when the
        fence no longer holds (see `Fence`)."""
        ...

    async def save_cycle(self, connection_id: str, cycle: int,
                         fence: Fence | None = None) -> None:
        """Raise the stored round (`ctsd.engine.rounds`) to `cycle`, never lower it: a
        round reserved before any of its orders goes out."""
        ...

    async def save_execution(self, connection_id: str, execution: Execution,
                             fence: Fence | None = None) -> None:
        """Upsert the order by client order id and insert its fills, ignoring trade ids
        already stored, in one transaction (with the fence check, and the fence's token
        recorded on the order); a PENDING order (written ahead of its placement) also
        raises the engine's stored cycle to the order's, in the same transaction, so one
        write makes both durable before the order is sent."""
        ...

    async def save_executions(self, connection_id: str, executions: Sequence[Execution],
                              fence: Fence | None = None) -> None:
        """`save_execution` of each, in order, in one transaction: fills the engine
        booked from its order stream ride with the next write (an order's PENDING
        record) instead of a commit of their own before the decision."""
        ...

    async def list_orders(
        self, connection_id: str, *, open_only: bool = False
    ) -> list[Order]:
        """Orders oldest first; `open_only` means status PENDING or OPEN."""
        ...

    async def count_orders(self, connection_id: str, id_prefix: str) -> int:
        """How many orders are stored under a client order id starting with `id_prefix`
        (one engine's round: `ctsd.engine.rounds`)."""
        ...

    async def list_fills(self, connection_id: str) -> list[Fill]:
        """Every fill of the connection, oldest first."""
        ...

    async def save_funding(self, connection_id: str, payments: tuple[FundingPayment, ...],
                           fence: Fence | None = None) -> None:
        """Insert funding payments, ignoring funding ids already stored."""
        ...

    async def list_funding(self, connection_id: str) -> list[FundingPayment]:
        """Every funding payment of the connection, oldest first."""
        ...

    async def page_orders(self, connection_id: str, *, open_only: bool, after: int,
                          limit: int) -> Page[Order]:
        """Up to `limit` orders stored after position `after` (0: from the first)."""
        ...

    async def page_fills(self, connection_id: str, *, after: int, limit: int) -> Page[Fill]:
        """Up to `limit` fills stored after position `after` (0: from the first)."""
        ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """Rows in storage order and where the next page starts.

    Positions grow with every row stored and never move, so paging by them stays
    exact while an engine keeps trading, and an order that closes while a client
    pages through the open ones shifts nothing."""

    items: tuple[T, ...]
    next_after: int | None
    """The position to continue after; None when this page is the last."""
