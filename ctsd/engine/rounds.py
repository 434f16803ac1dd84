"""The client order ids an engine's orders go out under, and what the store must know first.

An id is (engine id, round, index) (`ctsd.engine.orders.client_order_id`): a *round*
is one cycle that places orders (cycles that place nothing use no number and write
nothing), and the index counts that round's orders densely, in the order they are
sent. Every order is written PENDING under its id; the question is whether that
write must be durable before the request leaves.

Sequential (PAPER, and any engine under a fleet lease): yes. The PENDING write carries
the round and, under a lease, the fence check that refuses a daemon which lost its
engine: nothing may leave before the database said yes.

Ahead (LIVE without a lease): the request leaves first and its first record is the
venue's answer (or PENDING, if the send failed), so no fsync and no writer-thread
hop sits between a market event and the order. What makes that safe is that the
store knows in advance which id a sent-but-unrecorded order can have:

- a round is *reserved* (its number stored, durably) before any of its orders is
  sent: at session start, and at the end of each round for the next one, after the
  round's orders left;
- each order's record is written, and waited for, before the next order is sent, so
  at most one order is unrecorded: the last one sent, whose index is the number of
  the reserved round's orders the store holds.

After a crash, reconciliation asks the venue for exactly that id (`recover`): an
order found is booked (its fills count) and, if still open, cancelled, since the
intent it carried (its tag, e.g. a grid level) died with the process; the session
then takes a new round. `tests/robustness/test_order_ahead_crash.py` kills the daemon
inside that window.

The reserved round lives in the engine's stored record, which an explicit start
replaces (a new engine id, rounds from 0). A crashed session that never resumes (the
kill landed after StopEngine committed the stopped state, while the stop waited for a
cycle that was sending; or the resume failed) leaves its one order to the next start:
it asks for that order under the old engine id and round before its own record
replaces them (`ctsd.engine.sending.Sender.recover_earlier`). An order still open at
the venue would be adopted by reconciliation anyway; one that filled meanwhile is
found only this way.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ctsd.engine.orders import Execution, client_order_id
from ctsd.engine.store_ports import EngineStore


@runtime_checkable
class SendsAhead(Protocol):
    """A broker whose venue can be asked for an order by client order id alone."""

    async def recover(self, client_order_id: str, cycle: int,
                      symbols: tuple[str, ...] = ()) -> tuple[Execution, ...]:
        """The order sent under `client_order_id` that the store never recorded, if the
        venue has it: booked as the venue reports it, then cancelled if still open.
        `symbols`: where to look (an earlier engine's); () for the engine's own."""
        ...


class Rounds:
    """One engine's rounds: the next id, the reservations, the recovery at session start."""

    def __init__(self, engine_id: str, connection_id: str, store: EngineStore,
                 stored: int, ahead: SendsAhead | None) -> None:
        self._engine_id = engine_id
        self._connection_id = connection_id
        self._store = store
        self._ahead = ahead
        self.round = stored + 1
        """The round the next order goes out under."""
        self._index = 0
        """Orders sent in `round` so far."""
        self._reserved = stored
        """The highest round known durable in the store."""

    def next_id(self) -> tuple[str, int]:
        """The next order's client order id and round."""
        cid = client_order_id(self._engine_id, self.round, self._index)
        self._index += 1
        return cid, self.round

    @property
    def sends_ahead(self) -> bool:
        """Orders may leave before their record (the venue is the truth reconciliation
        reads back)."""
        return self._ahead is not None

    def ahead(self, cycle: int) -> bool:
        """Whether an order of round `cycle` may leave before its record commits."""
        return self._ahead is not None and cycle <= self._reserved

    async def unrecorded(self) -> str:
        """Session start, before reconciliation books anything: the id of the one order
        a crash can have left unrecorded ("" unless sending ahead)."""
        if self._ahead is None or not self._reserved:  # no round reserved: none sent
            return ""
        return await self.next_unrecorded(self._engine_id, min(self.round, self._reserved))

    async def next_unrecorded(self, engine_id: str, reserved: int) -> str:
        """The id the next order of `engine_id`'s round `reserved` goes out under: the one
        a crash in that round can have left unrecorded (its index is the number of the
        round's orders stored)."""
        prefix = client_order_id(engine_id, reserved, 0)[:-1]
        return f"{prefix}{await self._store.count_orders(self._connection_id, prefix)}"

    async def recover(self, unrecorded: str) -> tuple[Execution, ...]:
        """That order, as the venue has it (`SendsAhead.recover`). Sending ahead needs
        the session's round reserved, which `begin` does after this."""
        if self._ahead is None or not unrecorded:
            return ()
        return await self._ahead.recover(unrecorded, min(self.round, self._reserved))

    async def begin(self) -> None:
        """Session start, after `recover`: a round of its own, reserved when sending ahead."""
        if self._index or self.round <= self._reserved:
            self.round, self._index = max(self.round, self._reserved) + 1, 0
        await self._reserve()

    async def finish(self) -> None:
        """The cycle is over: if it placed orders, the next round, reserved before the
        next market event needs it (sending ahead)."""
        if self._index:
            self.round, self._index = self.round + 1, 0
            await self._reserve()

    async def _reserve(self) -> None:
        if self._ahead is not None and self.round > self._reserved:
            await self._store.save_cycle(self._connection_id, self.round)
            self._reserved = self.round
