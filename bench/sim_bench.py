"""Requests per second the exchange simulator serves, to ccxt and to a light client.

The simulator (`ctsd sim`, `--markets` pairs, every rate limit scaled up by 1e6
so that none can trigger) runs in its own process pinned to the first CPU; the
clients and this process are pinned to the others, so what is measured is the
simulator served on one core. Five phases against its Binance venue, each
`--warmup` seconds of load and then a counted `--seconds` window, with
`--concurrency` requests in flight:

- `ccxt_public`, `ccxt_signed`: unmodified `ccxt.async_support.binance` pointed at
  the simulator (`point_at_simulator`, markets loaded once, enableRateLimit off)
  calling fetch_ticker('BTC/USDT') and fetch_balance() (signed GET /api/v3/account).
- `light_public`, `light_signed`: the same two requests from a light client on
  keep-alive connections, signed as Binance requires (HMAC-SHA256 over
  `timestamp=…&recvWindow=…`, `X-MBX-APIKEY`). By default it writes HTTP/1.1
  itself on asyncio sockets (60-90 µs of CPU per signed request here, against
  110-150 µs for an aiohttp session and 120-210 µs for the server), so that the
  server is the side that saturates; `--light aiohttp` uses an aiohttp session
  with a keep-alive pool instead. `light_signed_rps` is checked against the
  target, 1,500 signed requests/s.
- `bare`: the baseline of the same run: the light client against bare aiohttp on
  the same core, answering the same account bytes to any GET; `signed_cost_vs_bare`
  is server CPU per signed request, simulator over bare aiohttp.

The machine is shared, so each phase also reads the server's own CPU time and
run-queue wait from /proc/PID/schedstat over the window: `server_cpu` near 1, or
`server_cpu + server_wait` near 1 (the server wanted the core but a neighbour had
it), shows the server was the bottleneck; `capacity_rps` (requests per server
CPU-second) is what one core would serve without neighbours. Every answer must
be 200 (anything else, or an exception, counts in `errors`), the simulator's
request counter must equal what the clients sent, and its rate-limit violation
counter must stay 0. Prints one JSON object as its last line; progress goes to
stderr. Run from the repository root:

    .venv/bin/python bench/sim_bench.py [--seconds N] [--markets M]
    .venv/bin/python -m bench.sim_bench [--seconds N] [--markets M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_SIGNED_RPS = 1500
LIMIT_SCALE = 1e6
SEED = 1
SYMBOL, MARKET_ID = "BTC/USDT", "BTCUSDT"
TICKER_PATH = f"/binance/api/v3/ticker/24hr?symbol={MARKET_ID}"
ACCOUNT_PATH = "/binance/api/v3/account"
RECV_WINDOW = 5000
REQUEST_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 120.0
"""Start-up of a child: the simulator building 2,000 markets, ccxt loading them."""
SECRET_ENV = "SIM_BENCH_SECRET"
"""How the bench account's secret reaches the client processes (not on a command line)."""
DRAIN_TIMEOUT_S = 15.0
"""After the window: how long in-flight requests may take before they count as errors."""

RequestFn = Callable[[], Awaitable[int]]


# --- child processes (simulator, bare server, clients) ----------------------------------


def _die_with_parent(parent: int) -> None:
    """Linux: get SIGTERM when the bench process `parent` dies, even by SIGKILL (0: don't)."""
    if not parent:
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before prctl took effect
        sys.exit(1)


def _pin(cpus: list[int]) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)


def run_sim(sim_args: list[str]) -> int:
    """The simulator exactly as `ctsd sim …` runs it."""
    from ctsd.sim.cli import main as sim_main

    return sim_main(sim_args)


def run_bare_server(body_file: Path) -> None:
    """The baseline: aiohttp answering fixed JSON bytes for every GET, no other work."""
    from aiohttp import web

    body = body_file.read_bytes()

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json",
                            headers={"X-MBX-USED-WEIGHT-1M": "1"})

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        port = sock.getsockname()[1]
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"bare listening on http://127.0.0.1:{port}", flush=True)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(serve())


@dataclass
class Tally:
    """What one client process counted: all requests, and those in the window."""

    sent: int = 0
    errors: int = 0
    in_window: int = 0
    latencies_us: list[int] = field(default_factory=list)
    first_error: str = ""


