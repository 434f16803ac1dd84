"""Wires the daemon together and runs it until a signal says stop.

Nothing here decides anything: configuration, store, vault, domain and API
are built by their own modules; this file orders their start and stop.

Lifecycle: STARTING (store open, keyring, port bound) → SERVING (health
SERVING, systemd READY=1, watchdog pinging) → STOPPING (on SIGTERM/SIGINT:
STOPPING=1, health NOT_SERVING, new calls refused, in-flight calls given
`grace_seconds`, then every closer in reverse order of registration) →
exit 0. SIGHUP re-reads the configuration while serving.

Subsystems that need a clean stop or a reload register with `on_close()`
and `on_reload()`: the engine manager plugs its "stop every engine" in with
`on_close`, rate limiters their new limits with `on_reload`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from ctsd import __version__, logs
from ctsd.api.access_log import AccessLog
from ctsd.api.auth import Authenticator, AuthGuard
from ctsd.api.request_rate import RequestRateGuard
from ctsd.config import DaemonConfig
from ctsd.connection_services import build_connection_services
from ctsd.engine.activity import EngineActivity
from ctsd.engine.manager import EngineManager
from ctsd.engine_services import build_engine_services
from ctsd.errors import ConfigurationError
from ctsd.health.readiness import ReadinessMonitor
from ctsd.instance_lock import InstanceLock
from ctsd.ops.metrics import (
    ConnectionTestMetrics,
    EngineCollector,
    MetricsEndpoint,
    MetricsRegistry,
    RateLimitCollector,
    RpcMetrics,
)
from ctsd.ops.sd_notify import Notifier, watchdog_interval
from ctsd.ops.watchdog import Watchdog
from ctsd.server import (
    SERVICE_NAMES,
    Service,
    bind,
    build_server,
    restrict_socket,
)
from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.transport.tls import server_credentials
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key
from ctsd.vault.sealer import Keyring

log = logging.getLogger("ctsd")

Closer = Callable[[], Awaitable[None]]
Reloader = Callable[[DaemonConfig], Awaitable[None]]


def prepare_state_dir(config: DaemonConfig) -> None:
    os.umask(0o077)  # every file we create (db, wal, key, socket) is owner-only
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        reload_config: Callable[[], DaemonConfig] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self._reload_config = reload_config
        self._env = dict(os.environ) if env is None else env
        self.notifier = Notifier(self._env)
        self.metrics = MetricsRegistry.exporting() if config.metrics_listen else MetricsRegistry()
        self._lock = InstanceLock(config.state_dir)
        self._closers: list[Closer] = []
        self._reloaders: list[Reloader] = []
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._health: health_aio.HealthServicer | None = None
        self._readiness: ReadinessMonitor | None = None
        self._engines: EngineManager | None = None
        self._key_id = ""
        self.address = ""

    def on_close(self, closer: Closer) -> None:
        """Run `closer` on the way out, after in-flight RPCs; last registered runs first."""
        self._closers.append(closer)

    def on_reload(self, reloader: Reloader) -> None:
        """Run `reloader(new_config)` on SIGHUP, after the log level has changed."""
        self._reloaders.append(reloader)

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        started = time.monotonic()
        prepare_state_dir(self.config)
        self._lock.acquire("daemon")
        watchdog: Watchdog | None = None
        try:
            self.notifier.status("opening the store")
            db = await Database.open(self.config.state_dir)
            self.on_close(db.close)
            server = await self._start(db)
            watchdog = self._start_watchdog()
            self.notifier.ready(f"serving on {self.address}")
            log.info("serving", extra=self._serving_fields(started))
            settle_garbage_collector()  # after READY: start-up time is what clients wait for
            await self._stop.wait()
            await self._drain(server)
        finally:
            await self._close_all()
            if watchdog is not None:
                await watchdog.close()
            self._remove_socket()
            self._lock.release()
            self.notifier.close()
            log.info("stopped")

    async def _start(self, db: Database) -> grpc.aio.Server:
        source = locate_key(self.config.state_dir, self.config.master_key_file, self._env)
        keyring = await open_keyring(source, SealedSecretRepository(db))
        self._key_id = keyring.current.key_id.hex()
        self._start_metrics_endpoint()
        server, health = build_server(self._services(db, keyring), self._interceptors())
        if self._engines is not None:  # resumes engines; closed before the exchange clients
            await self._engines.open()
            self.on_close(self._engines.close)
        self._health = health
        tls = self.config.tls if self.config.listen.unix_path is None else None
        credentials = server_credentials(tls) if tls is not None else None
        self.address = bind(server, self.config.listen, credentials)
        await server.start()
        self.on_close(lambda: server.stop(0))  # the grace was given in _drain
        restrict_socket(self.config)
        for name in ("", *SERVICE_NAMES):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self._readiness is not None:  # re-checks the store and key; may turn NOT_SERVING
            self._readiness.start()
            self.on_close(self._readiness.close)
        return server

    def _services(self, db: Database, keyring: Keyring) -> list[Service]:
        """The domain, built on the open store: the one place new services are wired."""
        # --- connections, connection tests, HealthService (ctsd.connection_services) ---
        activity = EngineActivity()  # connections report which of them run an engine
        on_test = ConnectionTestMetrics(self.metrics).observe if self.metrics.enabled else None
        built = build_connection_services(self.config, db, keyring, activity, self._env,
                                          on_test_result=on_test)
        self.metrics.register(RateLimitCollector(built.exchanges.usage))
        for closer in built.closers:
            self.on_close(closer)
        for reloader in built.reloaders:
            self.on_reload(reloader)
        self._readiness = built.readiness(self._set_serving)
        # --- trade engines (ctsd.engine_services), on the connections' exchange clients ---
        engines = build_engine_services(db, built.connections, built.exchanges,
                                        built.credentials, self.config.engines)
        activity.attach(engines.manager.list)
        self.metrics.register(EngineCollector(engines.manager.list))
        self._engines = engines.manager
        return [*built.services, engines.service]

    async def _set_serving(self, ready: bool) -> None:
        """grpc.health.v1 follows readiness (the local start-up checks)."""
        if self._health is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        rpc_metrics = RpcMetrics(self.metrics)
        interceptors = [AccessLog(rpc_metrics).interceptor()]
        authenticator = Authenticator.from_config(self.config)
        if authenticator is not None:
            interceptors.append(AuthGuard(authenticator, rpc_metrics).interceptor())
        if self.config.calls_per_second_per_peer > 0:  # after auth: strangers are not counted
            guard = RequestRateGuard(self.config.calls_per_second_per_peer)
            interceptors.append(guard.interceptor())
        return interceptors

    def _start_metrics_endpoint(self) -> None:
        if self.config.metrics_listen is None:
            return
        host, port = self.config.metrics_listen
        endpoint = MetricsEndpoint.start(self.metrics, host, port)
        self.on_close(endpoint.close)
        log.info("metrics serving", extra={"metrics_address": endpoint.address})

    def _start_watchdog(self) -> Watchdog | None:
        interval = watchdog_interval(self._env)
        if interval is None or not self.notifier.enabled:
            return None
        watchdog = Watchdog(self.notifier, interval)
        watchdog.start()
        return watchdog

    def _serving_fields(self, started: float) -> dict[str, object]:
        return {
            "address": self.address,
            "version": __version__,
            "key_id": self._key_id,
            "tls": self.config.tls is not None and self.config.listen.unix_path is None,
            "startup_ms": round((time.monotonic() - started) * 1000, 1),
        }

    async def _drain(self, server: grpc.aio.Server) -> None:
        grace = self.config.grace_seconds
        self.notifier.stopping(f"stopping: finishing calls for up to {grace:g}s")
        log.info("stopping", extra={"grace_s": grace})
        if self._health is not None:
            await self._health.enter_graceful_shutdown()  # every service NOT_SERVING
        await server.stop(grace)  # refuses new calls at once; cancels the rest at the deadline

    async def _close_all(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                await closer()
            except Exception:  # one failing closer must not keep the others from running
                log.exception("error while stopping", extra={"closer": repr(closer)})

    def _remove_socket(self) -> None:
        if self.config.listen.unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.config.listen.unix_path.unlink()

    async def reload(self) -> None:
        """SIGHUP: apply the log settings and reload hooks; never drop a client."""
        if self._reload_config is None or self._stop.is_set():
            return
        self.notifier.reloading()
        try:
            new = self._reload_config()
        except ConfigurationError as exc:
            log.error("reload refused, keeping the running configuration", extra={"error": exc})
            self.notifier.ready(f"serving on {self.address} (last reload failed)")
            return
        self.config, ignored = self.config.reloaded(new)  # each field says whether it may
        if ignored:
            log.warning("changes that take effect after a restart", extra={"settings": ignored})
        logs.configure(new.log_level, new.log_format)
        for reloader in list(self._reloaders):
            try:
                await reloader(self.config)
            except Exception:
                log.exception("reload hook failed", extra={"hook": repr(reloader)})
        self.notifier.ready(f"serving on {self.address}")
        log.info("reloaded", extra={"log_level": new.log_level, "log_format": new.log_format})


GC_FIRST_GENERATION = 50_000
"""Allocations between young collections (Python's default: 700). A daemon streaming to
hundreds of clients allocates short-lived messages by the hundred thousand a second; at
the default it spends a tenth of its CPU collecting, almost all of it on survivors."""


def settle_garbage_collector() -> None:
    """Start-up is done: what is alive now (modules, config, the read model) lives as long
    as the process, so it is frozen out of every later collection, and young collections
    run less often."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, second, third)


async def run_daemon(
    config: DaemonConfig, reload_config: Callable[[], DaemonConfig] | None = None
) -> None:
    daemon = Daemon(config, reload_config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    await daemon.run()
