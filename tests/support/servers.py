"""Private PostgreSQL and Redis servers for the tests, started from Debian's packages.

Each instance lives in a temporary directory of its own (data, Unix socket, log)
and listens on no TCP port, so parallel test runs and the machine's own servers
never meet. `make servers` installs the packages; `CTS_TEST_POSTGRES_URL` and
`CTS_TEST_REDIS_URL` point the tests at running servers instead, and then nothing
is started.

initdb and postgres refuse to run as root: as root, both run as the `postgres`
user of Debian's package (or a system user created for the purpose), which
owns the instance's directory. Every server runs under `setpriv --pdeathsig`,
so it dies with the process that started it even when that process is killed
and no finaliser runs; `stop()` is the normal way out. (The kernel sends the
signal when the starting *thread* ends: start servers on a thread that outlives
them, such as the main thread, never in a worker of `asyncio.to_thread`.)
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.daemon_process import remove_tree, short_tempdir

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
POSTGRES_URL_ENV = "CTS_TEST_POSTGRES_URL"
REDIS_URL_ENV = "CTS_TEST_REDIS_URL"
SERVICE_USER = "postgres"


class ServerMissing(RuntimeError):
    """A server binary is not installed (run `make servers`)."""


def _wait_until(ready: Callable[[], bool], what: str, proc: subprocess.Popen[bytes],
                log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        if ready():
            return
        time.sleep(0.02)
    raise TimeoutError(f"{what} not ready after {START_TIMEOUT_S:g}s: {_tail(log)}")


def _tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-2000:]
    return "(no log)"


def _stop(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def _unprivileged_user() -> pwd.struct_passwd | None:
    """The user servers run as when we are root (None when we are not)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVICE_USER)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    SERVICE_USER], check=True, capture_output=True)
    return pwd.getpwnam(SERVICE_USER)


def _as_server(argv: list[str], user: pwd.struct_passwd | None, death: str) -> list[str]:
    """`argv` under setpriv: as `user` (when root) and killed by `death` with its parent."""
    drop = [] if user is None else [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                                    "--clear-groups"]
    return ["setpriv", *drop, f"--pdeathsig={death}", "--", *argv]


class PrivateRedis:
    """A redis-server on a Unix socket, without persistence; `kill` and `start` again
    give a test an outage, and a server that comes back empty, as a crash would."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerMissing("redis-server is not installed (make servers)")
        self._binary = binary
        self.root = short_tempdir()
        self.socket = self.root / "redis.sock"
        self.url = f"unix://{self.socket}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        log = self.root / "redis.log"
        argv = [self._binary, "--port", "0", "--unixsocket", str(self.socket),
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--logfile", str(log)]
        with log.open("ab") as out:
            self._proc = subprocess.Popen(_as_server(argv, None, "SIGTERM"), stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_until(self._answers, "redis-server", self._proc, log)
        return self

    def _answers(self) -> bool:
        import redis

        try:
            with redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: whatever it held is gone, and clients see their connections drop."""
        _stop(self._proc, signal.SIGKILL)
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def stop(self) -> None:
        _stop(self._proc, signal.SIGTERM)
        self._proc = None
        remove_tree(self.root)


class PrivatePostgres:
    """A postgres cluster of its own (initdb, trust auth, no fsync) on a Unix socket."""

    def __init__(self) -> None:
        bindir = _postgres_bindir()
        self._initdb, self._postgres = bindir / "initdb", bindir / "postgres"
        self._user = _unprivileged_user()
        self.root = short_tempdir()
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@/postgres?host={self.root}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivatePostgres:
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        log = self.root / "postgres.log"
        with log.open("ab") as out:
            if self._user is not None:
                os.chown(log, self._user.pw_uid, self._user.pw_gid)
            subprocess.run(
                _as_server([str(self._initdb), "-D", str(self.data), "-U", "postgres",
                            "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
                           self._user, "SIGKILL"),
                check=True, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                timeout=START_TIMEOUT_S)
            # SIGQUIT is postgres' immediate shutdown: its backends go with it.
            self._proc = subprocess.Popen(
                _as_server([str(self._postgres), "-D", str(self.data), "-k", str(self.root),
                            "-c", "listen_addresses=", "-c", "fsync=off",
                            "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                            "-c", "max_connections=200"], self._user, "SIGQUIT"),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_until(self._answers, "postgres", self._proc, log)
        return self

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        _stop(self._proc, signal.SIGINT)  # fast shutdown: disconnect clients, then exit
        self._proc = None
        remove_tree(self.root)


def _postgres_bindir() -> Path:
    """Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, off PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ServerMissing("PostgreSQL is not installed (make servers)")
    return Path(initdb).resolve().parent


@contextlib.contextmanager
def _given_or_private(env: str, server: Callable[[], PrivateRedis | PrivatePostgres],
                      ) -> Iterator[str]:
    if os.environ.get(env):
        yield os.environ[env]
        return
    started = server()
    try:
        yield started.start().url
    finally:
        started.stop()


def redis_url() -> contextlib.AbstractContextManager[str]:
    """`CTS_TEST_REDIS_URL`, or a private server's URL for the block's duration."""
    return _given_or_private(REDIS_URL_ENV, PrivateRedis)


def postgres_url() -> contextlib.AbstractContextManager[str]:
    """`CTS_TEST_POSTGRES_URL`, or a private cluster's URL for the block's duration."""
    return _given_or_private(POSTGRES_URL_ENV, PrivatePostgres)
