"""The daemon's process lifecycle: start in order, serve, reload on SIGHUP, stop cleanly.

What the daemon is made of is built by the composition root
(`ctsd.wiring.root.assemble`); this module only starts and stops it.

Lifecycle: STARTING (store open, keyring, port bound) → SERVING (health
SERVING, systemd READY=1, watchdog pinging) → STOPPING (on SIGTERM/SIGINT:
STOPPING=1, health NOT_SERVING, new calls refused, in-flight calls given
`grace_seconds`, then every closer in reverse order of registration) →
exit 0. SIGHUP re-reads the configuration while serving.

Parts that need a clean stop or a reload register with `on_close()` and
`on_reload()` as the root builds them: the exchange clients and limiter
their close and new rate limits, the engine manager (here, once opened)
its "stop every engine".
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from ctsd import __version__, logs, state_dir
from ctsd.api.services import SERVICE_NAMES
from ctsd.config import DaemonConfig
from ctsd.errors import ConfigurationError
from ctsd.instance_lock import InstanceLock
from ctsd.ops.metrics import MetricsEndpoint, MetricsRegistry
from ctsd.ops.sd_notify import Notifier, watchdog_interval
from ctsd.ops.signals import LoopSignals
from ctsd.ops.watchdog import Watchdog
from ctsd.server import bind, restrict_socket
from ctsd.transport.tls import server_credentials
from ctsd.wiring.root import Closer, Reloader, assemble

log = logging.getLogger("ctsd")


def prepare_state_dir(config: DaemonConfig) -> None:
    """Private state and runtime dirs and files, or a ConfigurationError (`ctsd.state_dir`)."""
    socket = config.listen.unix_path
    state_dir.prepare(config.state_dir, [socket.parent] if socket is not None else [])


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
        started_up = False
        try:
            self.notifier.status("opening the store")
            server = await self._start()
            started_up = True
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
            if started_up:  # a refused start says why in one line (`ctsd.cli`), no more
                log.info("stopped")

    async def _start(self) -> grpc.aio.Server:
        built = await assemble(self.config, self._env, self, self.metrics, self._set_serving)
        self._key_id, self._health, server = built.key_id, built.health, built.server
        self._start_metrics_endpoint()
        await built.engines.open()  # resumes engines; closed before the exchange clients
        fleet = built.fleet
        if fleet is not None:  # leases given back and the fleet left after the engines closed
            self.on_close(fleet.close)
        self.on_close(built.engines.close)
        if fleet is not None:  # adopts no more before the engines close; renews until then
            self.on_close(fleet.stop_adopting)
            await fleet.open(built.engines)
        tls = self.config.tls if self.config.listen.unix_path is None else None
        credentials = server_credentials(tls) if tls is not None else None
        self.address = bind(server, self.config.listen, credentials)
        await server.start()
        self.on_close(lambda: server.stop(0))  # the grace was given in _drain
        restrict_socket(self.config)
        await self._set_serving(True)
        built.readiness.start()  # re-checks the store and key; may turn NOT_SERVING
        self.on_close(built.readiness.close)
        return server

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
        logs.configure(new.log_level, new.log_format, ccxt_debug=new.log_ccxt_debug)
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
    run less often. The collector the command turned off for the start (`ctsd.cli`) runs
    again from here."""
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(GC_FIRST_GENERATION, second, third)
    gc.enable()


async def run_daemon(
    config: DaemonConfig, reload_config: Callable[[], DaemonConfig] | None = None
) -> None:
    daemon = Daemon(config, reload_config)
    signals = LoopSignals(asyncio.get_running_loop(), {
        signal.SIGTERM: daemon.request_stop,
        signal.SIGINT: daemon.request_stop,
        signal.SIGHUP: daemon.request_reload,
    })
    signals.install()
    try:
        await daemon.run()
    finally:
        signals.close()
