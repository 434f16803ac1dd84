"""The composition root: the one place the daemon's object graph is built.

`assemble` reads top to bottom in dependency order —

    config → store → vault → exchange registry → rate limiter (alone, or the fleet's in
      Redis: `ctsd.wiring.fleet`) → exchange client factory
      → connection use cases and key checks → engines → servicers → server

— and hands back what the process lifecycle (`ctsd.daemon`) starts and
stops. Nothing here decides anything: every part is configured from
`DaemonConfig` and given the parts it needs. What must be closed or told
about a reload is registered with the `Lifecycle` as it is built, so the
daemon closes it in reverse order.

The engine manager is built before the connection use cases: it needs only
the store and the exchange layer, and the connection side asks it which
connections run an engine (`EngineActivity`), so no late `attach` closes a
loop.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc
from grpc_health.v1.health import aio as health_aio

from ctsd import __version__
from ctsd.api.access_log import AccessLog
from ctsd.api.auth import Authenticator, AuthGuard
from ctsd.api.connections import ConnectionServicer
from ctsd.api.engines import EngineServicer
from ctsd.api.fleet import FleetServicer
from ctsd.api.health import SystemHealthServicer
from ctsd.api.request_rate import RequestRateGuard
from ctsd.api.services import connection_service, engine_service, fleet_service, health_service
from ctsd.clock import SystemClock
from ctsd.config import DaemonConfig
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.locks import ConnectionLocks
from ctsd.connections.manager import ConnectionManager
from ctsd.connections.ports import ConnectionStore
from ctsd.connections.predefined import apply_predefined
from ctsd.engine.activity import EngineActivity
from ctsd.engine.manager import EngineManager
from ctsd.errors import ConfigurationError
from ctsd.exchanges.ccxt_internals import missing_classes
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.health.readiness import ReadinessMonitor
from ctsd.health.report import HealthReporter
from ctsd.health.startup import StartupChecks, StartupEnvironment
from ctsd.ops.metrics import (
    ConnectionTestMetrics,
    EngineCollector,
    MetricsRegistry,
    RateLimitCollector,
    RpcMetrics,
    StreamCollector,
)
from ctsd.redaction import SECRETS
from ctsd.server import build_server
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from ctsd.store.fleet import SqlFleetStore
from ctsd.store.migrations import SCHEMA_VERSION
from ctsd.store.result_history import ResultHistory
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.store.store_url import url_password
from ctsd.strategies.registry import StrategyRegistry, discover
from ctsd.transport.tls import read_private_file
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key
from ctsd.wiring import fleet
from ctsd.wiring.engine_exchange import ExchangeEngineBackend
from ctsd.wiring.market_hub import HubOnDemand

if TYPE_CHECKING:
    from ctsd.connections.checks.results import TestResult
    from ctsd.connections.checks.service import ConnectionTests
    from ctsd.engine.market_ports import MarketDataSource
    from ctsd.exchanges.model import ConnectionTarget
    from ctsd.fleet.member import FleetMember
    from ctsd.wiring.engine_streams import StreamingMarketData

log = logging.getLogger("ctsd")

Closer = Callable[[], Awaitable[None]]
Reloader = Callable[[DaemonConfig], Awaitable[None]]


class Lifecycle(Protocol):
    """Where the parts that need a clean stop or a reload are registered (`ctsd.daemon`)."""

    def on_close(self, closer: Closer) -> None: ...

    def on_reload(self, reloader: Reloader) -> None: ...


@dataclass(frozen=True)
class Assembly:
    """The built daemon, not yet started: the lifecycle opens, binds and starts these."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer
    engines: EngineManager
    """Unopened: opening resumes the engines that were running."""
    fleet: FleetMember | None
    """In a fleet: opened after the engines (it adopts them under leases)."""
    readiness: ReadinessMonitor
    key_id: str


