"""Start-up checks: can this daemon do its job here, and if not, what is wrong?

Each check is a small coroutine that returns pass/fail with one line of
detail; a check that raises fails with the error's text (none of them touch
secrets). Two groups:

- local checks (state dir, database, schema, master key) decide readiness:
  without them nothing works, so `grpc.health.v1` follows them;
- outside checks (exchange modules, endpoints, clock) are reported but do not
  make the daemon unready: an exchange being down is not the daemon's fault.

The exchange-modules check imports ccxt (through the exchange layer) in a
worker thread: it takes about a second, which must not be spent on the
daemon's start path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from ctsd.errors import CtsError
from ctsd.store.database import Database
from ctsd.store.migrations import SCHEMA_VERSION
from ctsd.vault.master_key import read_key_file

SYNC_MARKER = Path("/run/systemd/timesync/synchronized")
MAX_SKEW_S = 5.0
ENDPOINT_TIMEOUT_S = 3.0
EARLIEST_SANE_YEAR = 2024


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    duration_s: float = 0.0


Check = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class StartupEnvironment:
    """What the checks look at; all of it is fixed when the daemon starts."""

    state_dir: Path
    db: Database
    key_path: Path
    key_id: bytes
    exchange_ids: Sequence[str]
    missing_exchange_classes: Callable[[], Sequence[str]]
    """Which of `exchange_ids` the exchange library has no client class for (blocking)."""
    endpoints: Mapping[str, str]
    """Exchange id → `scheme://host[:port]` its requests go to instead of its own hosts."""


class StartupChecks:
    def __init__(self, env: StartupEnvironment, now: Callable[[], datetime] | None = None):
        self._env = env
        self._now = now or (lambda: datetime.now(UTC))
        self._skews: list[float] = []
        self._audit_lock = asyncio.Lock()
        self._audited = False

    def local(self) -> list[tuple[str, Check]]:
        return [
            ("state_dir_writable", self.state_dir_writable),
            ("database_integrity", self.database_integrity),
            ("schema_version", self.schema_version),
            ("master_key", self.master_key),
            ("database_writable", self.database_writable),
        ]

    def outside(self) -> list[tuple[str, Check]]:
        return [
            ("exchange_modules", self.exchange_modules),
            ("exchange_endpoints", self.exchange_endpoints),
            ("clock", self.clock),  # after endpoints: it uses the times they answered with
            # Reported, not readiness: one damaged row is no reason to stop serving the rest.
            ("database_rows", self.database_rows),
        ]

    async def run_local(self) -> list[CheckResult]:
        return [await _timed(name, check) for name, check in self.local()]

    async def run_all(self) -> list[CheckResult]:
        self._skews = []
        return [await _timed(name, check) for name, check in (*self.local(), *self.outside())]

    async def state_dir_writable(self) -> tuple[bool, str]:
        probe = self._env.state_dir / f".write-check-{secrets.token_hex(4)}"

        def write() -> None:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)

        await asyncio.to_thread(write)
        return True, f"{self._env.state_dir} is writable"

    async def database_integrity(self) -> tuple[bool, str]:
        answer = await self._env.db.integrity_check()
        how = "quick_check" if self._env.db.kind == "sqlite" else "data checksums"
        return answer == "ok", f"{how}: {answer}"

    async def database_writable(self) -> tuple[bool, str]:
        """The last write reached the file; after one that did not, a probe write must."""
        db = self._env.db
        if db.write_fault is not None:
            with contextlib.suppress(CtsError):
                await db.probe_write()
        if db.write_fault is not None:
            return False, f"the database takes no writes: {db.write_fault}"
        return True, "the last write reached the database"

    async def database_rows(self) -> tuple[bool, str]:
        """Every row read through once (the first time asked); after that, reads that
        meet a damaged row quarantine it, and this reports what they found."""
        async with self._audit_lock:
            if not self._audited:
                # Imported here: every table's decoder, fleet requests included, is more
                # than a start needs; VerifyStartup asks once.
                from ctsd.store.audit import audit_rows

                await audit_rows(self._env.db)
                self._audited = True
        damaged = self._env.db.quarantine.rows
        if damaged:
            return False, self._env.db.quarantine.summary()
        return True, "every row decodes"

    async def schema_version(self) -> tuple[bool, str]:
        version = await self._env.db.schema_version()
        return version == SCHEMA_VERSION, f"schema version {version}, expected {SCHEMA_VERSION}"

    async def master_key(self) -> tuple[bool, str]:
        key = await asyncio.to_thread(read_key_file, self._env.key_path)  # checks mode 0600
        if key.key_id != self._env.key_id:
            return False, f"{self._env.key_path} holds a different key than the one in use"
        return True, f"{self._env.key_path} is owner-only; key id {key.key_id.hex()}"

    async def exchange_modules(self) -> tuple[bool, str]:
        missing = await asyncio.to_thread(self._env.missing_exchange_classes)
        if missing:
            return False, f"ccxt has no class for {', '.join(missing)}"
        return True, f"ccxt classes present for {', '.join(self._env.exchange_ids)}"

    async def exchange_endpoints(self) -> tuple[bool, str]:
        if not self._env.endpoints:
            return True, "no endpoint overrides configured; exchanges' own hosts not probed"
        by_url: dict[str, list[str]] = {}
        for exchange, url in sorted(self._env.endpoints.items()):
            by_url.setdefault(url, []).append(exchange)
        results = await asyncio.gather(
            *(self._reach(", ".join(names), url) for url, names in by_url.items())
        )
        failed = [text for ok, text in results if not ok]
        return not failed, "; ".join(failed or [text for _, text in results])

    async def _reach(self, exchange: str, url: str) -> tuple[bool, str]:
        """Any HTTP answer means reachable; its Date header feeds the clock check."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        started = time.monotonic()
        probe = _http_date(host, port) if parts.scheme == "http" else _tcp_connect(host, port)
        try:
            async with asyncio.timeout(ENDPOINT_TIMEOUT_S):
                date = await probe
        except (OSError, TimeoutError, ValueError) as exc:
            return False, f"{exchange}: {url} unreachable ({type(exc).__name__}: {exc})"
        if date is not None:
            self._skews.append((date - self._now()).total_seconds())
        return True, f"{exchange}: {url} answered in {(time.monotonic() - started) * 1000:.0f} ms"

    async def clock(self) -> tuple[bool, str]:
        now = self._now()
        if now.year < EARLIEST_SANE_YEAR:
            return False, f"the system clock says {now.isoformat()}"
        parts = [f"system time {now.isoformat(timespec='seconds')}"]
        if await asyncio.to_thread(SYNC_MARKER.exists):
            parts.append("NTP synchronised (systemd-timesyncd)")
        worst = max(self._skews, key=abs, default=None)
        if worst is not None:
            parts.append(f"largest difference to an endpoint's clock {worst:+.1f} s")
            if abs(worst) > MAX_SKEW_S:
                return False, "; ".join(parts)
        return True, "; ".join(parts)


async def _timed(name: str, check: Check) -> CheckResult:
    started = time.monotonic()
    try:
        passed, detail = await check()
    except Exception as exc:
        passed, detail = False, f"{type(exc).__name__}: {exc}"
    return CheckResult(name, passed, detail, time.monotonic() - started)


async def _http_date(host: str, port: int) -> datetime | None:
    """HEAD / over plain HTTP; returns the answer's Date header, if any."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = (await reader.read(4096)).decode("latin-1")
    finally:
        writer.close()
        await writer.wait_closed()
    if not head.startswith("HTTP/"):
        raise ValueError("not an HTTP answer")
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "date":
            return parsedate_to_datetime(value.strip())
    return None


async def _tcp_connect(host: str, port: int) -> None:
    """For TLS endpoints: a TCP connection is all we check (no Date without a handshake)."""
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    await writer.wait_closed()