async def _drive(request: RequestFn, concurrency: int, t0: float, t1: float) -> dict[str, Any]:
    """Run `concurrency` loops of `request` until `t1`; count completions in [t0, t1)."""
    tally = Tally()

    async def worker() -> None:
        clock = time.monotonic
        while True:
            started = clock()
            if started >= t1:
                return
            try:
                status = await request()
                ok = status == 200
                if not ok and not tally.first_error:
                    tally.first_error = f"HTTP {status}"
            except Exception as exc:  # every failure is counted, none is fatal
                ok = False
                if not tally.first_error:
                    tally.first_error = f"{type(exc).__name__}: {exc}"[:300]
            done = clock()
            tally.sent += 1
            if not ok:
                tally.errors += 1
            elif t0 <= done < t1:
                tally.in_window += 1
                tally.latencies_us.append(int((done - started) * 1e6))

    cpu0 = cpu1 = 0.0
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]

    async def sample_cpu() -> None:
        nonlocal cpu0, cpu1
        await asyncio.sleep(max(0.0, t0 - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, t1 - time.monotonic()))
        cpu1 = time.process_time()

    sampler = asyncio.create_task(sample_cpu())
    _, pending = await asyncio.wait(
        [*tasks, sampler], timeout=max(0.0, t1 - time.monotonic()) + DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    if pending - {sampler}:
        tally.errors += len(pending - {sampler})
        tally.first_error = tally.first_error or "request still pending after the window"
    await asyncio.gather(*pending, return_exceptions=True)
    return {
        "sent": tally.sent, "errors": tally.errors, "in_window": tally.in_window,
        "latencies_us": tally.latencies_us, "first_error": tally.first_error,
        "client_cpu_s": round(cpu1 - cpu0, 3),
    }


async def _await_go() -> tuple[float, float]:
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    word, t0, t1 = line.split()
    assert word == "go", line
    return float(t0), float(t1)


async def run_light_client(base: str, op: str, concurrency: int, key: str, secret: str) -> None:
    """aiohttp with one keep-alive connection per in-flight request, Binance signing."""
    import aiohttp
    from yarl import URL

    secret_bytes = secret.encode()
    ticker_url = URL(base + TICKER_PATH, encoded=True)
    headers = {"X-MBX-APIKEY": key}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def public() -> int:
            async with session.get(ticker_url) as resp:
                await resp.read()
                return resp.status

        async def signed() -> int:
            query = f"timestamp={int(time.time() * 1000)}&recvWindow={RECV_WINDOW}"
            signature = hmac.new(secret_bytes, query.encode(), hashlib.sha256).hexdigest()
            url = URL(f"{base}{ACCOUNT_PATH}?{query}&signature={signature}", encoded=True)
            async with session.get(url, headers=headers) as resp:
                await resp.read()
                return resp.status

        request = public if op == "public" else signed
        status = await request()  # one answer checked before the clock runs
        if status != 200:
            raise SystemExit(f"light client: first {op} request answered HTTP {status}")
        t0, t1 = await _await_go()
        result = await _drive(request, concurrency, t0, t1)
    print(json.dumps(result), flush=True)


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a request, await the status of its answer.

    Reads exactly `Content-Length` bytes of body (what aiohttp's server sends for
    a complete body); anything else fails the request and drops the connection.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if not head.startswith(b"http/1.1 ") or at < 0:
            self._fail(ConnectionError(f"unexpected answer head {head[:200]!r}"))
            return
        stop = head.find(b"\r\n", at + 2)
        total = end + 4 + int(head[at + 17 : stop if stop > 0 else None])
        if len(self._buf) < total:
            return
        del self._buf[:total]
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._fail(exc or ConnectionError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(  # cheaper than a wait_for task per request
            REQUEST_TIMEOUT_S, self._fail, TimeoutError("no answer within the timeout"))
        self.transport.write(data)
        try:
            return await waiter
        finally:
            timer.cancel()


class RawPool:
    """Keep-alive connections for the raw light client, reopened when one breaks."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_RawConnection] = []
        self._all: list[_RawConnection] = []

    async def request(self, data: bytes) -> int:
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.transport is None:
            _, conn = await asyncio.get_running_loop().create_connection(
                _RawConnection, self.host, self.port)
            self._all.append(conn)
        try:
            status = await conn.request(data)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        self._idle.append(conn)
        return status

    def close(self) -> None:
        for conn in self._all:
            if conn.transport is not None:
                conn.transport.close()


async def run_raw_client(base: str, op: str, concurrency: int, key: str, secret: str) -> None:
    """The lightest client: HTTP/1.1 written by hand on keep-alive sockets, Binance signing."""
    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    prefix = parts.path.rstrip("/")
    pool = RawPool(host, port)
    secret_bytes = secret.encode()
    common = f"Host: {host}:{port}\r\nUser-Agent: sim-bench\r\nAccept: */*\r\n"
    ticker_request = f"GET {prefix}{TICKER_PATH} HTTP/1.1\r\n{common}\r\n".encode()
    signed_head = f"GET {prefix}{ACCOUNT_PATH}?"
    signed_tail = f" HTTP/1.1\r\n{common}X-MBX-APIKEY: {key}\r\n\r\n"

    async def public() -> int:
        return await pool.request(ticker_request)

    async def signed() -> int:
        query = f"timestamp={int(time.time() * 1000)}&recvWindow={RECV_WINDOW}"
        signature = hmac.new(secret_bytes, query.encode(), hashlib.sha256).hexdigest()
        return await pool.request(
            f"{signed_head}{query}&signature={signature}{signed_tail}".encode())

    request = public if op == "public" else signed
    try:
        status = await request()
        if status != 200:
            raise SystemExit(f"raw client: first {op} request answered HTTP {status}")
        t0, t1 = await _await_go()
        result = await _drive(request, concurrency, t0, t1)
    finally:
        pool.close()
    print(json.dumps(result), flush=True)


async def run_ccxt_client(base: str, op: str, concurrency: int, key: str, secret: str) -> None:
    """Unmodified ccxt Binance: markets loaded once, then fetch_ticker or fetch_balance."""
    import ccxt.async_support as ccxt

    from ctsd.sim.ccxt_target import point_at_simulator

    exchange = ccxt.binance({
        "apiKey": key, "secret": secret, "enableRateLimit": False,
        "timeout": int(REQUEST_TIMEOUT_S * 1000),
    })
    exchange.timeout_on_exit = 0  # its grace period is for TLS; this is plain loopback HTTP
    point_at_simulator(exchange, base)
    try:
        await exchange.load_markets()

        async def public() -> int:
            ticker = await exchange.fetch_ticker(SYMBOL)
            return 200 if ticker["last"] else 0

        async def signed() -> int:
            balance = await exchange.fetch_balance()
            return 200 if balance["USDT"]["total"] else 0

        request = public if op == "public" else signed
        if await request() != 200:
            raise SystemExit(f"ccxt client: first {op} answer was not the expected one")
        t0, t1 = await _await_go()
        result = await _drive(request, concurrency, t0, t1)
    finally:
        await exchange.close()
    print(json.dumps(result), flush=True)


# --- the orchestrating process ------------------------------------------------------------


class Child:
    """A child process speaking lines on stdout; always stopped by `stop()`."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})})
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first line matching `pattern` within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name}: no line matching {pattern!r} in {timeout} s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.wait()}) before printing {pattern!r}")
            found = re.search(pattern, line)
            if found:
                return found

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)  # it stops at end of file, before the pipe is closed under it
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def cpu_and_wait(pid: int) -> tuple[float, float] | None:
    """Seconds `pid` has run on a CPU, and waited runnable for one (None if unknown).

    From /proc/PID/schedstat (nanoseconds, main thread: the simulator's event loop);
    the wait is time other processes on the shared machine took from it.
    """
    try:
        run_ns, wait_ns, _ = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def http_json(method: str, url: str, body: Any = None,
              headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as resp:
        return json.loads(resp.read())


def signed_url(base: str, secret: str) -> str:
    query = f"timestamp={int(time.time() * 1000)}&recvWindow={RECV_WINDOW}"
    signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{base}{ACCOUNT_PATH}?{query}&signature={signature}"


def percentile_ms(samples_us: list[int], q: float) -> float | None:
    if not samples_us:
        return None
    ordered = sorted(samples_us)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000, 2)