async def assemble(
    config: DaemonConfig, env: Mapping[str, str], lifecycle: Lifecycle,
    metrics: MetricsRegistry, set_serving: Callable[[bool], Awaitable[None]],
) -> Assembly:
    if (password := url_password(config.store.url)) is not None:
        SECRETS.remember("store", "password", password, is_key=False)  # never in a log line
    db = await Database.open(config.state_dir, config.store.url,
                             synchronous=config.store.sqlite_synchronous)
    lifecycle.on_close(db.close)
    key = locate_key(config.state_dir, config.master_key_file, dict(env))
    keyring = await open_keyring(key, SealedSecretRepository(db))

    registry = ExchangeRegistry.default()
    limiter = await fleet.rate_limiter(config.fleet)
    lifecycle.on_close(limiter.close)
    exchanges = ExchangeClientFactory(
        limiter, registry, overrides=config.rate_limits, exchanges=config.exchanges,
        account_key=fleet.account_key(config.fleet, keyring.current.material))
    lifecycle.on_close(exchanges.close)  # before the limiter its clients wait on
    lifecycle.on_reload(partial(_reload_rate_limits, exchanges))
    metrics.register(RateLimitCollector(exchanges.usage))

    connection_store = ConnectionRepository(db)  # one instance: its index is the read model
    credentials = CredentialResolver(connection_store, keyring, secrets=SECRETS)
    locks = ConnectionLocks()  # a delete and an engine start on one connection never interleave
    strategies = _strategies()
    clock = SystemClock()
    hub = HubOnDemand(exchanges.market_stream, clock,  # built by the first stream asked for
                      exchanges.connection_pacers)
    lifecycle.on_close(hub.close)  # after the engines (closed first), before the factory
    metrics.register(StreamCollector(hub.statuses))
    backend = ExchangeEngineBackend(
        connection_store, exchanges, credentials, streams=partial(_streaming, hub, clock))
    fleet_store = SqlFleetStore(db)
    member = _fleet_member(config, db, fleet_store, (connection_store.follow,))
    engines = EngineManager(
        SqlEngineStore(db, fleet_store), backend, strategies, locks=locks, clock=clock,
        leases=member, hub=member.hub if member else None,
        cancel_orders_on_shutdown=config.engines.cancel_orders_on_shutdown)
    metrics.register(EngineCollector(engines.list))
    activity = EngineActivity(engines.list, engines.engaged)
    connections = ConnectionManager(connection_store, keyring, registry,
                                    active_engines=activity.active_connections, locks=locks,
                                    secrets=SECRETS)
    on_result = ConnectionTestMetrics(metrics).observe if metrics.enabled else None
    tests = cache(partial(_connection_tests, config, connection_store, credentials, exchanges,
                          on_result, hub))  # built by the first test
    # The operator's [[connections]]: at start a refusal is exit 78, on SIGHUP a log line.
    await _declare_connections(connections, env, config)
    lifecycle.on_reload(partial(_redeclare_connections, connections, env))

    checks = StartupChecks(StartupEnvironment(
        state_dir=config.state_dir, db=db, key_path=Path(key.path),
        key_id=keyring.current.key_id, exchange_ids=registry.ids(),
        missing_exchange_classes=partial(missing_classes, registry.ids()),
        endpoints={x: s.origin for x, s in config.exchanges.items() if s.origin}))
    reporter = HealthReporter(__version__, connection_store, ResultHistory(db), db,
                              exchanges.usage, engines=activity, streams=hub.statuses)

    server, health = build_server([
        connection_service(ConnectionServicer(connections, tests, activity)),
        health_service(SystemHealthServicer(reporter, checks)),
        engine_service(EngineServicer(engines, strategies)),
        fleet_service(FleetServicer(member)),
    ], _interceptors(config, metrics))
    readiness = ReadinessMonitor(checks, set_serving)
    db.on_write_fault(readiness.poke)  # a store that stops taking writes: NOT_SERVING now
    return Assembly(server, health, engines, member, readiness, keyring.current.key_id.hex())


def _fleet_member(config: DaemonConfig, db: Database, store: SqlFleetStore,
                  followers: Sequence[Callable[[], Awaitable[None]]]) -> FleetMember | None:
    """This daemon as a fleet member when its store is shared (PostgreSQL) or the config
    says so; the id is new each run, so a restarted daemon never mistakes a lease of its
    predecessor's for its own (it adopts it like any orphan)."""
    settings = config.fleet
    if db.kind != "postgresql" and not settings.engine_leases:
        return None
    # Imported here: a daemon alone (the default SQLite store) never loads the fleet.
    from ctsd.fleet.member import FleetMember, LeaseSettings
    from ctsd.fleet.model import MemberInfo
    from ctsd.fleet.statuses import FleetHub
    from ctsd.store.engine_requests import SqlRequestStore
    from ctsd.store.engine_statuses import SqlStatusStore

    name = settings.member or socket.gethostname() or "ctsd"
    info = MemberInfo(f"{name}-{secrets.token_hex(3)}", settings.advertise or str(config.listen),
                      __version__, SCHEMA_VERSION)
    return FleetMember(store, info, SystemClock(), LeaseSettings.for_ttl(
        settings.engine_lease_ttl_s), FleetHub(SqlStatusStore(db), info.id), followers,
        requests=SqlRequestStore(db))


