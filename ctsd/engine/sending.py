"""How an engine's orders leave: under which client order id, and whether their record
is committed before the request or written from the venue's answer.

`ctsd.engine.rounds` says which ids a round uses and what the store must know before
an order goes out; `Sender` is the engine's side of that rule, so that `Engine` reads
as the cycle it runs and the two ways an order leaves sit side by side here:

- sequential (PAPER, and any engine under a fleet lease): the PENDING record, with the
  round in its id and, under a lease, the fence check in the same transaction, commits
  first; nothing leaves before the database said yes;
- ahead (LIVE outside a fleet, a broker that can find an order by its id alone,
  `ctsd.engine.rounds.SendsAhead`): the request leaves first and its first record is
  the venue's answer, which the engine books (and waits for) before the next order,
  so at most one order is ever unrecorded and neither a commit nor the writer thread's
  wake-up sits between the decision and the request.

Whatever leaves, the engine books the answer (`Engine._book`): both ways book an
order's fills once, from the same broker answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ctsd.clock import Clock
from ctsd.engine.brokers.base import Broker
from ctsd.engine.config import TradingMode
from ctsd.engine.lease_ports import Lease
from ctsd.engine.orders import Execution, Order, OrderRequest
from ctsd.engine.rounds import Rounds, SendsAhead
from ctsd.engine.store_ports import EngineRecord, EngineStore
from ctsd.strategies.model import OrderIntent, PositionSide
from ctsd.tasks import retrieve_outcome

Save = Callable[[tuple[Execution, ...]], Awaitable[None]]
"""The engine's write: the executions given, after those it holds (one transaction)."""
Book = Callable[[Execution], Awaitable[None]]
"""The engine's booking: stored, then in the ledger."""


class Sender:
    """One engine's order sending: its rounds, and the order of request and record."""

    def __init__(self, record: EngineRecord, store: EngineStore, broker: Broker,
                 clock: Clock, lease: Lease | None, save: Save) -> None:
        ahead = broker if isinstance(broker, SendsAhead) and lease is None else None
        self._rounds = Rounds(record.engine_id, record.connection_id, store, record.cycle,
                              ahead)
        self._broker = broker
        self._clock = clock
        self._lease = lease
        self._save = save

    @property
    def round(self) -> int:
        """The round the next order goes out under (`ctsd.engine.rounds.Rounds.round`)."""
        return self._rounds.round

    @property
    def holds_cancels(self) -> bool:
        """A cycle's cancels are booked at once and stored with the next write (sending
        ahead: the venue is what reconciliation reads back), so that no commit sits
        between the market event and the order the cycle places after them."""
        return self._rounds.sends_ahead

    async def reconcile(self, reconcile: Callable[[], Awaitable[tuple[Execution, ...]]],
                        book: Book) -> None:
        """Session start: the one order a crash can have left unrecorded is named before
        the broker's reconciliation is booked (an order it adopts would change the
        count), found after it, and booked before the session's own round is reserved
        (a crash in between must find it again)."""
        unrecorded = await self._rounds.unrecorded()
        for execution in await reconcile():
            await book(execution)
        for execution in await self._rounds.recover(unrecorded):
            await book(execution)
        await self._rounds.begin()

    async def recover_earlier(self, earlier: EngineRecord) -> tuple[Execution, ...]:
        """An explicit start, before its record replaces `earlier` (the connection's stored
        engine, another engine id): the order `earlier` may have sent ahead and never
        recorded, as the venue has it (`ctsd.engine.rounds`), if this broker can ask the
        venue by client order id. Whether `earlier` sent ahead is not on record (a lease
        makes it sequential): asking costs a lookup, and finds nothing if it did not."""
        if (not isinstance(self._broker, SendsAhead) or not earlier.cycle
                or earlier.config.mode is not TradingMode.LIVE):
            return ()
        unrecorded = await self._rounds.next_unrecorded(earlier.engine_id, earlier.cycle)
        return await self._broker.recover(unrecorded, earlier.cycle, earlier.config.symbols)

    async def finish(self) -> None:
        """The cycle's orders are out: the next round, reserved if it needs to be."""
        await self._rounds.finish()

    async def send(self, intent: OrderIntent, position_side: PositionSide,
                   closes: bool = False) -> Execution:
        """`intent` placed under its id; the answer, for the engine to book. `closes`: it
        is the whole of its position (`OrderRequest.closes`)."""
        cid, cycle = self._rounds.next_id()
        request = OrderRequest(cid, intent.symbol, intent.side, intent.type, intent.amount,
                               intent.price, intent.tag, cycle, reduce_only=intent.reduce_only,
                               position_side=position_side, closes=closes)
        pending = Execution(Order.pending(request, self._clock.now_ms()))
        if self._rounds.ahead(cycle):
            return await self._send_ahead(request, pending)
        self._check_lease()
        # The fence check and the PENDING record commit together, or neither does.
        await self._save((pending,))
        self._check_lease()
        return await self._broker.place(request)

    async def _send_ahead(self, request: OrderRequest, pending: Execution) -> Execution:
        """The request leaves first. A send that fails (a timeout: it may have reached
        the venue) leaves the PENDING record for reconciliation, written even if this
        task is cancelled meanwhile."""
        try:
            return await self._broker.place(request)
        except BaseException:
            write = asyncio.ensure_future(self._save((pending,)))
            write.add_done_callback(retrieve_outcome)  # runs on if this task is cancelled
            await asyncio.shield(write)
            raise

    def _check_lease(self) -> None:
        if self._lease is not None:
            self._lease.check()
