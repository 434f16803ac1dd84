"""One connection's engine: session start (prepare, reconcile) and one cycle at a time.

A cycle is: read the market, book what the broker filled since last time,
check the daily loss, let the strategy decide, cancel what it no longer
wants, risk-check the rest, and place each accepted intent under its
deterministic client order id, written to the store as PENDING before it is sent —
or, LIVE outside a fleet, recorded once the venue answered, the store knowing its id
in advance (`ctsd.engine.sending`). A cycle that places nothing writes nothing, which
is what lets a thousand event-driven engines share two cores. What the broker read
without a request (a LIVE private stream's fills and order states) is booked at once
and stored with the cycle's next write — the first order's record, or the cycle's
end — not by a commit of its own between the market event and the order. The engine
never schedules itself: `EngineManager` owns the loop, the timing and the restarts, so
this class stays testable one cycle at a time.

On perpetuals (`ctsd.engine.perp_session`) a session first bounds the leverage
by the venue's tiers and, LIVE, applies position mode, margin mode and
leverage; each cycle reads the funding terms with the market, books funding
payments, and (LIVE) compares the venue's positions with the ledger
(`ctsd.engine.position_audit`): a difference is reported on the status and in
the log, then adopted or, by default, fails the engine closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ctsd.clock import Clock
from ctsd.engine.brokers.base import Broker
from ctsd.engine.config import TradingMode, ValidatedConfig
from ctsd.engine.intents import closes_position, resolved
from ctsd.engine.lease_ports import Fence, Lease
from ctsd.engine.ledger import Ledger
from ctsd.engine.margin_session import MarginSession
from ctsd.engine.market import DryRun, decide_dry, fetch_infos, fetch_snapshot
from ctsd.engine.market_ports import MarketDataSource, MarketEvents
from ctsd.engine.option_session import EXPIRY_TAG, OptionSession
from ctsd.engine.orders import Execution, Order, OrderStatus
from ctsd.engine.perp_session import PerpSession, check_spot, position_statuses
from ctsd.engine.perpetual import AppliedSetting, MismatchPolicy
from ctsd.engine.position_audit import PositionAudit
from ctsd.engine.position_check import PositionMismatch, StreamLag
from ctsd.engine.risk import RiskGate
from ctsd.engine.sending import Sender
from ctsd.engine.status import (
    DataSource,
    EngineState,
    EngineStatus,
    Failure,
    PositionStatus,
    check_transition,
)
from ctsd.engine.store_ports import EngineRecord, EngineStore
from ctsd.engine.wakes import Quieting
from ctsd.errors import LeaseLost
from ctsd.log_pacing import LinePacer
from ctsd.strategies.model import (
    CancelIntent,
    Intent,
    MarketInfo,
    MarketSnapshot,
    OrderIntent,
    Portfolio,
    PositionSide,
)
from ctsd.tasks import Interrupted, unless_set

log = logging.getLogger("ctsd.engine")

REFUSAL_LINES_EVERY_S = 60.0
"""An engine's refusal warnings (risk check, broker): at most one of each a minute."""


class RiskLimitBreached(Exception):
    """The daily loss limit was reached: the engine must stop, not restart."""