def _streaming(hub: HubOnDemand, clock: SystemClock, target: ConnectionTarget,
               rest: MarketDataSource) -> StreamingMarketData:
    """An engine's market data on a WebSocket connection: the first such engine builds the
    hub and imports the streaming side (`ctsd.wiring.engine_streams`)."""
    from ctsd.wiring.engine_streams import StreamingMarketData

    return StreamingMarketData(hub.get(), target, rest, clock)


def _strategies() -> StrategyRegistry:
    """The `cts.strategies` entry points; a plugin that fails to load is left out, loudly."""
    strategies = discover()
    for broken in strategies.broken:
        log.warning("strategy plugin left out",
                    extra={"strategy": broken.name, "target": broken.target,
                           "error": broken.error})
    return strategies


def _connection_tests(
    config: DaemonConfig, store: ConnectionStore, credentials: CredentialResolver,
    exchanges: ExchangeClientFactory, on_result: Callable[[TestResult], None] | None,
    hub: HubOnDemand,
) -> ConnectionTests:
    """Single and batch connection tests, on a client per test from the shared factory.

    Built by the first test a client asks for, with the modules it needs: most starts
    serve long before (or without) one."""
    from ctsd.connections.checks.batch import BatchProcessor
    from ctsd.connections.checks.batch_tester import BatchTester
    from ctsd.connections.checks.service import ConnectionTests
    from ctsd.connections.checks.settings import BatchSettings, RetryPolicy
    from ctsd.connections.checks.tester import ConnectionTester, ConnectionTesterSettings
    from ctsd.wiring.check_probes import ExchangeProbes, StreamProbes, classify

    timeout = config.batch.item_timeout_s
    tester = ConnectionTester(
        credentials, ExchangeProbes(exchanges).open, classify,
        ConnectionTesterSettings(timeout_s=timeout),
        on_result=on_result, streams=StreamProbes(exchanges, hub.get))
    batch = BatchTester(store, tester, credentials, BatchProcessor(), BatchSettings(
        concurrency=config.batch.concurrency, item_timeout_s=timeout,
        retry=RetryPolicy(max_attempts=config.batch.max_attempts)))
    return ConnectionTests(store, tester, batch)


def _interceptors(config: DaemonConfig, metrics: MetricsRegistry,
                  ) -> list[grpc.aio.ServerInterceptor]:
    """Outermost first: the access log sees every outcome, refusals included."""
    rpc_metrics = RpcMetrics(metrics)
    interceptors = [AccessLog(rpc_metrics).interceptor()]
    authenticator = Authenticator.from_config(config)
    if authenticator is not None:
        interceptors.append(AuthGuard(authenticator, rpc_metrics).interceptor())
    if config.calls_per_second_per_peer > 0:  # after auth: strangers are not counted
        interceptors.append(RequestRateGuard(config.calls_per_second_per_peer).interceptor())
    return interceptors


async def _declare_connections(connections: ConnectionManager, env: Mapping[str, str],
                               config: DaemonConfig) -> None:
    outcome = await apply_predefined(connections, config.connections, env, read_private_file)
    changed = {cid: what for cid, what in outcome.items() if what != "unchanged"}
    if changed:
        log.info("predefined connections applied", extra={"changes": changed})


async def _redeclare_connections(connections: ConnectionManager, env: Mapping[str, str],
                                 new: DaemonConfig) -> None:
    try:
        await _declare_connections(connections, env, new)
    except ConfigurationError as exc:
        log.error("predefined connections not applied", extra={"error": exc.message})


async def _reload_rate_limits(exchanges: ExchangeClientFactory, new: DaemonConfig) -> None:
    exchanges.reload_rate_limits(new.rate_limits)
