"""The one interface an engine trades through; PAPER and LIVE are separate implementations.

Every method returns `Execution`s (the order's new state plus the fills it
produced) so the engine books paper and live results through one code path:
persist the order, record the fills, update the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from ctsd.engine.orders import Execution, Fill, Order, OrderRequest
from ctsd.engine.perpetual import FundingPayment, VenuePosition
from ctsd.strategies.model import Balance, MarketSnapshot


class Broker(Protocol):
    async def reconcile(
        self, known: Sequence[Order], fills: Sequence[Fill],
        funding: Sequence[FundingPayment] = (),
    ) -> tuple[Execution, ...]:
        """Align with the venue before the first new order: resolve every persisted
        non-final order (`known`) and report what changed. Raises when it cannot;
        the engine then fails closed instead of trading on a guess. `fills` and
        `funding` are everything booked so far (a paper account replays them)."""
        ...

    async def place(self, request: OrderRequest) -> Execution:
        """Place once: a request whose client order id already exists is adopted, not resent.
        A venue rejection is an Execution with status REJECTED, not an exception."""
        ...

    async def cancel(self, order: Order) -> Execution: ...

    async def fetch_order(self, order: Order) -> Execution: ...

    async def refresh(self) -> tuple[Execution, ...]:
        """Fills and state changes of resting orders the venue reports since the last call,
        and the balance. The engine asks before fetching prices: the decision then runs
        on the freshest thing it reads, and no venue round trip sits between the prices
        arriving and the orders leaving. Cancelling it midway must change nothing: a
        stop abandons a cycle that is still reading."""
        ...

    async def refresh_from_venue(self) -> tuple[Execution, ...]:
        """`refresh` with every read from the venue's REST API, whatever a private stream
        said: the engine found the venue disagreeing with what it was told (the position
        check's second look, `ctsd.engine.position_check`). Cancelling it midway must
        change nothing."""
        ...

    def refresh_now(self) -> tuple[Execution, ...] | None:
        """`refresh`'s answer when it needs no venue request (PAPER; LIVE between
        reconciliations, from its order stream), else None: then `refresh` is awaited.
        An event-driven cycle then reads and decides without a single await."""
        ...

    async def after_cycle(self) -> tuple[Execution, ...]:
        """Venue reads that fell due by time alone (LIVE with an order stream: the periodic
        reconciliation), once the cycle's orders have left: nothing suggests the stream
        missed anything, so they need not sit between a market event and the order it
        causes. () when nothing is due. Cancelling it midway changes nothing."""
        ...

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        """Fills this cycle's prices cause by themselves (PAPER's matching); no venue call."""
        ...

    def quiet_until(self) -> float | None:
        """Until when (monotonic) the book cannot change unless the engine is woken (a
        stream update) or prices move (PAPER's matching, which the engine bounds itself):
        how long an event-driven engine may sleep through ticker moves
        (`ctsd.engine.wakes`). None: not now, every market event must wake it."""
        ...

    def open_orders(self) -> tuple[Order, ...]:
        """The broker's current book of this engine's resting orders."""
        ...

    def balances(self) -> tuple[Balance, ...]: ...

    def positions(self) -> tuple[VenuePosition, ...]:
        """Perpetuals: the open positions as the venue (or the paper account) values them,
        as of the last `refresh`/`poll`; () on spot, where the ledger is the position."""
        ...

    def positions_streamed(self) -> bool:
        """`positions` are a private stream's view (LIVE perpetuals on a WebSocket
        connection), not a read of this refresh: they may run a moment behind the fills
        (the engine's stream-lag rule); False where they are read or computed."""
        ...

    def take_funding(self) -> tuple[FundingPayment, ...]:
        """Perpetuals: funding payments found since the last call (each once)."""
        ...


class PaperVenue:
    """The venue reads of a paper broker, which are all empty: the paper account is the
    venue, and its orders fill in `poll` against the cycle's prices, so there is nothing
    to read again, now or after the cycle. One place for what every paper broker
    (spot, margin, perpetuals) answers alike."""

    async def refresh(self) -> tuple[Execution, ...]:
        return ()

    async def refresh_from_venue(self) -> tuple[Execution, ...]:
        return ()

    def refresh_now(self) -> tuple[Execution, ...]:
        return ()

    def quiet_until(self) -> float | None:
        return math.inf

    async def after_cycle(self) -> tuple[Execution, ...]:
        return ()
