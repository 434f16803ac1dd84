"""`EngineRuns`: the engine runs one daemon owns, and the steps every path to one shares.

A start, a resume after a restart and a fleet's adoption all open the connection's
clients (LIVE only where they can place orders), build the engine for its mode,
launch its supervised run and, in the end, release it; in a fleet each holds the
engine's lease, taken and given back here. The state those paths share (the runs,
the claims, the leases held, the operations in flight) is set here, once.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from ctsd.clock import Clock, SystemClock
from ctsd.connections.locks import ConnectionLocks
from ctsd.engine.backend import EngineBackend, EngineResources
from ctsd.engine.config import TradingMode, ValidatedConfig, validate_config
from ctsd.engine.lease_ports import EngineLeases, Lease
from ctsd.engine.status import EngineState, EngineStatus, Failure, FailureCode
from ctsd.engine.store_ports import EngineRecord, EngineStore
from ctsd.engine.watch import StatusHub
from ctsd.errors import FailedPrecondition
from ctsd.strategies.registry import StrategyRegistry
from ctsd.tasks import Uninterruptible

if TYPE_CHECKING:
    from ctsd.engine.engine import Engine
    from ctsd.engine.supervisor import EngineRun, RestartPolicy

# The engine itself (`assembly`, brokers, sessions, `supervisor`) and the dry run are
# imported by the first engine built or tested: a daemon with none to resume reaches
# SERVING without them (`tests/test_start_path.py`).


def new_engine_id() -> str:
    return secrets.token_hex(4)


class EngineRuns:
    """The runs and their shared steps; `EngineManager` is made of the classes on this one."""

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

    async def _acquire(self, connection_id: str) -> Lease | None:
        if self._leases is None:
            return None
        lease = await self._leases.acquire(connection_id)
        self._held[connection_id] = lease
        return lease

    async def _give_back(self, connection_id: str) -> None:
        if self._leases is not None and self._held.pop(connection_id, None) is not None:
            await self._leases.release(connection_id)

    @staticmethod
    def _bare_status(record: EngineRecord, state: EngineState,
                     failure: Failure | None) -> EngineStatus:
        """The status of an engine that has no task: stopped, or unable to resume."""
        config = record.config
        return EngineStatus(record.connection_id, record.engine_id, state, config.mode,
                            config.strategy, config.symbols, failure=failure,
                            last_error=str(failure) if failure else record.last_error)