class Engine:
    def __init__(
        self, record: EngineRecord, validated: ValidatedConfig, broker: Broker,
        market_data: MarketDataSource, store: EngineStore, clock: Clock,
        publish: Callable[[EngineStatus], None], events: MarketEvents | None = None,
        perp: PerpSession | None = None, margin: MarginSession | None = None,
        options: OptionSession | None = None, lease: Lease | None = None,
    ) -> None:
        config = validated.config
        self.lease = lease
        """In a fleet: the engine's lease. Every store write carries its fence, and nothing
        is placed or cancelled unless the lease is in time (`Lease.check`)."""
        self._fence: Fence | None = lease.fence if lease is not None else None
        self.connection_id = record.connection_id
        self.engine_id = record.engine_id
        self.config = config
        self._strategy = validated.build_strategy()
        self._broker = broker
        self._market_data = market_data
        self.events = events
        """Set on a WebSocket connection: market events trigger the cycles."""
        self._store = store
        self._clock = clock
        self._publish = publish
        self._perp = perp
        self._margin = margin
        self._options = options
        self._hedge = perp is not None and perp.modes.hedge
        self._risk = RiskGate(config.risk, clock, hedge=self._hedge)
        self._quieting = Quieting(self._strategy, spot=perp is None and margin is None and (
            options is None), paper=config.mode is TradingMode.PAPER,
            daily_loss_limit=config.risk.daily_loss_limit)
        self._ledger = Ledger()
        self._unsaved: list[Execution] = []
        """Executions from the order stream already in the ledger, not yet in the store:
        they ride with the next write (`_book`, an order's PENDING record) or the cycle's
        end, not with a commit of their own between the market event and the order."""
        self._prepared = False
        self._sender = Sender(record, store, broker, clock, lease, self._save)
        lag = StreamLag(clock, events.wake_after if events is not None else None)
        self._audit = PositionAudit(broker, store, clock, lag, record.connection_id,
                                    config.symbols, self._hedge, self._book,
                                    self._book_funding, perp=perp, options=options)
        self._skipped_ticks = 0
        self._refused: dict[str, str] = {}
        """The last decision's refusals by the risk check, tag → reason: logged when they
        begin or change, not on every cycle they repeat (a spent order budget refused a
        grid's every level each cycle, a flood of identical warnings)."""
        self._lines = LinePacer(REFUSAL_LINES_EVERY_S, clock.monotonic)
        """Those lines, and the broker's refusals, at most one a minute each
        (`ctsd.log_pacing`)."""
        self._infos: dict[str, MarketInfo] = {}
        self._marks: dict[str, Decimal] = {}
        self._status = EngineStatus(record.connection_id, record.engine_id, EngineState.STOPPED,
                                    config.mode, config.strategy, config.symbols)

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def market_data(self) -> MarketDataSource:
        return self._market_data

    @property
    def perp(self) -> PerpSession | None:
        return self._perp

    def transition(self, state: EngineState, failure: Failure | None = None) -> None:
        check_transition(self._status.state, state)
        error = str(failure) if failure else self._status.last_error
        self._update(state=state, failure=failure, last_error=error)
        log.info("engine %s", state.value, extra={"connection_id": self.connection_id,
                                                   "engine_id": self.engine_id,
                                                   "reason": str(failure or "")})

    def follow_market(self) -> None:
        """Subscribe to the streams the strategy reads (a WebSocket connection only)."""
        if self.events is not None:
            self.events.follow(self.config.symbols, self._strategy.needs)

    def note_restart(self) -> None:
        self._update(restarts=self._status.restarts + 1)

    def _update(self, **changes: Any) -> None:
        self._status = replace(self._status, version=self._status.version + 1, **changes)
        self._publish(self._status)

    async def prepare(self) -> tuple[AppliedSetting, ...]:
        """Before the first session trades: what the connection's market cannot do is
        refused (FailedPrecondition, InvalidArgument naming the field), and on perpetuals
        the venue's settings are applied (a refusal raises the venue's reason). Once per
        engine: a restart's session reapplies nothing the first one set."""
        if self._prepared:
            return ()
        applied: tuple[AppliedSetting, ...] = ()
        if self._perp is not None:
            applied = await self._perp.prepare()
        elif self._margin is not None:
            applied = await self._margin.prepare()
        elif self._options is not None:
            await self._options.prepare(self._strategy.needs, self._clock.now_ms())
        else:
            check_spot(self.config, self._strategy.needs, f"connections/{self.connection_id}")
        self._prepared = True
        return applied

    async def recover_earlier(self, earlier: EngineRecord | None) -> None:
        """An explicit start, before its record replaces `earlier`: the order the engine
        stored there may have left unrecorded, booked (`Sender.recover_earlier`). Its
        record is what names that order: once replaced, nothing would look for it."""
        if earlier is None or earlier.engine_id == self.engine_id:
            return
        for execution in await self._sender.recover_earlier(earlier):
            await self._book(execution)

    async def reconcile(self) -> None:
        """Session start: rebuild the ledger from stored fills and funding, align open
        orders with the venue and (LIVE perpetuals) the ledger with the venue's positions.
        Any exception means the engine must not trade (fail closed)."""
        await self.prepare()
        self._unsaved.clear()  # the ledger is rebuilt from the store, the venue re-read
        fills = await self._store.list_fills(self.connection_id)
        funding = await self._store.list_funding(self.connection_id)
        self._ledger = Ledger(fills, funding)
        self._audit.agreed(max((f.timestamp_ms for f in fills), default=None))
        known = await self._store.list_orders(self.connection_id, open_only=True)
        await self._sender.reconcile(lambda: self._broker.reconcile(known, fills, funding),
                                     self._book)
        await self._book_funding()
        await self._check_positions()
        self._update(**self._figures())

    async def run_cycle(self, scheduled: float | None = None,
                        interrupt: asyncio.Event | None = None) -> bool:
        """One cycle; `scheduled` is the monotonic tick it was due at, for its lag.

        While the cycle only reads (venue state, market data) `interrupt` abandons
        it and the answer is False: a stop need not wait out a read starved of
        rate-limit budget. Once it decides, it runs to the end.
        """
        started = self._clock.monotonic()
        lag = max(0.0, started - scheduled) if scheduled is not None else 0.0
        interrupt = interrupt or asyncio.Event()
        try:
            if not self._infos:  # market facts are not reconciliation: a failure may retry
                self._infos = await unless_set(
                    interrupt, fetch_infos(self._market_data, self.config.symbols))
            executions = self._broker.refresh_now()
            if executions is None:
                executions = await unless_set(interrupt, self._broker.refresh())
            for execution in executions:
                self._hold(execution)
            streamed = self._snapshot_now()
            market = streamed if streamed is None or self._perp is None else (
                self._perp.known_funding(streamed, self._clock.monotonic()))
            if market is None:
                market = await unless_set(interrupt, self._read_market(streamed))
        except Interrupted:
            return False
        self._marks = {m.info.symbol: m.funding.mark if m.funding and m.funding.mark
                       else m.ticker.last for m in market.symbols}
        for execution in await self._broker.poll(market):
            await self._book(execution)
        await self._book_funding()
        await self._check_positions()
        await self._settle_expired()
        breach = self._risk.daily_loss_breach(self._ledger.pnl(self._marks, self._clock.now_ms()))
        if breach:
            raise RiskLimitBreached(breach)
        portfolio = self.portfolio()
        intents = self._strategy.decide(market, portfolio)
        await self._execute(intents, market, portfolio)
        await self._sender.finish()
        if self._unsaved:  # no order this cycle carried them to the store
            await self._save(())
        await self._after_cycle(interrupt)
        if self.events is not None and self._quieting.active:  # moves that may pass
            after = self.portfolio()
            self.events.quiet(*self._quieting.bands(
                market, intents, self._risk, after == portfolio, after,
                self._ledger.pnl(self._marks, self._clock.now_ms()), self._marks,
                self._broker.quiet_until()))
        now = self._clock.now_ms()
        self._update(cycles=self._status.cycles + 1, last_cycle_ms=now, heartbeat_ms=now,
                     last_cycle_duration_s=self._clock.monotonic() - started,
                     last_cycle_lag_s=lag, skipped_ticks=self._skipped_ticks,
                     **self._figures(), **self._source())
        return True

    async def _after_cycle(self, interrupt: asyncio.Event) -> None:
        """The broker's reads that only fell due by time (the funding history among
        them), once the orders left; a stop abandons them (they change nothing until
        complete, and the next session reconciles anyway)."""
        try:
            executions = await unless_set(interrupt, self._broker.after_cycle())
        except Interrupted:
            return
        for execution in executions:
            await self._book(execution)
        await self._book_funding()

    def _snapshot_now(self) -> MarketSnapshot | None:
        """The market from the streams' memory, when everything the strategy reads is
        there (no await: no task, no loop round trip per engine)."""
        if self.events is None:
            return None
        return self.events.snapshot_now(self._trading_infos(), self._strategy.needs,
                                        self._clock.now_ms())

    def _trading_infos(self) -> dict[str, MarketInfo]:
        """The markets the strategy sees: an expired option contract has none left."""
        if self._options is None:
            return self._infos
        expired = self._options.expired(self._clock.now_ms())
        return {s: i for s, i in self._infos.items() if s not in expired}

    async def _read_market(self, streamed: MarketSnapshot | None) -> MarketSnapshot:
        """The market over REST unless the streams had it; perpetuals add their funding
        terms and mark prices (over REST: no hub stream carries them yet; on a WebSocket
        connection only now and then, `PerpSession.known_funding`)."""
        market = streamed or await fetch_snapshot(self._market_data, self._trading_infos(),
                                                  self._strategy.needs, self._clock)
        if self._perp is None:
            return market
        return await self._perp.with_funding(market, self._clock.monotonic())

    def _source(self) -> dict[str, Any]:
        events = self.events
        if events is None:
            return {"data_source": DataSource.REST}
        fallbacks = events.fallbacks
        if events.streaming:
            return {"data_source": DataSource.STREAM, "data_problem": "",
                    "data_fallbacks": fallbacks, "quiet_events": events.quiet_events}
        return {"data_source": DataSource.REST_FALLBACK, "data_problem": events.problem,
                "data_fallbacks": fallbacks, "quiet_events": events.quiet_events}

    def note_skipped_ticks(self, count: int) -> None:
        """Counted now, published with the next cycle: no extra event for watchers."""
        self._skipped_ticks += count

    async def preview(self) -> DryRun:
        """This engine's next decision on the current market, placing nothing."""
        if not self._infos:
            self._infos = await fetch_infos(self._market_data, self.config.symbols)
        market = await self._read_market(None)
        fresh_gate = RiskGate(self.config.risk, self._clock, hedge=self._hedge)
        return decide_dry(self._strategy, market, self.portfolio(), fresh_gate)

    async def cancel_open_orders(self) -> None:
        """Asks for every cancel even when one fails, so one order the venue will not
        cancel leaves no others resting; then raises the first failure."""
        failures: list[Exception] = []
        for order in self._broker.open_orders():
            try:
                await self._book(await self._cancel(order))
            except LeaseLost:
                raise  # not ours to cancel any more
            except Exception as exc:  # re-raised below, after the other cancels
                failures.append(exc)
        self._update(**self._figures())
        if failures:
            raise failures[0]

    def portfolio(self) -> Portfolio:
        return Portfolio(self._ledger.positions(),
                         tuple(o.as_open_order() for o in self._broker.open_orders()),
                         self._broker.balances())

    async def _execute(self, intents: tuple[Intent, ...], market: MarketSnapshot,
                       portfolio: Portfolio) -> None:
        """`portfolio`: what the strategy decided on, reviewed as it is unless cancels
        changed it (no await in between otherwise)."""
        resting = {o.client_order_id: o for o in self._broker.open_orders()}
        for intent in intents:
            if isinstance(intent, CancelIntent) and intent.client_order_id in resting:
                canceled = await self._cancel(resting[intent.client_order_id])
                if self._sender.holds_cancels:  # stored with the next order's record
                    self._hold(canceled)
                else:
                    await self._book(canceled)
                portfolio = self.portfolio()
        placing = [x for x in intents if isinstance(x, OrderIntent)]
        verdicts = self._risk.review(placing, market, portfolio)
        rejected = 0
        refused: dict[str, str] = {}
        for intent, verdict in zip(placing, verdicts, strict=True):
            if not verdict.accepted:
                rejected += 1
                refused[intent.tag] = verdict.reason
                if self._refused.get(intent.tag) != verdict.reason and (
                        covered := self._lines.due("risk")):
                    log.warning("order rejected by risk check", extra={
                        "connection_id": self.connection_id, "tag": intent.tag,
                        "reason": verdict.reason, "held_back": covered - 1})
                continue
            execution = await self._place(intent)
            if execution.order.status is OrderStatus.REJECTED:
                rejected += 1
                if covered := self._lines.due("broker"):
                    log.warning("order rejected by broker", extra={
                        "connection_id": self.connection_id, "tag": intent.tag,
                        "reason": execution.order.reason, "held_back": covered - 1})
        self._refused = refused
        if rejected:
            self._update(orders_rejected=self._status.orders_rejected + rejected)

    async def _place(self, intent: OrderIntent) -> Execution:
        leg = resolved(intent, self._hedge)
        side = leg.position_side or PositionSide.BOTH
        closes = closes_position(intent, self._ledger.position(intent.symbol, side).amount)
        execution = await self._sender.send(intent, side, closes)
        await self._book(execution)
        if execution.order.status is not OrderStatus.REJECTED:
            self._status = replace(self._status, orders_placed=self._status.orders_placed + 1)
        return execution

    def _check_lease(self) -> None:
        if self.lease is not None:
            self.lease.check()

    async def _cancel(self, order: Order) -> Execution:
        """A cancel only while the lease holds: by this daemon's clock, then by the
        database's (a fenced write of the cycle begun), then by its clock again."""
        self._check_lease()
        if self._fence is not None:
            await self._store.save_cycle(self.connection_id, self._sender.round, self._fence)
        self._check_lease()
        return await self._broker.cancel(order)

    async def _save(self, executions: tuple[Execution, ...]) -> None:
        """`executions` stored after those held (one transaction, in order)."""
        held = len(self._unsaved)
        await self._store.save_executions(self.connection_id, [*self._unsaved, *executions],
                                          self._fence)
        del self._unsaved[:held]

    async def _book(self, execution: Execution) -> None:
        await self._save((execution,))
        self._apply(execution)

    def _hold(self, execution: Execution) -> None:
        """Booked now, stored with the next write. Safe to defer: the venue keeps what
        the stream reported (or a cancel answered), and a session that starts without it
        in the store reads it back in reconciliation (the order is stored, open, under its
        client order id). A LIVE cycle's cancels are held when sending ahead
        (`Sender.holds_cancels`)."""
        self._unsaved.append(execution)
        self._apply(execution)

    def _apply(self, execution: Execution) -> None:
        for fill in execution.fills:
            self._ledger.apply(fill)
        if execution.fills and execution.order.status is OrderStatus.FILLED and (
                execution.order.tag != EXPIRY_TAG):  # a settlement is no order filled
            self._status = replace(self._status, orders_filled=self._status.orders_filled + 1)
        if execution.order.tag == "liquidation" and execution.fills:  # the paper account's
            self._status = replace(self._status, liquidations=self._status.liquidations + 1)
            log.warning("position liquidated", extra={
                "connection_id": self.connection_id, "symbol": execution.order.symbol,
                "amount": str(execution.order.filled),
                "price": str(execution.order.average_price)})

    async def _book_funding(self) -> None:
        """Funding payments the broker found, stored (once per id) before they count."""
        fresh = tuple(p for p in self._broker.take_funding()
                      if not self._ledger.has_funding(p.funding_id))
        if not fresh:
            return
        await self._store.save_funding(self.connection_id, fresh, self._fence)
        for payment in fresh:
            self._ledger.apply_funding(payment)

    async def _settle_expired(self) -> None:
        """Options: orders still open on an expired contract are cancelled (the venue has
        expired them), and held contracts booked as settled once the venue says at what
        price (`ctsd.engine.option_session`)."""
        if self._options is None:
            return
        now = self._clock.now_ms()
        expired = self._options.expired(now)
        if not expired:
            return
        for order in [o for o in self._broker.open_orders() if o.symbol in expired]:
            await self._book(await self._broker.cancel(order))
        for execution in await self._options.settlements(
                self.engine_id, self._sender.round, self._ledger.positions(), now):
            await self._book(execution)

    async def _check_positions(self) -> None:
        """LIVE perpetuals and options: a difference between the venue's positions and the
        ledger, once confirmed (`ctsd.engine.position_audit`), is reported on the status
        and in the log, and adopted or failed closed as configured."""
        found = await self._audit.check(self._ledger, self._marks)
        if found is None:
            return
        self._update(position_differences=self._status.position_differences + 1,
                     last_position_difference=found.text,
                     liquidations=self._status.liquidations + found.liquidated)
        policy = self.config.on_position_mismatch
        log.warning("venue position differs from the ledger", extra={
            "connection_id": self.connection_id, "difference": found.text,
            "policy": policy.value})
        if policy is MismatchPolicy.STOP:
            raise PositionMismatch(found.text)
        for execution in found.adoption:
            await self._book(execution)
        self._audit.agreed()

    def _figures(self) -> dict[str, Any]:
        """The status fields derived from the ledger and the broker's book."""
        pnl = self._ledger.pnl(self._marks, self._clock.now_ms())
        positions: tuple[PositionStatus, ...]
        if self._perp is None:
            positions = tuple(
                PositionStatus(p.symbol, p.amount, p.avg_price,
                               (self._marks[p.symbol] - p.avg_price) * p.amount
                               if p.symbol in self._marks else Decimal(0))
                for p in self._ledger.positions())
        else:
            positions = position_statuses(self._ledger, self._broker.positions(), self._marks)
        return {"open_orders": len(self._broker.open_orders()), "positions": positions,
                "realized_pnl": pnl.realized, "unrealized_pnl": pnl.unrealized,
                "fees": self._ledger.fees, "funding_pnl": self._ledger.funding,
                "interest_pnl": self._ledger.interest}
