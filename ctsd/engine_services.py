"""The trade engine, wired once at start for `ctsd.daemon`.

Builds the EngineManager on the SQL store, the strategies found through the
`cts.strategies` entry points, and the exchange backend that shares the
connection layer's client factory (and so its rate limits) and its credential
resolver (LIVE engines unseal their key through it). The manager is
returned unopened: the daemon opens it (which resumes engines that were
running) once the store is migrated, and closes it before the exchange
clients it polls through.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ctsd.api.engines import EngineServicer
from ctsd.config import EnginesConfig
from ctsd.connections.credentials import CredentialResolver
from ctsd.connections.manager import ConnectionManager
from ctsd.engine.manager import EngineManager
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.server import Service, engine_service
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.registry import discover
from ctsd.wiring.engine_exchange import ExchangeEngineBackend

log = logging.getLogger("ctsd.engine")


@dataclass(frozen=True)
class EngineServices:
    service: Service
    manager: EngineManager


def build_engine_services(
    db: Database, connections: ConnectionManager, factory: ExchangeClientFactory,
    credentials: CredentialResolver | None = None, settings: EnginesConfig | None = None,
) -> EngineServices:
    strategies = discover()
    for broken in strategies.broken:
        log.warning("strategy plugin left out",
                    extra={"strategy": broken.name, "target": broken.target,
                           "error": broken.error})
    store = SqlEngineStore(db)
    backend = ExchangeEngineBackend(connections, factory, credentials)
    settings = settings or EnginesConfig()
    manager = EngineManager(store, backend, strategies, locks=connections.locks,
                            cancel_orders_on_shutdown=settings.cancel_orders_on_shutdown)
    return EngineServices(engine_service(EngineServicer(manager, store, strategies)), manager)
