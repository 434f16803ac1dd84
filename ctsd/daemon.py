"""Wires the daemon together and runs it until a signal says stop.

Nothing here decides anything: configuration, store, vault, domain and API
are built by their own modules; this file orders their start and stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time

from grpc_health.v1 import health_pb2

from ctsd import __version__
from ctsd.api.connections import ConnectionServicer
from ctsd.config import DaemonConfig
from ctsd.connections.manager import ConnectionManager
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.instance_lock import InstanceLock
from ctsd.server import SERVICE_NAMES, bind, build_server, restrict_socket
from ctsd.store.connections import ConnectionRepository
from ctsd.store.database import Database
from ctsd.store.sealed_secrets import SealedSecretRepository
from ctsd.vault.keyring_setup import open_keyring
from ctsd.vault.master_key import locate_key

log = logging.getLogger("ctsd")


def prepare_state_dir(config: DaemonConfig) -> None:
    os.umask(0o077)  # every file we create (db, wal, key, socket) is owner-only
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self._lock = InstanceLock(config.state_dir)
        self._db: Database | None = None
        self._stop = asyncio.Event()
        self.address = ""

    async def run(self) -> None:
        started = time.monotonic()
        prepare_state_dir(self.config)
        self._lock.acquire("daemon")
        try:
            self._db = await Database.open(self.config.state_dir)
            await self._serve(started)
        finally:
            if self._db is not None:
                await self._db.close()
            if self.config.listen.unix_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.config.listen.unix_path.unlink()
            self._lock.release()
            log.info("stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def _serve(self, started: float) -> None:
        assert self._db is not None
        source = locate_key(self.config.state_dir, self.config.master_key_file)
        keyring = await open_keyring(source, SealedSecretRepository(self._db))
        manager = ConnectionManager(
            ConnectionRepository(self._db), keyring, ExchangeRegistry.default()
        )
        server, health = build_server(ConnectionServicer(manager))
        self.address = bind(server, self.config.listen)
        await server.start()
        restrict_socket(self.config.listen)
        for name in ("", *SERVICE_NAMES):
            await health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving",
            extra={
                "address": self.address,
                "version": __version__,
                "key_id": keyring.current.key_id.hex(),
                "startup_ms": round((time.monotonic() - started) * 1000, 1),
            },
        )
        await self._stop.wait()
        log.info("stopping", extra={"grace_s": self.config.grace_seconds})
        await health.enter_graceful_shutdown()
        await server.stop(self.config.grace_seconds)


async def run_daemon(config: DaemonConfig) -> None:
    daemon = Daemon(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    await daemon.run()
