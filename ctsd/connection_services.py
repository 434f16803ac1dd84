"""Connection tests and health, wired once at start for `ctsd.daemon`.

Builds, on the open store and keyring: the exchange access (clients, shared
markets, the rate limiter), the tester, the batch processor, the health
reporter and the start-up checks; returns the gRPC services and what the
daemon must close. Nothing here decides anything: each part is configured
from `DaemonConfig` and handed to the next.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ctsd import __version__
from ctsd.api.connections import ConnectionServicer
from ctsd.api.health import SystemHealthServicer
from ctsd.config import DaemonConfig
from ctsd.connections.checks.batch import BatchProcessor, RetryPolicy
from ctsd.connections.checks.batch_tester import BatchSettings, BatchTester
from ctsd.connections.checks.results import TestResult
from ctsd.connections.checks.service import ConnectionTests
from ctsd.connections.checks.tester import ConnectionTester, ConnectionTesterSettings
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.manager import ConnectionManager
from ctsd.engine.activity import EngineActivity
from ctsd.exchanges.ccxt_internals import missing_classes
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.health.readiness import ReadinessMonitor
from ctsd.health.report import HealthReporter
from ctsd.health.startup import StartupChecks, StartupEnvironment
from ctsd.ratelimit import RateLimiter
from ctsd.server import Service, connection_service, health_service
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.result_history import ResultHistory
from ctsd.vault.master_key import locate_key
from ctsd.vault.sealer import Keyring
from ctsd.wiring.check_probes import ExchangeProbes, classify

Closer = Callable[[], Awaitable[None]]
Reloader = Callable[[DaemonConfig], Awaitable[None]]


@dataclass
class ConnectionServices:
    services: list[Service]
    checks: StartupChecks
    closers: list[Closer]
    reloaders: list[Reloader]
    """Run on SIGHUP with the new config: the rate limits of every client, open ones too."""
    connections: ConnectionManager
    """For the engine wiring (`ctsd.engine_services`): which connections may run engines."""
    exchanges: ExchangeClientFactory
    """Shared with engines, so they draw on the same rate limits."""
    credentials: CredentialResolver
    """Unseals a connection's key for engines that trade LIVE."""

    def readiness(self, set_serving: Callable[[bool], Awaitable[None]]) -> ReadinessMonitor:
        """A monitor that re-runs the local checks and drives grpc.health.v1 by them."""
        return ReadinessMonitor(self.checks, set_serving)


def build_connection_services(
    config: DaemonConfig,
    db: Database,
    keyring: Keyring,
    engines: EngineActivity,
    env: dict[str, str] | None = None,
    on_test_result: Callable[[TestResult], None] | None = None,
) -> ConnectionServices:
    registry = ExchangeRegistry.default()
    repository = ConnectionRepository(db)  # one instance: its index is the read model
    manager = ConnectionManager(
        repository, keyring, registry, active_engines=engines.active_connections
    )
    limiter = RateLimiter()
    exchanges = ExchangeClientFactory(
        limiter, registry, overrides=config.rate_limits, exchanges=config.exchanges)

    async def reload_rate_limits(new: DaemonConfig) -> None:
        exchanges.reload_rate_limits(new.rate_limits)

    resolver = CredentialResolver(repository, keyring)
    timeout = config.batch.item_timeout_s
    tester = ConnectionTester(
        resolver,
        ExchangeProbes(exchanges).open,
        classify,
        ConnectionTesterSettings(timeout_s=timeout),
        on_result=on_test_result,
    )
    batch = BatchTester(
        repository,
        tester,
        resolver,
        BatchProcessor(),
        BatchSettings(
            concurrency=config.batch.concurrency,
            item_timeout_s=timeout,
            retry=RetryPolicy(max_attempts=config.batch.max_attempts),
        ),
    )
    tests = ConnectionTests(repository, tester, batch)
    key = locate_key(
        config.state_dir, config.master_key_file, dict(os.environ if env is None else env)
    )
    checks = StartupChecks(
        StartupEnvironment(
            state_dir=config.state_dir,
            db=db,
            key_path=Path(key.path),
            key_id=keyring.current.key_id,
            exchange_ids=registry.ids(),
            missing_exchange_classes=partial(missing_classes, registry.ids()),
            endpoints={x: s.origin for x, s in config.exchanges.items() if s.origin},
        )
    )
    reporter = HealthReporter(
        __version__, repository, ResultHistory(db), db, exchanges.usage, engines=engines
    )
    return ConnectionServices(
        services=[
            connection_service(ConnectionServicer(manager, tests, engines)),
            health_service(SystemHealthServicer(reporter, checks)),
        ],
        checks=checks,
        closers=[limiter.close, exchanges.close],
        reloaders=[reload_rate_limits],
        connections=manager,
        exchanges=exchanges,
        credentials=resolver,
    )