@dataclass(frozen=True)
class Layout:
    """Which CPUs the server and the clients get."""

    server: list[int]
    clients: list[int]

    @property
    def pinned(self) -> bool:
        return bool(self.server)

    @staticmethod
    def choose() -> Layout:
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if len(allowed) < 2:
            return Layout([], [])
        return Layout(allowed[:1], allowed[1:])


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.layout = Layout.choose()
        self.children: list[Child] = []
        self.key = "bench-sim-key"
        self.secret = secrets.token_hex(32)

    def _child_argv(self, role: str, cpus: list[int], *extra: str) -> list[str]:
        return [sys.executable, "-m", "bench.sim_bench", "--role", role,
                "--parent", str(os.getpid()), "--cpus", ",".join(map(str, cpus)), *extra]

    def spawn(self, name: str, role: str, cpus: list[int], *extra: str) -> Child:
        child = Child(name, self._child_argv(role, cpus, *extra), {SECRET_ENV: self.secret})
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def start_sim(self) -> tuple[Child, str]:
        sim = self.spawn(
            "simulator", "sim", self.layout.server, "--",
            "--port", "0", "--seed", str(SEED), "--markets", str(self.args.markets),
            "--limit-scale", str(LIMIT_SCALE))
        base = sim.expect(r"listening on (http://\S+)", READY_TIMEOUT_S).group(1)
        http_json("POST", f"{base}/admin/accounts", {
            "api_key": self.key, "secret": self.secret,
            "balances": {"spot": {"USDT": "100000", "BTC": "2", "ETH": "20"},
                         "derivatives": {"USDT": "50000"}},
            "permissions": ["read", "trade"],
        })
        return sim, base

    def phase(self, label: str, kind: str, op: str, base: str, server: Child,
              processes: int, counted: bool = True) -> dict[str, Any]:
        """One measured phase: `processes` client processes, `concurrency` in flight in all.

        `counted`: `server` is the simulator, whose request counter is checked.
        """
        args = self.args
        shares = [args.concurrency // processes + (i < args.concurrency % processes)
                  for i in range(processes)]
        clients = [
            self.spawn(f"{label} client {i}", kind, self.layout.clients, "--base", base,
                       "--op", op, "--concurrency", str(share), "--key", self.key)
            for i, share in enumerate(shares) if share > 0
        ]
        try:
            for client in clients:
                client.expect(r"^ready$", READY_TIMEOUT_S)
            counted_before = self._served(base) if counted else None
            t0 = time.monotonic() + 0.05 + args.warmup
            t1 = t0 + args.seconds
            for client in clients:
                client.send(f"go {t0!r} {t1!r}")
            time.sleep(max(0.0, t0 - time.monotonic()))
            before = cpu_and_wait(server.pid)
            time.sleep(max(0.0, t1 - time.monotonic()))
            after = cpu_and_wait(server.pid)
            results = [json.loads(c.expect(r"^\{.*\}$", DRAIN_TIMEOUT_S + 30).group(0))
                       for c in clients]
            counted_after = self._served(base) if counted else None
        finally:
            for client in clients:
                client.stop()
                self.children.remove(client)
        latencies = [v for r in results for v in r["latencies_us"]]
        done = sum(r["in_window"] for r in results)
        sent = sum(r["sent"] for r in results)
        server_cpu = server_wait = None
        if before is not None and after is not None:
            server_cpu = (after[0] - before[0]) / args.seconds
            server_wait = (after[1] - before[1]) / args.seconds
        out: dict[str, Any] = {
            "rps": round(done / args.seconds, 1),
            "p50_ms": percentile_ms(latencies, 0.50),
            "p99_ms": percentile_ms(latencies, 0.99),
            "requests": sent,
            "errors": sum(r["errors"] for r in results),
            "client_processes": len(clients),
            "client_cpu": round(sum(r["client_cpu_s"] for r in results) / args.seconds, 3),
            "server_cpu": None if server_cpu is None else round(server_cpu, 3),
            "server_wait": None if server_wait is None else round(server_wait, 3),
            "server_us_per_request": (
                round(server_cpu * 1e6 / (done / args.seconds), 1)
                if server_cpu and done else None),
            "capacity_rps": round(done / args.seconds / server_cpu, 1) if server_cpu else None,
        }
        if counted_before is not None and counted_after is not None:
            out["server_counted"] = counted_after - counted_before
            if out["server_counted"] != sent:
                out["errors"] += abs(out["server_counted"] - sent)
                out["first_error"] = f"server counted {out['server_counted']}, clients sent {sent}"
        first_error = next((r["first_error"] for r in results if r["first_error"]), "")
        if first_error:
            out["first_error"] = first_error
        print(f"{label}: {json.dumps(out)}", file=sys.stderr, flush=True)
        return out

    @staticmethod
    def _served(base: str) -> int:
        """The simulator's own count of Binance requests."""
        return int(http_json("GET", f"{base}/admin/stats")["requests"].get("binance", 0))

    def run(self) -> dict[str, Any]:
        args = self.args
        light_processes = args.clients or max(1, len(self.layout.clients))
        light_role = "raw" if args.light == "raw" else "light"
        sim, base = self.start_sim()
        # What both clients will get: checked here once, in full, before any timing.
        ticker = http_json("GET", base + TICKER_PATH)
        assert ticker["symbol"] == MARKET_ID and float(ticker["lastPrice"]) > 0, ticker
        account = http_json("GET", signed_url(base, self.secret),
                            headers={"X-MBX-APIKEY": self.key})
        assert any(b["asset"] == "USDT" for b in account["balances"]), account

        phases: dict[str, dict[str, Any]] = {}
        phases["ccxt_public"] = self.phase("ccxt_public", "ccxt", "public", base, sim, 1)
        phases["ccxt_signed"] = self.phase("ccxt_signed", "ccxt", "signed", base, sim, 1)
        phases["light_public"] = self.phase(
            "light_public", light_role, "public", base, sim, light_processes)
        phases["light_signed"] = self.phase(
            "light_signed", light_role, "signed", base, sim, light_processes)
        stats = http_json("GET", f"{base}/admin/stats")
        violations = sum(int(n) for n in stats["violations"].values())

        # The baseline: the same account bytes from bare aiohttp on the same core.
        fd, name = tempfile.mkstemp(prefix="sim-bench-", suffix=".json")
        body_file = Path(name)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(json.dumps(account, separators=(",", ":")))
            bare = self.spawn("bare server", "bare", self.layout.server, "--body", str(body_file))
            bare_base = bare.expect(r"listening on (http://\S+)", READY_TIMEOUT_S).group(1)
            phases["bare"] = self.phase(
                "bare", light_role, "signed", bare_base, bare, light_processes, counted=False)
        finally:
            body_file.unlink(missing_ok=True)

        def fig(phase: str, key: str) -> Any:
            return phases[phase][key]

        signed_cost, bare_cost = fig("light_signed", "server_us_per_request"), fig(
            "bare", "server_us_per_request")
        errors = sum(p["errors"] for p in phases.values())
        light_signed = fig("light_signed", "rps")
        return {
            "bench": "sim",
            "markets": args.markets,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "server_cpus": self.layout.server,
            "client_cpus": self.layout.clients,
            "pinned": self.layout.pinned,
            "light_client": args.light,
            "ccxt_public_rps": fig("ccxt_public", "rps"),
            "ccxt_signed_rps": fig("ccxt_signed", "rps"),
            "light_public_rps": fig("light_public", "rps"),
            "light_signed_rps": light_signed,
            "bare_rps": fig("bare", "rps"),
            "ccxt_public_server_cpu": fig("ccxt_public", "server_cpu"),
            "ccxt_signed_server_cpu": fig("ccxt_signed", "server_cpu"),
            "light_public_server_cpu": fig("light_public", "server_cpu"),
            "light_signed_server_cpu": fig("light_signed", "server_cpu"),
            "light_public_capacity_rps": fig("light_public", "capacity_rps"),
            "light_signed_capacity_rps": fig("light_signed", "capacity_rps"),
            "signed_cost_vs_bare": (
                round(signed_cost / bare_cost, 2) if signed_cost and bare_cost else None),
            "errors": errors,
            "violations": violations,
            "target_signed_rps": TARGET_SIGNED_RPS,
            "signed_meets_target": light_signed >= TARGET_SIGNED_RPS and errors == 0,
            "phases": phases,
        }


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that `finally` stops every child


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0, help="counted window per phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted load before it")
    parser.add_argument("--markets", type=int, default=2000, help="simulated pairs")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--light", choices=("raw", "aiohttp"), default="raw",
                        help="the light client: hand-written HTTP/1.1 (default) or aiohttp")
    parser.add_argument("--clients", type=int, default=0,
                        help="light-client processes (default: one per client CPU)")
    hidden = argparse.SUPPRESS
    parser.add_argument("--role", default="main", help=hidden,
                        choices=("main", "sim", "bare", "light", "raw", "ccxt"))
    parser.add_argument("--parent", type=int, default=0, help=hidden)
    parser.add_argument("--cpus", default="", help=hidden)
    parser.add_argument("--base", default="", help=hidden)
    parser.add_argument("--op", default="signed", choices=("public", "signed"), help=hidden)
    parser.add_argument("--key", default="", help=hidden)
    parser.add_argument("--body", type=Path, help=hidden)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=hidden)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.warmup < 0 or args.markets < 1 or args.concurrency < 1:
        parser.error("--seconds, --markets and --concurrency must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.role != "main":
        _die_with_parent(args.parent)
        _pin([int(c) for c in args.cpus.split(",") if c])
        secret = os.environ.get(SECRET_ENV, "")
        if args.role == "sim":
            return run_sim([a for a in args.rest if a != "--"])
        if args.role == "bare":
            run_bare_server(args.body)
        elif args.role in ("light", "raw"):
            client = run_light_client if args.role == "light" else run_raw_client
            asyncio.run(client(args.base, args.op, args.concurrency, args.key, secret))
        else:
            asyncio.run(run_ccxt_client(args.base, args.op, args.concurrency, args.key, secret))
        return 0

    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    bench = Bench(args)
    _pin(bench.layout.clients)  # keep the orchestrator off the server's core too
    try:
        result = bench.run()
    finally:
        bench.stop_all()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
