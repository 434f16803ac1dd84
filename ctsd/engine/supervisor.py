"""The life of one engine task: sessions, the cycle schedule, failure and restart with backoff.

Why sessions: every (re)start begins with reconciliation, so a restart after a
crash is exactly a resume after a daemon restart. Which failures restart is a
policy here, in one place: a raising cycle restarts with exponential backoff
until `max_restarts` consecutive failures; an exchange that is down, in
maintenance or rate limiting is waited out with the same backoff, capped, for
as long as it lasts (a 24/7 engine must survive an hour of maintenance, and a
daemon restarted during one), reconciling before it trades again; any other
failed reconciliation, a risk limit breach or a venue position that differs
from the ledger never restarts (fail closed; a human decides).

Cycles run on a fixed schedule (start + n * interval); a cycle that overruns
skips the ticks it missed instead of bursting to catch up. On a WebSocket
connection (`Engine.events`) market events trigger the cycles instead, at most
one per interval (the interval is the minimum spacing; events that arrive
meanwhile are served by the next cycle, which reads the latest data); while a
stream is down the engine polls at the interval as on REST, and with no event
at all it still cycles every `idle_cycles` intervals. Stopping waits for
a cycle that has decided to finish, so an order is never abandoned halfway
through being sent and booked; a cycle still reading is abandoned.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from ctsd import fencing
from ctsd.clock import Clock
from ctsd.engine.backend import EngineResources
from ctsd.engine.engine import Engine, RiskLimitBreached
from ctsd.engine.position_check import PositionMismatch
from ctsd.engine.status import EngineState, Failure, FailureCode
from ctsd.engine.store_ports import DesiredState, EngineStore
from ctsd.errors import ExchangeUnavailable, LeaseLost, ResourceExhausted
from ctsd.tasks import Interrupted, cancel_and_wait, unless_set

log = logging.getLogger("ctsd.engine")

RESTARTED = frozenset({FailureCode.CYCLE_ERROR, FailureCode.EXCHANGE_UNAVAILABLE,
                       FailureCode.LEASE_OVERDUE})
HUMAN_STOPS = frozenset({FailureCode.RISK_LIMIT, FailureCode.POSITION_MISMATCH})
"""Stops that survive a daemon restart: the engine stays stopped until a human starts it."""
EXCHANGE_TROUBLE = (ExchangeUnavailable, ResourceExhausted)
"""Failures an engine waits out: the venue is down or refusing for its rate (or our disk
is full); the engine's state is not in doubt, and reconciliation runs before it trades."""


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 300.0
    idle_cycles: int = 30
    """An event-driven engine with no market event cycles after this many intervals."""

    def delay(self, failures: int) -> float:
        """Backoff before restart number `failures` (1-based): base, 2*base, 4*base, ..."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1)))


_STOPPED = Failure(FailureCode.CYCLE_ERROR, "stopped while reading")
"""Sentinel of `_cycle`: a stop abandoned the cycle; the session ends without failure."""


def describe(exc: BaseException) -> str:
    message = str(getattr(exc, "message", "") or exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class EngineRun:
    """One engine and the task that drives it; created and owned by `EngineManager`."""

    def __init__(self, engine: Engine, store: EngineStore, clock: Clock,
                 policy: RestartPolicy, resources: EngineResources) -> None:
        self.engine = engine
        self.resources = resources
        """The clients the backend opened for this engine; released when it is dropped."""
        self._store = store
        self._clock = clock
        self._policy = policy
        self._stop = asyncio.Event()
        self._stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Resolved with `_stop`: every wait races it without a task of its own."""
        self._cancel_orders_on_stop = True
        self._failures = 0
        """Consecutive failing cycles of the engine's own making: limited."""
        self.lost = False
        """The lease went to another daemon: the engine ended here without a write."""
        self._outages = 0
        """Consecutive cycles the exchange failed: retried for as long as it lasts."""
        self.task: asyncio.Task[None] | None = None

    def launch(self) -> None:
        """STARTING at once (what StartEngine answers), then the task takes over."""
        self.engine.transition(EngineState.STARTING)
        name = f"engine:{self.engine.connection_id}"
        self.task = asyncio.create_task(self._supervise(), name=name)
        self.task.add_done_callback(self._log_crash)

    def _log_crash(self, task: asyncio.Task[None]) -> None:
        """The supervisor itself raising is a bug (e.g. the store failed mid-bookkeeping)."""
        if not task.cancelled() and task.exception() is not None:
            log.error("engine supervisor crashed", exc_info=task.exception(),
                      extra={"connection_id": self.engine.connection_id})

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    async def stop(self, cancel_orders: bool) -> None:
        """Stop after the cycle in flight; cancelling the caller does not cancel the engine."""
        self._cancel_orders_on_stop = cancel_orders
        self._stop.set()
        if not self._stopped.done():
            self._stopped.set_result(None)
        if self.engine.events is not None:
            self.engine.events.interrupt()
        if self.task is not None and not self.task.done():
            await asyncio.wait({self.task})
        elif self.engine.status.state is EngineState.FAILED:
            with fencing.guarded(self.engine.lease):
                try:
                    await self._finish_stop()
                except LeaseLost:
                    self.lost = True
                    self._end_lost()

    def abort(self) -> None:
        """Last resort at shutdown, for a cycle stuck past the grace period."""
        if self.task is not None:
            self.task.cancel()

    async def _supervise(self) -> None:
        """The lease (fleet) guards every request this task sends; once it is lost, the
        engine ends at once: no cancel, no store write (the new owner decides)."""
        with fencing.guarded(self.engine.lease):
            try:
                await self._supervised()
            except LeaseLost as lost:
                self.lost = True
                log.warning("engine lease lost; this daemon stops it without touching its "
                            "orders", extra={"connection_id": self.engine.connection_id,
                                             "reason": str(lost)})
                self._end_lost()

    def _end_lost(self) -> None:
        engine = self.engine
        if engine.status.state is not EngineState.STOPPING:
            engine.transition(EngineState.STOPPING)
        engine.transition(EngineState.STOPPED)

    async def _supervised(self) -> None:
        engine = self.engine
        while True:
            failure = await self._session()
            if failure is None:
                await self._finish_stop()
                return
            if failure.code is FailureCode.CYCLE_ERROR:
                self._failures += 1
                if self._failures > self._policy.max_restarts:
                    failure = Failure(FailureCode.RESTART_LIMIT, f"{self._failures} failures "
                                      f"in a row; last: {failure.message}")
            elif failure.code is FailureCode.EXCHANGE_UNAVAILABLE:
                self._outages += 1
            engine.transition(EngineState.FAILED, failure)
            # A risk stop must survive a daemon restart; anything else is retried by one.
            # An overdue lease writes nothing: the database is what did not answer.
            risk_stop = failure.code in HUMAN_STOPS
            desired = DesiredState.STOPPED if risk_stop else DesiredState.RUNNING
            if failure.code is not FailureCode.LEASE_OVERDUE:
                await self._store.set_desired(engine.connection_id, desired, str(failure),
                                              engine.lease.fence if engine.lease else None)
            if failure.code not in RESTARTED:
                return  # terminal: stays FAILED until stopped or started again
            if await self._wait_stop(self._policy.delay(self._failures + self._outages)):
                await self._finish_stop()
                return
            engine.note_restart()
            engine.transition(EngineState.STARTING)

    async def _session(self) -> Failure | None:
        """From STARTING: reconcile, then cycle until stopped (None) or until something fails."""
        engine = self.engine
        if not await self._lease_ready():
            return None
        try:
            await engine.reconcile()
        except LeaseLost as exc:
            return self._overdue(exc)
        except EXCHANGE_TROUBLE as exc:  # not trading until it can reconcile: still closed
            log.warning("reconciliation waits for the exchange", extra={
                "connection_id": engine.connection_id, "error": describe(exc)})
            return Failure(FailureCode.EXCHANGE_UNAVAILABLE,
                           f"reconciliation: {describe(exc)}")
        except PositionMismatch as mismatch:
            await self._cancel_quietly()
            return Failure(FailureCode.POSITION_MISMATCH, str(mismatch))
        except Exception as exc:
            log.exception("reconciliation failed", extra={"connection_id": engine.connection_id})
            return Failure(FailureCode.RECONCILIATION_FAILED, describe(exc))
        if self._stop.is_set():
            return None
        engine.transition(EngineState.RUNNING)
        if engine.events is not None:
            return await self._event_session()
        interval = engine.config.interval_s
        next_tick = self._clock.monotonic()
        while not self._stop.is_set():
            if not await self._lease_ready():
                break
            failure = await self._cycle(next_tick)
            if failure is not None:
                return None if failure is _STOPPED else failure
            now = self._clock.monotonic()
            next_tick += interval
            if next_tick <= now:
                skipped = math.floor((now - next_tick) / interval) + 1
                next_tick += skipped * interval
                engine.note_skipped_ticks(skipped)
            if await self._wait_stop(next_tick - now):
                break
        return None

    async def _event_session(self) -> Failure | None:
        """Cycles on market events, spaced by at least the interval (see module doc)."""
        engine = self.engine
        events = engine.events
        assert events is not None
        spacing = engine.config.interval_s
        try:
            engine.follow_market()
        except Exception as exc:
            return Failure(FailureCode.CYCLE_ERROR, f"subscribing: {describe(exc)}")
        last = -math.inf
        while not self._stop.is_set():
            timeout = spacing if not events.streaming else spacing * self._policy.idle_cycles
            event = await events.next_event(timeout)  # `stop` interrupts it
            if self._stop.is_set():
                break
            now = self._clock.monotonic()
            if event is not None and event < last:
                continue  # it came before the last cycle started: that cycle served it
            due = max(event if event is not None else now, last + spacing)
            if due > now and await self._wait_stop(due - now):
                break
            if not await self._lease_ready():
                break
            last = self._clock.monotonic()
            failure = await self._cycle(due)
            if failure is not None:
                return None if failure is _STOPPED else failure
        return None

    async def _cycle(self, scheduled: float) -> Failure | None:
        """One cycle; a Failure ends the session (`_STOPPED`: a stop interrupted it)."""
        engine = self.engine
        try:
            if not await engine.run_cycle(scheduled=scheduled, interrupt=self._stop):
                return _STOPPED  # stopped while the cycle was still reading
        except LeaseLost as exc:
            return self._overdue(exc)
        except RiskLimitBreached as breach:
            await self._cancel_quietly()
            return Failure(FailureCode.RISK_LIMIT, str(breach))
        except PositionMismatch as mismatch:
            await self._cancel_quietly()
            return Failure(FailureCode.POSITION_MISMATCH, str(mismatch))
        except EXCHANGE_TROUBLE as exc:  # the venue's trouble, not the engine's
            log.warning("engine cycle failed: exchange unavailable", extra={
                "connection_id": engine.connection_id, "error": describe(exc)})
            return Failure(FailureCode.EXCHANGE_UNAVAILABLE, describe(exc))
        except Exception as exc:
            log.exception("engine cycle failed", extra={"connection_id": engine.connection_id})
            return Failure(FailureCode.CYCLE_ERROR, describe(exc))
        self._failures = self._outages = 0
        return None

    def _overdue(self, exc: LeaseLost) -> Failure:
        """A lease check refused mid-session: lost for good (re-raised: the engine ends
        here), or only overdue (the session ends; the next reconciles once renewed)."""
        lease = self.engine.lease
        if lease is None or lease.lost:
            raise exc
        log.warning("engine lease renewal overdue: trading paused", extra={
            "connection_id": self.engine.connection_id})
        return Failure(FailureCode.LEASE_OVERDUE, describe(exc))

    async def _lease_ready(self) -> bool:
        """Wait, cycling nothing, while the lease's renewal is overdue; False if a stop
        came first. `LeaseLost` once another daemon owns it."""
        lease = self.engine.lease
        if lease is None:
            return True
        try:
            await unless_set(self._stop, lease.ready())
        except Interrupted:
            return False
        return True

    async def _finish_stop(self) -> None:
        engine = self.engine
        engine.transition(EngineState.STOPPING)
        if self._cancel_orders_on_stop:
            await self._cancel_quietly()
        engine.transition(EngineState.STOPPED)

    async def _cancel_quietly(self) -> None:
        """Best effort: a venue that refuses cancels must not keep the engine from stopping.

        Logs which orders went and which still rest (also when a shutdown's deadline
        cancels this midway), so an operator knows what is left on the venue.
        """
        engine = self.engine
        resting = _open_order_ids(engine)
        try:
            await engine.cancel_open_orders()
        except LeaseLost:
            raise
        except Exception:
            log.exception("cancelling open orders failed",
                          extra={"connection_id": engine.connection_id})
        finally:
            left = _open_order_ids(engine)
            if resting:
                log.log(logging.WARNING if left else logging.INFO, "open orders cancelled",
                        extra={"connection_id": engine.connection_id,
                               "cancelled": ",".join(sorted(resting - left)),
                               "left_open": ",".join(sorted(left))})

    async def _wait_stop(self, seconds: float) -> bool:
        """Sleep `seconds` on the engine clock; True if a stop was asked for first."""
        if self._stop.is_set():
            return True
        return await self._race_stop(asyncio.ensure_future(self._clock.sleep(seconds)))

    async def _race_stop(self, other: asyncio.Future[Any]) -> bool:
        """Wait for `other` or a stop, ending `other` if left; True if stopped.

        `other` is ended by `cancel_and_wait`: cancelled again if it ignores its
        cancellation (a hand-written cancel and await waited for it for ever, and
        swallowed a cancellation of this task that came meanwhile). An error `other`
        raises as it ends is raised here, as awaiting it did; unless this task is being
        cancelled, whose cancellation goes first."""
        try:
            await asyncio.wait((self._stopped, other), return_when=asyncio.FIRST_COMPLETED)
        finally:
            left = not other.done()
            if left:
                await cancel_and_wait(other)
        if left and not other.cancelled() and (error := other.exception()) is not None:
            raise error
        return self._stop.is_set()


def _open_order_ids(engine: Engine) -> set[str]:
    return {order.client_order_id for order in engine.portfolio().open_orders}
