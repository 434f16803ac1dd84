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
from pathlib import Path

from ctsd import __version__
from ctsd.api.connections import ConnectionServicer
from ctsd.api.health import SystemHealthServicer
from ctsd.config import DaemonConfig
from ctsd.connections.batch import BatchProcessor, RetryPolicy
from ctsd.connections.batch_tester import BatchSettings, BatchTester
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.exchange_probe import ExchangeAccess
from ctsd.connections.manager import ConnectionManager
from ctsd.connections.results import TestResult
from ctsd.connections.test_service import ConnectionTests
from ctsd.connections.tester import ConnectionTester, ConnectionTesterSettings
from ctsd.engine.activity import EngineActivity
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.health.readiness import ReadinessMonitor
from ctsd.health.report import HealthReporter
from ctsd.health.startup import StartupChecks, StartupEnvironment
from ctsd.server import Service, connection_service, health_service
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.test_history import ResultHistory
from ctsd.vault.master_key import locate_key
from ctsd.vault.sealer import Keyring

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
    exchanges: ExchangeAccess
    """Its client factory is shared with engines, so they draw on the same rate limits."""
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
    exchanges = ExchangeAccess.build(
        registry, dict(config.exchange_endpoints), overrides=config.rate_limits
    )

    async def reload_rate_limits(new: DaemonConfig) -> None:
        exchanges.relimit(new.rate_limits)

    resolver = CredentialResolver(repository, keyring)
    timeout = config.batch.item_timeout_s
    tester = ConnectionTester(
        resolver,
        exchanges.open_probe,
        exchanges.classify,
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
            endpoints=dict(config.exchange_endpoints),
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
        closers=[exchanges.close],
        reloaders=[reload_rate_limits],
        connections=manager,
        exchanges=exchanges,
        credentials=resolver,
    )
