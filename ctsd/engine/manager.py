"""`EngineManager`: the one owner of every engine task, at most one engine per connection.

It validates configs, opens each connection's clients through the injected
`EngineBackend`, picks the broker for the mode (PAPER or LIVE, separate
classes), persists the desired state, resumes engines that should be running
after a daemon restart, fans status out to watchers, and stops everything at
shutdown. It is transport-agnostic: the gRPC servicer calls these methods and
translates `ctsd.errors` at its edge.

Stopping by request cancels the engine's open orders. A daemon shutdown leaves
them resting by default, because the engine resumes and reconciles them on the
next start; with `cancel_orders_on_shutdown` it cancels them first, the way
StopEngine does, within the same `shutdown_grace_s` budget as the last cycle
(an engine still busy at the deadline is aborted, and says what stayed open).
Either way the desired state stays RUNNING: the engine resumes after the restart.

In a fleet (`leases` given, `ctsd.fleet`) an engine runs only under its lease:
a start takes it, a stop gives it back, and engines that should run are not
resumed at `open` but adopted one by one (`adopt`) by whichever daemon takes
their expired lease -- the same resume path, run by another daemon. A daemon
that loses a lease ends that engine at once (`relinquish`), touching nothing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING

from ctsd import fencing
from ctsd.clock import Clock, SystemClock
from ctsd.connections.locks import ConnectionLocks
from ctsd.engine.backend import EngineBackend, EngineResources
from ctsd.engine.config import EngineConfig, TradingMode, ValidatedConfig, validate_config
from ctsd.engine.lease_ports import EngineLeases, Lease
from ctsd.engine.market_ports import MarketDataSource, PerpetualMarketData
from ctsd.engine.orders import Fill, Order
from ctsd.engine.paging import Listing, listing, page_request
from ctsd.engine.status import EngineState, EngineStatus, Failure, FailureCode
from ctsd.engine.store_ports import DesiredState, EngineRecord, EngineStore
from ctsd.engine.watch import StatusHub, Watcher
from ctsd.errors import FailedPrecondition, NotFound
from ctsd.strategies.model import Balance, MarketKind, Portfolio
from ctsd.strategies.registry import StrategyRegistry
from ctsd.tasks import Uninterruptible, cancel_and_wait

if TYPE_CHECKING:
    from ctsd.engine.engine import Engine
    from ctsd.engine.market import DryRun
    from ctsd.engine.supervisor import EngineRun, RestartPolicy

# The engine itself (`assembly`, brokers, sessions, `supervisor`) and the dry run are
# imported by the first engine built or tested: a daemon with none to resume reaches
# SERVING without them (`tests/test_start_path.py`).

log = logging.getLogger("ctsd.engine")


def new_engine_id() -> str:
    return secrets.token_hex(4)


@dataclass(frozen=True)
class CoordinatorHealth:
    engines: int
    running: int
    failed: int
    stalled: tuple[str, ...]
    """Running engines whose last heartbeat is older than three intervals (plus the idle
    timeout on a WebSocket connection: `EngineManager._patience_s`)."""
    watchers: int
    restarts: int


class EngineManager:
    def __init__(
        self, store: EngineStore, backend: EngineBackend, strategies: StrategyRegistry, *,
        clock: Clock | None = None, hub: StatusHub | None = None,
        policy: RestartPolicy | None = None, engine_ids: Callable[[], str] = new_engine_id,
        heartbeat_s: float = 5.0, shutdown_grace_s: float = 10.0,
        locks: ConnectionLocks | None = None, cancel_orders_on_shutdown: bool = False,
        funding_poll_s: float | None = None, leases: EngineLeases | None = None,
    ) -> None:
        self._store = store
        self._leases = leases
        self._held: dict[str, Lease] = {}
        """Fleet: the lease of each engine this daemon owns (running or failed here)."""
        self._locks = locks or ConnectionLocks()  # shared with connection deletes
        self._backend = backend
        self._strategies = strategies
        self._clock = clock or SystemClock()
        self._hub = hub or StatusHub()
        self._policy = policy
        """None: `RestartPolicy()`, the supervisor's defaults."""
        self._engine_ids = engine_ids
        self._heartbeat_s = heartbeat_s
        self._grace_s = shutdown_grace_s
        self._cancel_on_shutdown = cancel_orders_on_shutdown
        self._funding_poll_s = funding_poll_s
        """None: the live perpetuals broker's default."""
        self._runs: dict[str, EngineRun] = {}
        self._claimed: set[str] = set()
        self._heartbeats: asyncio.Task[None] | None = None
        self._operations = Uninterruptible()

    async def __aenter__(self) -> EngineManager:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def open(self) -> None:
        """Resume every engine whose desired state is RUNNING, then start heartbeats."""
        for record in await self._store.load_engines():
            if record.desired is DesiredState.RUNNING:
                if self._leases is None:  # in a fleet, adopted under a lease (`adopt`)
                    await self._resume(record)
            else:
                self._hub.publish(self._bare_status(record, EngineState.STOPPED, None))
        self._heartbeats = asyncio.create_task(self._beat(), name="engine-heartbeats")

    async def close(self) -> None:
        """Daemon shutdown: finish cycles in flight and, if configured, cancel open orders,
        all within the grace period; engines still busy after it are aborted."""
        await self._operations.wait()  # starts and stops in flight finish first
        if self._heartbeats is not None:
            await cancel_and_wait(self._heartbeats)
        runs = [run for run in self._runs.values() if run.active]
        stopping = [asyncio.ensure_future(run.stop(cancel_orders=self._cancel_on_shutdown))
                    for run in runs]
        if stopping:
            _, late = await asyncio.wait(stopping, timeout=self._grace_s)
            for run in runs:
                if run.active:
                    log.warning("engine did not stop within the shutdown grace; aborted",
                                extra={"connection_id": run.engine.connection_id,
                                       "grace_s": self._grace_s})
                    run.abort()
            for task in late:
                task.cancel()
            await asyncio.gather(*stopping, *(r.task for r in runs if r.task),
                                 return_exceptions=True)
        for connection_id in list(self._runs):
            await self._release(connection_id)

    async def start(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        """Starts an engine (in a fleet, on the member the load picks); once begun, the
        start runs to the end even if the caller is cancelled, so the stored desired
        state and the engine running always agree."""
        validated = validate_config(config, self._strategies)
        self._check_free(connection_id)
        if self._leases is not None:
            placed = await self._operations.run(self._leases.place(connection_id, config),
                                                f"engine-place:{connection_id}")
            if placed is not None:
                return placed
        return await self._start_here(connection_id, validated)

    async def start_here(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        """Fleet: a start another member placed here."""
        return await self._start_here(connection_id, validate_config(config, self._strategies))

    async def _start_here(self, connection_id: str, validated: ValidatedConfig) -> EngineStatus:
        self._claim(connection_id)
        status = await self._operations.run(self._start(connection_id, validated),
                                            f"engine-start:{connection_id}")
        if self._leases is None:
            return status
        return self._hub.get(connection_id) or status  # as the fleet sees it: its owner

    async def _start(self, connection_id: str, validated: ValidatedConfig) -> EngineStatus:
        config = validated.config
        try:
            # Held until the engine is listed, so a delete of the connection either
            # finishes first (and _open fails) or sees the engine and refuses.
            async with self._locks.lock(connection_id):
                await self._release(connection_id)
                lease = await self._acquire(connection_id)
                try:
                    resources = await self._open(connection_id, config.mode)
                except BaseException:
                    await self._give_back(connection_id)
                    raise
                record = EngineRecord(
                    connection_id, self._engine_ids(), config, DesiredState.RUNNING
                )
                try:
                    # What the market cannot do, and the venue's settings, before anything
                    # is stored or placed: a refusal fails the start itself.
                    engine = self._build(record, validated, resources, lease)
                    await engine.prepare()
                    await engine.recover_earlier(await self._stored(connection_id))
                    await self._store.create_engine(record)
                except BaseException:
                    await self._backend.close(connection_id, resources)
                    await self._give_back(connection_id)
                    raise
                run = self._launch(engine, resources)
        finally:
            self._claimed.discard(connection_id)
        return run.engine.status

    async def stop(self, connection_id: str) -> EngineStatus:
        """Stops the engine (in a fleet, on the member that owns it); like `start`, runs
        to the end once begun."""
        if self._hub.get(connection_id) is None:
            raise NotFound(f"no engine on connections/{connection_id}")
        if self._leases is not None and connection_id not in self._runs | self._held:
            stopped = await self._operations.run(self._leases.stop_elsewhere(connection_id),
                                                 f"engine-stop-elsewhere:{connection_id}")
            if stopped is not None:
                return stopped
        return await self.stop_here(connection_id)

    async def stop_here(self, connection_id: str) -> EngineStatus:
        """Stops the engine as this member knows it (in a fleet: a stop sent here)."""
        if self._hub.get(connection_id) is None:
            raise NotFound(f"no engine on connections/{connection_id}")
        return await self._operations.run(self._stop(connection_id),
                                          f"engine-stop:{connection_id}")

    async def _stop(self, connection_id: str) -> EngineStatus:
        # The lock a start holds: a stop never reads the engine a start is replacing.
        async with self._locks.lock(connection_id):
            run = self._runs.get(connection_id)
            status = self._hub.get(connection_id)
            if status is None:
                raise NotFound(f"no engine on connections/{connection_id}")
            held = self._held.get(connection_id)
            await self._store.set_desired(connection_id, DesiredState.STOPPED,
                                          status.last_error, held.fence if held else None)
            if run is None:  # resume failed before an engine existed
                stopped = self._bare_status_from(status, EngineState.STOPPED)
                self._hub.publish(stopped)
                await self._give_back(connection_id)
                return stopped
            await run.stop(cancel_orders=True)
            await self._release(connection_id)
            await self._give_back(connection_id)
            return run.engine.status

    async def adopt(self, connection_id: str, lease: Lease) -> None:
        """Fleet: resume the engine whose lease this daemon just took -- the resume path
        after a restart (reconcile with the venue first, fail closed), run by another
        daemon. Runs to the end once begun, like `start`."""
        await self._operations.run(self._adopt(connection_id, lease),
                                   f"engine-adopt:{connection_id}")

    async def _adopt(self, connection_id: str, lease: Lease) -> None:
        async with self._locks.lock(connection_id):
            await self._release(connection_id)  # a run here that lost the lease before
            self._held[connection_id] = lease
            record = await self._stored(connection_id)
            if record is None or record.desired is not DesiredState.RUNNING:
                await self._give_back(connection_id)  # stopped since the lease was taken
                return
            await self._resume(record, lease)

    async def finish_stop(self, connection_id: str, lease: Lease) -> None:
        """Fleet: an engine stopped while no daemon ran it still has orders open: resume
        it here under `lease` (reconcile first) and stop it at once, cancelling them."""
        await self._operations.run(self._finish_stop(connection_id, lease),
                                   f"engine-finish-stop:{connection_id}")

    async def _finish_stop(self, connection_id: str, lease: Lease) -> None:
        async with self._locks.lock(connection_id):
            await self._release(connection_id)
            self._held[connection_id] = lease
            try:
                record = await self._stored(connection_id)
                if record is not None and record.desired is DesiredState.STOPPED:
                    await self._cancel_left_open(record, lease)
            except Exception:  # the fleet tries again later; the orders stay listed open
                log.exception("cancelling a stopped engine's orders failed",
                              extra={"connection_id": connection_id})
            finally:
                await self._give_back(connection_id)

    async def _cancel_left_open(self, record: EngineRecord, lease: Lease) -> None:
        """The engine's session start (reconcile with the venue) and its stop's cancels,
        without a cycle in between, under the lease."""
        validated = validate_config(record.config, self._strategies)
        resources = await self._open(record.connection_id, record.config.mode)
        try:
            engine = self._build(record, validated, resources, lease)
            with fencing.guarded(lease):
                await engine.reconcile()
                await engine.cancel_open_orders()
        finally:
            await self._backend.close(record.connection_id, resources)

    async def relinquish(self, connection_id: str) -> None:
        """Fleet: the lease is lost (or handed over by a drain): end the engine here at once,
        without cancelling its orders or writing anything -- they are the next owner's."""
        await self._operations.run(self._relinquish(connection_id),
                                   f"engine-relinquish:{connection_id}")

    async def _relinquish(self, connection_id: str) -> None:
        async with self._locks.lock(connection_id):
            self._held.pop(connection_id, None)
            run = self._runs.get(connection_id)
            if run is not None:
                await run.stop(cancel_orders=False)
                await self._release(connection_id)

    def owned(self) -> dict[str, Lease]:
        """Fleet: the engines this daemon holds the lease of."""
        return dict(self._held)

    async def _acquire(self, connection_id: str) -> Lease | None:
        if self._leases is None:
            return None
        lease = await self._leases.acquire(connection_id)
        self._held[connection_id] = lease
        return lease

    async def _give_back(self, connection_id: str) -> None:
        if self._leases is not None and self._held.pop(connection_id, None) is not None:
            await self._leases.release(connection_id)

    async def idle(self) -> None:
        """Until no start or stop is in flight (one whose caller left included)."""
        await self._operations.wait()

    def engaged(self) -> set[str]:
        """Connections an engine may trade on: starting, running, or failed and waiting
        to restart (its task is alive)."""
        return self._claimed | {cid for cid, run in self._runs.items() if run.active}

    def get(self, connection_id: str) -> EngineStatus:
        status = self._hub.get(connection_id)
        if status is None:
            raise NotFound(f"no engine on connections/{connection_id}")
        return status

    def list(self) -> tuple[EngineStatus, ...]:
        return self._hub.snapshot()

    async def list_orders(self, connection_id: str, *, open_only: bool, page_size: int,
                          page_token: str) -> Listing[Order]:
        """A page of the engine's orders (all, or the open ones), oldest first."""
        self.get(connection_id)  # NotFound for a connection without an engine
        after, size = page_request(page_size, page_token)
        return listing(await self._store.page_orders(
            connection_id, open_only=open_only, after=after, limit=size))

    async def list_trades(self, connection_id: str, *, page_size: int,
                          page_token: str) -> Listing[Fill]:
        """A page of the engine's fills, oldest first."""
        self.get(connection_id)
        after, size = page_request(page_size, page_token)
        return listing(await self._store.page_fills(connection_id, after=after, limit=size))

    def watch(self) -> Watcher:
        """A bounded subscription: a snapshot first, then changes and heartbeats. Close it."""
        return self._hub.subscribe()

    @property
    def watchers(self) -> int:
        return self._hub.watcher_count

    async def test(self, connection_id: str, config: EngineConfig | None = None) -> DryRun:
        """One dry cycle, nothing placed: the running engine's, or `config`'s on this connection."""
        run = self._runs.get(connection_id)
        if config is None:
            if run is None or not run.active:
                raise FailedPrecondition(
                    f"no engine is running on connections/{connection_id}; give a config to test")
            return await run.engine.preview()
        validated = validate_config(config, self._strategies)
        if run is not None and run.active:
            perp = run.engine.perp
            return await self._dry(validated, run.engine.market_data, run.engine.portfolio(),
                                   perp.market if perp else None,
                                   perp is not None and perp.modes.hedge)
        resources = await self._backend.open(connection_id, TradingMode.PAPER)
        try:
            balances = tuple(Balance(a, v, v) for a, v in config.paper.balances)
            perps = resources.kind is MarketKind.PERPETUAL
            return await self._dry(validated, resources.market_data, Portfolio(balances=balances),
                                   resources.perp_market if perps else None,
                                   perps and resources.modes.hedge)
        finally:
            await self._backend.close(connection_id, resources)

    def health(self) -> CoordinatorHealth:
        statuses = self._hub.snapshot()
        now_ms = self._clock.now_ms()
        running = [s for s in statuses if s.state is EngineState.RUNNING]
        stalled = tuple(
            s.connection_id for s in running
            if s.heartbeat_ms and now_ms - s.heartbeat_ms > 1_000 * self._patience_s(s))
        return CoordinatorHealth(
            len(statuses), len(running), sum(s.state is EngineState.FAILED for s in statuses),
            stalled, self._hub.watcher_count, sum(s.restarts for s in statuses))

    def _patience_s(self, status: EngineStatus) -> float:
        """How old a running engine's heartbeat may grow: three intervals, and on a
        WebSocket connection the idle timeout too (with no market event it may wake, or
        its quiet bands let it sleep, for `idle_cycles` intervals: `ctsd.engine.wakes`)."""
        run = self._runs.get(status.connection_id)
        if run is None:
            return 180.0
        from ctsd.engine.supervisor import RestartPolicy  # loaded: an engine runs here

        interval = run.engine.config.interval_s
        idle = (self._policy or RestartPolicy()).idle_cycles if (
            run.engine.events is not None) else 0
        return interval * (3 + idle)

    async def _dry(self, validated: ValidatedConfig, market_data: MarketDataSource,
                   portfolio: Portfolio, perp_market: PerpetualMarketData | None = None,
                   hedge: bool = False) -> DryRun:
        from ctsd.engine.market import decide_dry, fetch_infos, fetch_snapshot
        from ctsd.engine.perp_session import with_funding
        from ctsd.engine.risk import RiskGate

        strategy = validated.build_strategy()
        infos = await fetch_infos(market_data, validated.config.symbols)
        market = await fetch_snapshot(market_data, infos, strategy.needs, self._clock)
        if perp_market is not None:
            market = await with_funding(perp_market, market)
        gate = RiskGate(validated.config.risk, self._clock, hedge=hedge)
        return decide_dry(strategy, market, portfolio, gate)

    def _check_free(self, connection_id: str) -> None:
        run = self._runs.get(connection_id)
        if connection_id in self._claimed or (run is not None and run.active):
            raise FailedPrecondition(
                f"an engine is already running on connections/{connection_id}; stop it first")

    def _claim(self, connection_id: str) -> None:
        self._check_free(connection_id)
        self._claimed.add(connection_id)

    async def _open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        resources = await self._backend.open(connection_id, mode)
        if mode is TradingMode.LIVE and resources.orders is None:
            await self._backend.close(connection_id, resources)
            raise FailedPrecondition(f"connections/{connection_id} cannot place live orders")
        return resources

    def _build(self, record: EngineRecord, validated: ValidatedConfig,
               resources: EngineResources, lease: Lease | None) -> Engine:
        from ctsd.engine.assembly import assemble_engine
        from ctsd.engine.brokers.live_perp import DEFAULT_FUNDING_POLL_S

        poll_s = DEFAULT_FUNDING_POLL_S if self._funding_poll_s is None else self._funding_poll_s
        return assemble_engine(record, validated, resources, self._store, self._clock,
                               self._hub.publish, funding_poll_s=poll_s, lease=lease)

    def _launch(self, engine: Engine, resources: EngineResources) -> EngineRun:
        from ctsd.engine.supervisor import EngineRun, RestartPolicy

        run = EngineRun(engine, self._store, self._clock, self._policy or RestartPolicy(),
                        resources)
        self._runs[engine.connection_id] = run
        run.launch()
        return run

    async def _resume(self, record: EngineRecord, lease: Lease | None = None) -> None:
        from ctsd.engine.supervisor import describe  # an engine resumes: it is needed anyway

        try:
            validated = validate_config(record.config, self._strategies)
            resources = await self._open(record.connection_id, record.config.mode)
        except Exception as exc:  # one engine that cannot resume must not stop the others
            failure = Failure(FailureCode.START_FAILED, describe(exc))
            self._hub.publish(self._bare_status(record, EngineState.FAILED, failure))
            return
        try:
            engine = self._build(record, validated, resources, lease)
        except Exception as exc:
            await self._backend.close(record.connection_id, resources)
            failure = Failure(FailureCode.START_FAILED, describe(exc))
            self._hub.publish(self._bare_status(record, EngineState.FAILED, failure))
            return
        self._launch(engine, resources)

    async def _stored(self, connection_id: str) -> EngineRecord | None:
        return await self._store.load_engine(connection_id)

    async def _release(self, connection_id: str) -> None:
        run = self._runs.pop(connection_id, None)
        if run is not None:
            await self._backend.close(connection_id, run.resources)

    async def _beat(self) -> None:
        while True:
            await self._clock.sleep(self._heartbeat_s)
            self._hub.heartbeat(self._clock.now_ms())

    @staticmethod
    def _bare_status(record: EngineRecord, state: EngineState,
                     failure: Failure | None) -> EngineStatus:
        """The status of an engine that has no task: stopped, or unable to resume."""
        config = record.config
        return EngineStatus(record.connection_id, record.engine_id, state, config.mode,
                            config.strategy, config.symbols, failure=failure,
                            last_error=str(failure) if failure else record.last_error)

    @staticmethod
    def _bare_status_from(status: EngineStatus, state: EngineState) -> EngineStatus:
        return replace(status, state=state, failure=None, version=status.version + 1)
