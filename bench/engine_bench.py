"""Engines under load: 100 PAPER engines, one LIVE engine's decision latency, 500 watchers.

Everything runs on this machine over loopback/Unix sockets: the exchange simulator
(`ctsd sim`, `--markets` pairs, every limit scaled by `LIMIT_SCALE` so none triggers)
in a child process, `ctsd` in a child process (wrapped by this module's `daemon` role,
which times ccxt's `Exchange.fetch` in the LIVE phase, see below), and the
500 WatchEngines subscribers in a third child process. Phases:

1. `paper`: `--engines` PAPER engines (sma_cross and grid alternately, one symbol each,
   spread over the catalog), 1 s interval, `--seconds` counted window after every
   engine has run two cycles. Daemon CPU % from /proc/PID/stat (utime+stime) over the
   window, RSS (max of 1 s samples), and cycle lag, measured from outside the daemon:
   derived from the cycle-completion events of one WatchEngines stream:
   cycle start = `last_cycle_time - last_cycle_duration` (wall ms, ±1 ms), scheduled
   start = first cycle's start + k·interval with k = floor((start - first)/interval)
   (the supervisor's schedule is start + n·interval, skipping missed ticks; a lag of
   a whole interval or more would be under-read, and `missed_ticks` counts those
   skips, between consecutive cycles both seen, the later one in the window). The
   daemon's own figure (`Engine.last_cycle_lag`, measured on its monotonic clock)
   is reported beside it as `lag_reported_by_daemon`.
   Baseline of the same run: the same daemon idle (CPU) and with one engine alone
   (CPU, lag) before the other engines start.
2. `watch`: `--watchers` grpc.aio WatchEngines streams (over 10 channels in each of
   4 client processes) while the paper engines keep running, `--watch-seconds` window.
   Delivery latency = receipt wall time (gRPC hands the stream the message's bytes;
   they are decoded after the window, see `run_watchers`) - `heartbeat_time` of a
   cycle-completion change (the daemon sets it to the wall time of the status
   change it publishes at once). Resyncs are counted.
3. `live`: a second daemon with one LIVE grid engine on BTC/USDT (a tested key on
   the simulator), started and stopped repeatedly (each start places orders in its
   first cycle; StopEngine cancels them) for `--live-seconds`. Decision latency is
   measured inside the daemon process from timestamps around ccxt's
   `Exchange.fetch` (the HTTP request/answer, after rate limiting and signing):
   `md_to_order` = entry of the first order POST of a cycle - exit of the last
   market-data GET (ticker/klines) before it. The LIVE path reads the venue's
   state before the prices and skips the fetch-by-client-id before a first
   placement, so the span holds no other round trip unless a retry asks the venue
   again; `decision_compute` = `md_to_order` minus the time spent inside any other
   fetch: the daemon's own work (strategy, risk, store, limiter, ccxt signing).
   `RateLimiter.acquire` is timed too: `limiter_wait_in_decision` is its share, and
   `limiter_stalls_over_1s` lists any longer wait (starts are `--live-pace` apart).
4. `live_perp`: the same on a Binance USDⓈ-M perpetuals connection (BTC/USDT:USDT at
   5x): each start also applies position mode, margin mode and leverage, each cycle
   reads the venue's positions before the prices and the funding terms after them
   (`md_to_order` holds that round trip; `decision_compute` does not), and checks the
   positions against the ledger before deciding. Reported as `perp_decision_*`.

The daemon's Binance request-weight and order limits (spot and futures) are raised by
`LIMIT_SCALE` through its config file (`[rate_limits.binance.*]`); `bench.support ctsd
--limit` no longer takes effect since the daemon passes its config's overrides itself.

Prints one JSON object as its last line; progress goes to stderr. Run from the
repository root:

    .venv/bin/python -m bench.engine_bench [--seconds 60] [--engines 100] [--watchers 500]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402

from bench.support import (  # noqa: E402
    SimProcess,
    bench_accounts,
    bench_daemon,
    percentile,
    seed_accounts,
)
from cts.engine_events import changed_engines  # noqa: E402
from cts.v1 import connection_pb2 as cpb  # noqa: E402
from cts.v1 import connection_service_pb2 as cspb  # noqa: E402
from cts.v1 import connection_service_pb2_grpc as csgrpc  # noqa: E402
from cts.v1 import engine_service_pb2 as pb  # noqa: E402
from cts.v1 import engine_service_pb2_grpc as sgrpc  # noqa: E402
from tests.support.daemon_process import DaemonProcess  # noqa: E402

LIMIT_SCALE = 1000.0
INTERVAL_S = 1
TARGET_LAG_P99_MS = 100.0
TARGET_DECISION_P99_MS = 5.0
TARGET_DELIVERY_P99_MS = 100.0
WATCH_CHANNELS = 10
WATCH_PROCESSES = 4
"""Client processes the watchers are spread over (each with its own channels)."""
LIVE_SYMBOL = "BTC/USDT"
LIVE_PERP_SYMBOL = "BTC/USDT:USDT"
MARKET_DATA_PATHS = ("/ticker", "/klines")
ORDER_PATHS = ("/api/v3/order", "/fapi/v1/order")
TICKS = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ms(value: float) -> float | None:
    return None if value != value else round(value, 3)  # NaN -> None


def summary(samples: list[float]) -> dict[str, Any]:
    return {"n": len(samples), "p50_ms": ms(percentile(samples, 0.50)),
            "p99_ms": ms(percentile(samples, 0.99)),
            "max_ms": ms(max(samples)) if samples else None}


def worst(samples: list[float], count: int = 5) -> list[float]:
    return [round(v, 3) for v in sorted(samples)[-count:]]


# --- /proc readings ------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_wait_seconds(pid: int) -> float:
    """Time the threads of `pid` spent runnable but waiting for a CPU (/proc schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int((task / "schedstat").read_text().split()[1])
    return total / 1e9


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Window:
    """CPU and RSS of one process over a timed window."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.cpu0 = cpu_seconds(pid)
        self.wait0 = run_wait_seconds(pid)
        self.rss: list[float] = [rss_mb(pid)]

    async def run(self, seconds: float) -> dict[str, Any]:
        end = self.t0 + seconds
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            self.rss.append(rss_mb(self.pid))
        elapsed = time.monotonic() - self.t0
        return {"seconds": round(elapsed, 2),
                "cpu_pct": round(100 * (cpu_seconds(self.pid) - self.cpu0) / elapsed, 1),
                "run_queue_wait_pct": round(
                    100 * (run_wait_seconds(self.pid) - self.wait0) / elapsed, 1),
                "rss_mb_max": round(max(self.rss), 1), "rss_mb_end": round(self.rss[-1], 1)}


# --- the daemon child: ctsd with ccxt's fetch timed ------------------------------------------


def run_daemon(trace: str, rest: list[str]) -> int:
    """`bench.support ctsd …` with (start, end, method, path) of every ccxt fetch kept and
    written to `trace` as JSON when the daemon exits (SIGTERM is a clean exit)."""
    from urllib.parse import urlsplit

    from ccxt.async_support.base.exchange import Exchange

    from bench.support import _ctsd_with_limits

    records: list[tuple[float, float, str, str]] = []
    fetch = Exchange.fetch

    async def timed(self: Any, url: str, method: str = "GET", headers: Any = None,
                    body: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return await fetch(self, url, method, headers, body)
        finally:
            records.append((started, time.perf_counter(), method, url))

    from ctsd.ratelimit.limiter import Demand, Permit, RateLimiter

    acquire = RateLimiter.acquire

    async def timed_acquire(self: RateLimiter, demands: Any, lane: Any) -> Permit:
        started = time.perf_counter()
        try:
            return await acquire(self, demands, lane)
        finally:
            names = ",".join(str(getattr(d.bucket, "key", "?")) for d in demands
                             if isinstance(d, Demand))
            records.append((started, time.perf_counter(), "LIMIT", names))

    if trace:
        Exchange.fetch = timed
        RateLimiter.acquire = timed_acquire  # type: ignore[method-assign]
    try:
        return _ctsd_with_limits(rest)
    finally:
        if trace:
            rows = [(a, b, m, u if m == "LIMIT" else urlsplit(u).path)
                    for a, b, m, u in records]
            Path(trace).write_text(json.dumps(rows))


def daemon_launcher(trace: str = "") -> list[str]:
    return [sys.executable, "-m", "bench.engine_bench", "--role", "daemon", "--trace", trace,
            "--", "--"]


def daemon(sim: SimProcess, trace: str = "") -> DaemonProcess:
    """ctsd on the simulator, Binance's request weight and order limits raised by
    `LIMIT_SCALE` through its config file's `[rate_limits]` (since that table exists,
    `bench.support ctsd --limit` no longer reaches the limiter: the config's overrides
    object is always passed, and the patch only fills in a missing one)."""
    made = bench_daemon(launcher=daemon_launcher(trace))
    config = made.root / "ctsd.toml"
    config.write_text(
        "[rate_limits.binance.request_weight]\n"
        f"limit = {1200 * LIMIT_SCALE:.0f}\ninterval_s = 60\n"
        "[rate_limits.binance.orders]\n"
        f"limit = {50 * LIMIT_SCALE:.0f}\ninterval_s = 10\n"
        "[rate_limits.binance.futures_request_weight]\n"
        f"limit = {2400 * LIMIT_SCALE:.0f}\ninterval_s = 60\n"
        "[rate_limits.binance.futures_orders]\n"
        f"limit = {300 * LIMIT_SCALE:.0f}\ninterval_s = 10\n")
    made.extra_args = ["--config", str(config), "--sim-endpoint", sim.base_url]
    return made


# --- engine configs --------------------------------------------------------------------------


def catalog_symbols(markets: int) -> list[tuple[str, Decimal]]:
    from ctsd.sim.market import MarketCatalog

    return list(MarketCatalog(1, markets).initial_prices.items())


def paper_config(index: int, symbol: str, price: Decimal) -> pb.EngineConfig:
    interval = duration_pb2.Duration(seconds=INTERVAL_S)
    if index % 2 == 0:
        return pb.EngineConfig(strategy="sma_cross", symbols=[symbol], interval=interval,
                               params={"fast": "2", "slow": "3", "quote_amount": "100"})
    amount = Decimal(50) / price
    config = pb.EngineConfig(strategy="grid", symbols=[symbol], interval=interval, params={
        "reference_price": f"{price}", "spacing_pct": "1", "levels": "2",
        "amount": f"{amount:.6g}"})
    base = symbol.split("/")[0]
    config.paper.balances["USDT"] = "100000"
    config.paper.balances[base] = f"{amount * 10:.6g}"
    return config


# --- phase 1: cycle lag from one watch stream ---------------------------------------------


class CycleLog:
    """Cycle starts per engine (wall ms) from cycle-completion events of a watch stream."""

    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = {}
        self.durations: dict[str, list[float]] = {}
        self.reported_lags: dict[str, list[float]] = {}
        """The daemon's own `last_cycle_lag` of each cycle: a cross-check of `lags`."""
        self.counts: dict[str, list[int]] = {}
        self.resyncs = 0
        self.delivery: list[tuple[float, float]] = []
        """(receipt wall ms, receipt - heartbeat ms) of cycle-completion events: the
        delivery baseline of one watcher (this process)."""

    def take(self, engine: pb.Engine) -> None:
        if engine.cycles < 1:
            return
        end = engine.last_cycle_time.ToNanoseconds() / 1e6
        duration = engine.last_cycle_duration.ToNanoseconds() / 1e6
        start = end - duration
        starts = self.starts.setdefault(engine.name, [])
        if starts and abs(starts[-1] - start) < 0.5:
            return  # the same cycle again (another change within it, or a snapshot)
        starts.append(start)
        self.durations.setdefault(engine.name, []).append(duration)
        self.reported_lags.setdefault(engine.name, []).append(
            engine.last_cycle_lag.ToNanoseconds() / 1e6)
        self.counts.setdefault(engine.name, []).append(engine.cycles)

    async def follow(self, stub: sgrpc.EngineServiceAsyncStub) -> None:
        async for event in stub.WatchEngines(pb.WatchEnginesRequest()):
            received = time.time_ns() / 1e6
            for engine in changed_engines(event):
                seen = self.counts.get(engine.name, [0])[-1]
                if engine.cycles > seen and engine.heartbeat_time == engine.last_cycle_time:
                    heartbeat = engine.heartbeat_time.ToNanoseconds() / 1e6
                    self.delivery.append((received, received - heartbeat))
                self.take(engine)
            if event.WhichOneof("event") == "snapshot":
                self.resyncs += event.snapshot.resync
                for engine in event.snapshot.engines:
                    self.take(engine)

    def lags(self, names: list[str], t0_ms: float, t1_ms: float) -> dict[str, Any]:
        """Lag of every cycle of `names` that started in [t0, t1), against its schedule."""
        interval = INTERVAL_S * 1000.0
        lags: list[float] = []
        durations: list[float] = []
        reported: list[float] = []
        missed = cycles = 0
        for name in names:
            starts = self.starts.get(name, [])
            if not starts:
                continue
            first = starts[0]
            ticks = []
            for i, start in enumerate(starts):
                tick = int((start - first + 1.0) // interval)  # +1 ms: rounding of the ms
                ticks.append(tick)
                if t0_ms <= start < t1_ms:
                    cycles += 1
                    lags.append(max(0.0, start - (first + tick * interval)))
                    durations.append(self.durations[name][i])
                    reported.append(self.reported_lags[name][i])
            counts = self.counts[name]
            pairs = zip(itertools.pairwise(ticks), itertools.pairwise(counts),
                        starts[1:], strict=True)
            for (a, b), (ca, cb), later in pairs:
                # consecutive cycles both seen: the ticks between them were skipped
                if cb - ca == 1 and t0_ms <= later < t1_ms:
                    missed += max(0, b - a - 1)
        delivered = [d for at, d in self.delivery if t0_ms <= at < t1_ms]
        return {"cycles": cycles, "lag": summary(lags), "lag_worst_ms": worst(lags),
                "lag_reported_by_daemon": summary(reported),
                "duration": summary(durations), "missed_ticks": missed,
                "bench_watcher_delivery": summary(delivered)}


async def start_engines(stub: sgrpc.EngineServiceAsyncStub, names: list[str],
                        configs: list[pb.EngineConfig]) -> None:
    for name, config in zip(names, configs, strict=True):
        await stub.StartEngine(pb.StartEngineRequest(name=name, config=config), timeout=30)


async def wait_cycles(stub: sgrpc.EngineServiceAsyncStub, names: list[str], cycles: int,
                      within_s: float) -> None:
    wanted = set(names)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        listed = (await stub.ListEngines(pb.ListEnginesRequest(), timeout=10)).engines
        ready = {e.name for e in listed if e.name in wanted and e.cycles >= cycles
                 and e.state == pb.ENGINE_STATE_RUNNING}
        if ready == wanted:
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"engines did not reach {cycles} cycles in {within_s} s")


# --- phase 2: the watchers' child process --------------------------------------------------


WATCH_METHOD = "/cts.v1.EngineService/WatchEngines"


async def run_watchers(address: str, count: int, seconds: float) -> dict[str, Any]:
    """`count` WatchEngines streams in this process, each timing what it receives.

    A message is timed when gRPC hands its bytes to the watcher, and decoded after
    the window: a user's watcher runs in its own process, so decoding 500 copies of
    each change here (a Python loop over every engine of every copy: about 2 ms per
    1,000 engines) would make the last stream's receipt wait for the other 499
    streams' decoding, and measure this process's queue instead of the daemon's
    delivery. The decoding cost is reported on its own (`client_decode_s`)."""
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(WATCH_CHANNELS)]
    received: list[list[tuple[float, bytes]]] = [[] for _ in range(count)]
    window = [0.0, 0.0]
    ready = asyncio.Event()
    pending = [count]
    request = pb.WatchEnginesRequest().SerializeToString()

    async def one(index: int) -> None:
        watch: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channels[
            index % WATCH_CHANNELS].unary_stream(WATCH_METHOD)  # bytes as sent
        mine = received[index]
        async for message in watch(request):
            mine.append((time.time_ns() / 1e6, message))
            if len(mine) == 1:
                pending[0] -= 1
                if not pending[0]:
                    ready.set()

    tasks = [asyncio.create_task(one(i)) for i in range(count)]
    try:
        await asyncio.wait_for(ready.wait(), 120)
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        window[0] = time.time_ns() / 1e6
        window[1] = window[0] + seconds * 1000
        cpu0 = time.process_time()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu0
        assert line.strip() == "go", line
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
    decoding = time.process_time()
    latencies, newest, counts, in_herds, elsewhere = delivery(received, window[0], window[1])
    return {"latencies": latencies, "newest": newest, "in_herds": in_herds,
            "elsewhere": elsewhere,
            "events": counts, "cpu_s": cpu,
            "seconds": seconds, "decode_s": time.process_time() - decoding}


def watch_summary(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The watcher processes' samples together."""
    events: dict[str, int] = {}
    for part in parts:
        for key, value in part["events"].items():
            events[key] = events.get(key, 0) + value
    return {"delivery": summary([v for p in parts for v in p["latencies"]]),
            "delivery_of_newest": summary([v for p in parts for v in p["newest"]]),
            "delivery_in_herd_seconds": summary([v for p in parts for v in p["in_herds"]]),
            "delivery_elsewhere": summary([v for p in parts for v in p["elsewhere"]]),
            "events": events, "processes": len(parts),
            "client_cpu_pct": round(100 * sum(p["cpu_s"] / p["seconds"] for p in parts), 1),
            "client_decode_s": round(sum(p["decode_s"] for p in parts), 2)}


def coordinate_watchers(address: str, count: int, seconds: float, processes: int) -> None:
    """`count` streams over `processes` watcher processes, started on one "go": a user's
    watcher has a process of its own, and 500 streams in one Python process queue each
    message's receipt behind the others' (about 0.1 ms each for a large message)."""
    folder = Path(tempfile.mkdtemp(prefix="ctsb-watch-", dir="/tmp"))
    shares = [count // processes + (i < count % processes) for i in range(processes)]
    outs = [folder / f"{i}.json" for i in range(processes)]
    with contextlib.ExitStack() as stack:
        children = [stack.enter_context(stopping(spawn_watchers(
            address, share, seconds, 1, str(out)))) for share, out in zip(shares, outs,
                                                                          strict=True)]
        for child in children:
            if read_line(child, 300) != "ready":
                raise RuntimeError("a watcher process did not come up")
        print("ready", flush=True)
        line = sys.stdin.readline()
        assert line.strip() == "go", line
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
        for child in children:
            if read_line(child, seconds + 300) != "done":
                raise RuntimeError("a watcher process did not finish")
    parts = [json.loads(out.read_text()) for out in outs]
    for out in outs:
        out.unlink()
    folder.rmdir()
    print(json.dumps(watch_summary(parts)), flush=True)


HERD_CHANGES = 250
"""Engines' cycles completing within one second that make it a herd second: a market
moment (a candle close, engines idling in lockstep) that woke a quarter of 1,000 engines."""


def delivery(received: list[list[tuple[float, bytes]]], t0_ms: float, t1_ms: float,
             ) -> tuple[list[float], list[float], dict[str, int], list[float], list[float]]:
    """Receipt - `heartbeat_time` of every cycle completion a watcher received in
    [t0, t1) (the first time it saw that cycle of that engine); the same of the newest
    change of each message (how long the daemon took once it had the change that
    completed the message: the rest of the delivery is its wait for the message to
    be cut); event counts; and the latencies split between the changes made in herd
    seconds (`HERD_CHANGES`), whose messages carry hundreds of statuses each, and the
    others."""
    latencies: list[float] = []
    beats: list[int] = []
    cycles_by_second: dict[int, set[tuple[str, int]]] = {}
    newest: list[float] = []
    counts = {"changed": 0, "messages_with_changes": 0, "snapshot": 0, "resync": 0,
              "heartbeat": 0}
    for messages in received:
        seen: dict[str, int] = {}
        for at, raw in messages:
            event = pb.WatchEnginesResponse.FromString(raw)
            in_window = t0_ms <= at < t1_ms
            kind = event.WhichOneof("event")
            if kind == "snapshot":
                for engine in event.snapshot.engines:
                    seen[engine.name] = engine.cycles
                if in_window:
                    counts["snapshot"] += 1
                    counts["resync"] += event.snapshot.resync
                continue
            if kind == "heartbeat":
                counts["heartbeat"] += in_window
                continue
            changed = changed_engines(event)
            if in_window:
                counts["messages_with_changes"] += 1
                counts["changed"] += len(changed)
            last = 0.0
            for engine in changed:
                if engine.cycles > seen.get(engine.name, 0) and (
                        engine.heartbeat_time == engine.last_cycle_time):
                    seen[engine.name] = engine.cycles
                    if in_window:
                        beat = engine.heartbeat_time.ToNanoseconds() / 1e6
                        latencies.append(at - beat)
                        beats.append(int(beat // 1000))
                        cycles_by_second.setdefault(beats[-1], set()).add(
                            (engine.name, engine.cycles))
                        last = max(last, beat)
            if last:
                newest.append(at - last)
    herds = {s for s, seen in cycles_by_second.items() if len(seen) >= HERD_CHANGES}
    in_herds = [v for v, s in zip(latencies, beats, strict=True) if s in herds]
    elsewhere = [v for v, s in zip(latencies, beats, strict=True) if s not in herds]
    return latencies, newest, counts, in_herds, elsewhere


def spawn_watchers(address: str, count: int, seconds: float, processes: int = WATCH_PROCESSES,
                   samples_out: str = "") -> subprocess.Popen[bytes]:
    """The watchers' child: it prints "ready", waits for "go" on stdin, watches for
    `seconds` and prints its summary (or, with `samples_out`, writes its samples there
    and prints "done")."""
    return subprocess.Popen(
        [sys.executable, "-m", "bench.engine_bench", "--role", "watchers", "--address", address,
         "--watchers", str(count), "--watch-seconds", repr(seconds), "--parent", str(os.getpid()),
         "--watcher-processes", str(processes), "--samples-out", samples_out],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline().decode().strip() if ready else ""


@contextlib.contextmanager
def stopping(proc: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- phase 3: LIVE decision latency from the daemon's fetch trace ---------------------------


def decision_latencies(rows: list[list[Any]]) -> dict[str, Any]:
    rows.sort(key=lambda r: r[0])
    literal: list[float] = []
    compute: list[float] = []
    waits: list[float] = []
    posts = 0
    last_md_end: float | None = None
    used_md: float | None = None
    for i, (start, end, method, path) in enumerate(rows):
        if method == "GET" and any(p in path for p in MARKET_DATA_PATHS):
            last_md_end = end if last_md_end is None else max(last_md_end, end)
            continue
        if not (method == "POST" and path.endswith(ORDER_PATHS)):
            continue
        posts += 1
        if last_md_end is None or used_md == last_md_end or start < last_md_end:
            continue  # not the first order after this market-data answer
        used_md = last_md_end
        span = (start - last_md_end) * 1000
        overlap = {"fetch": 0.0, "LIMIT": 0.0}
        for s, e, m, _ in rows[:i]:
            if e > last_md_end and s < start:
                overlap["LIMIT" if m == "LIMIT" else "fetch"] += (
                    min(e, start) - max(s, last_md_end)) * 1000
        network, limiter = overlap["fetch"], overlap["LIMIT"]
        literal.append(span)
        compute.append(span - network)
        waits.append(limiter)
    stalls = [(s, e, p) for s, e, m, p in rows if m == "LIMIT" and e - s > 1.0]
    return {"orders_posted": posts, "md_to_order": summary(literal),
            "decision_compute": summary(compute), "decision_compute_worst_ms": worst(compute),
            "limiter_wait_in_decision": summary(waits),
            "limiter_stalls_over_1s": [{"s": round(e - s, 2), "buckets": p}
                                       for s, e, p in stalls][:10]}


async def live_phase(sim: SimProcess, account: dict[str, Any], seconds: float,
                     pace_s: float, perpetual: bool = False) -> dict[str, Any]:
    """Starts paced `pace_s` apart (each costs ~80 Binance request weight; at Binance's
    own 1,200/min the limiter would stall the loop for most of a minute); `perpetual`:
    on a perpetuals connection at a leverage."""
    trace = Path(tempfile.mkdtemp(prefix="ctsb-trace-", dir="/tmp")) / "fetch.json"
    ctsd = daemon(sim, str(trace))
    starts = 0
    try:
        ctsd.start(timeout=60)
        [name] = seed_accounts(ctsd.address, [account], 900, cpb.API_TYPE_PERPETUAL_FUTURES
                               if perpetual else cpb.API_TYPE_SPOT)
        symbol = LIVE_PERP_SYMBOL if perpetual else LIVE_SYMBOL
        async with grpc.aio.insecure_channel(ctsd.address) as channel:
            conns = csgrpc.ConnectionServiceStub(channel)
            async for event in conns.TestConnection(cspb.TestConnectionRequest(name=name),
                                                    timeout=60):
                if event.HasField("result"):
                    assert event.result.status != cpb.TEST_STATUS_FAILED, event.result
            stub = sgrpc.EngineServiceStub(channel)
            engine = f"{name}/engine"
            probe = pb.EngineConfig(strategy="grid", symbols=[symbol], params={
                "reference_price": "1", "spacing_pct": "1", "levels": "1", "amount": "0.001"},
                interval=duration_pb2.Duration(seconds=INTERVAL_S))
            if perpetual:
                probe.leverage[symbol] = 5
            dry = await stub.TestEngine(pb.TestEngineRequest(name=engine, config=probe))
            price = dry.tickers[0].last
            config = pb.EngineConfig()
            config.CopyFrom(probe)
            config.params["reference_price"] = price
            config.params["levels"] = "2"
            config.mode = pb.TRADING_MODE_LIVE
            deadline = time.monotonic() + seconds
            next_start = time.monotonic()
            while time.monotonic() < deadline:
                await asyncio.sleep(max(0.0, next_start - time.monotonic()))
                next_start = time.monotonic() + pace_s
                await stub.StartEngine(pb.StartEngineRequest(name=engine, config=config))
                starts += 1
                until = time.monotonic() + 10
                while time.monotonic() < until:
                    got = await stub.GetEngine(pb.GetEngineRequest(name=engine))
                    if got.orders_placed >= 2 or got.state == pb.ENGINE_STATE_FAILED:
                        break
                    await asyncio.sleep(0.02)
                assert got.state != pb.ENGINE_STATE_FAILED, got.last_error
                await stub.StopEngine(pb.StopEngineRequest(name=engine))
    finally:
        ctsd.cleanup()  # SIGTERM: the wrapper writes the trace on its way out
    rows = json.loads(trace.read_text()) if trace.exists() else []
    trace.unlink(missing_ok=True)
    trace.parent.rmdir()
    result = decision_latencies(rows)
    result["engine_starts"] = starts
    result["fetches_traced"] = len(rows)
    return result


# --- the run -------------------------------------------------------------------------------


async def watch_step(args: argparse.Namespace, stub: sgrpc.EngineServiceAsyncStub,
                     cycles: CycleLog, names: list[str], pid: int, address: str, count: int,
                     ) -> dict[str, Any]:
    with stopping(spawn_watchers(address, count, args.watch_seconds)) as child:
        if read_line(child, 150) != "ready":
            raise RuntimeError("watchers did not come up")
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        t0 = time.time() * 1000
        window = asyncio.create_task(Window(pid).run(args.watch_seconds))
        await asyncio.sleep(args.watch_seconds / 2)
        health = await stub.GetCoordinatorHealth(pb.GetCoordinatorHealthRequest())
        watch = await window
        watch["watchers_mid_window"] = health.watchers
        watch.update(cycles.lags(names, t0, time.time() * 1000))
        line = await asyncio.get_running_loop().run_in_executor(None, read_line, child, 60)
        watch.update(json.loads(line) if line.startswith("{") else {"error": line})
    await asyncio.sleep(args.watch_settle)  # the daemon drains the closed streams
    return watch


async def paper_and_watch(args: argparse.Namespace, sim: SimProcess,
                          accounts: list[dict[str, Any]]) -> dict[str, Any]:
    ctsd = daemon(sim)
    out: dict[str, Any] = {}
    try:
        ctsd.start(timeout=60)
        assert ctsd.proc is not None
        pid = ctsd.proc.pid
        conns = seed_accounts(ctsd.address, accounts)
        names = [f"{c}/engine" for c in conns]
        catalog = catalog_symbols(args.markets)
        step = max(1, len(catalog) // args.engines)
        configs = [paper_config(i, *catalog[(i * step) % len(catalog)])
                   for i in range(args.engines)]
        async with grpc.aio.insecure_channel(ctsd.address) as channel:
            stub = sgrpc.EngineServiceStub(channel)
            cycles = CycleLog()
            follower = asyncio.create_task(cycles.follow(stub))
            try:
                out["idle"] = await Window(pid).run(args.baseline_seconds / 2)
                log(f"idle daemon: {out['idle']}")
                await start_engines(stub, names[:1], configs[:1])
                await wait_cycles(stub, names[:1], 2, 30)
                t0 = time.time() * 1000
                one = await Window(pid).run(args.baseline_seconds)
                one.update(cycles.lags(names[:1], t0, time.time() * 1000))
                out["one_engine"] = one
                log(f"one engine: {one}")
                await start_engines(stub, names[1:], configs[1:])
                await wait_cycles(stub, names, 2, 120)
                log(f"{args.engines} engines running; window of {args.seconds} s")
                t0 = time.time() * 1000
                paper = await Window(pid).run(args.seconds)
                paper.update(cycles.lags(names, t0, time.time() * 1000))
                listed = (await stub.ListEngines(pb.ListEnginesRequest())).engines
                paper["engines_running"] = sum(e.state == pb.ENGINE_STATE_RUNNING
                                               for e in listed)
                paper["orders_placed"] = sum(e.orders_placed for e in listed)
                paper["resyncs_seen_by_bench_watcher"] = cycles.resyncs
                out["paper"] = paper
                log(f"paper: {paper}")

                out["watch"] = {}
                for count in args.watcher_steps:
                    watch = await watch_step(args, stub, cycles, names, pid, ctsd.address,
                                             count)
                    out["watch"][str(count)] = watch
                    log(f"watch {count}: {watch}")
            finally:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
                    await follower
    finally:
        ctsd.cleanup()
    return out


def ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b \
        else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    accounts = bench_accounts(args.engines + 1)
    sim = SimProcess(args.markets, limit_scale=LIMIT_SCALE, accounts=accounts)
    result: dict[str, Any] = {"bench": "engine", "markets": args.markets,
                              "engines": args.engines, "watchers": args.watchers,
                              "interval_s": INTERVAL_S, "cpus": os.cpu_count()}
    try:
        sim.start()
        log(f"simulator at {sim.base_url} with {args.markets} markets")
        phases = await paper_and_watch(args, sim, accounts[:-1])
        log(f"live phase, {args.live_seconds} s")
        phases["live"] = await live_phase(sim, accounts[-1], args.live_seconds,
                                          args.live_pace)
        log(f"live: {phases['live']}")
        log(f"live perpetuals phase, {args.live_seconds} s")
        phases["live_perp"] = await live_phase(sim, accounts[-1], args.live_seconds,
                                               args.live_pace, perpetual=True)
        log(f"live perpetuals: {phases['live_perp']}")
        stats = sim.stats()
        phases["sim_violations"] = sum(int(n) for n in stats.get("violations", {}).values())
    finally:
        sim.stop()
    paper, one, idle = phases["paper"], phases["one_engine"], phases["idle"]
    watch, live = phases["watch"][str(args.watcher_steps[-1])], phases["live"]
    perp = phases["live_perp"]
    result.update({
        "paper_cpu_pct": paper["cpu_pct"],
        "paper_rss_mb_max": paper["rss_mb_max"],
        "cycle_lag_p50_ms": paper["lag"]["p50_ms"],
        "cycle_lag_p99_ms": paper["lag"]["p99_ms"],
        "cycle_lag_meets_target": (paper["lag"]["p99_ms"] or 1e9) < TARGET_LAG_P99_MS,
        "cpu_vs_one_engine": ratio(paper["cpu_pct"], one["cpu_pct"]),
        "cpu_vs_idle": ratio(paper["cpu_pct"], idle["cpu_pct"]),
        "lag_p99_vs_one_engine": ratio(paper["lag"]["p99_ms"], one["lag"]["p99_ms"]),
        "decision_md_to_order_p50_ms": live["md_to_order"]["p50_ms"],
        "decision_md_to_order_p99_ms": live["md_to_order"]["p99_ms"],
        "decision_compute_p50_ms": live["decision_compute"]["p50_ms"],
        "decision_compute_p99_ms": live["decision_compute"]["p99_ms"],
        "decision_samples": live["decision_compute"]["n"],
        "decision_limiter_wait_p99_ms": live["limiter_wait_in_decision"]["p99_ms"],
        "decision_compute_meets_target": (
            (live["decision_compute"]["p99_ms"] or 1e9) < TARGET_DECISION_P99_MS),
        "perp_decision_md_to_order_p50_ms": perp["md_to_order"]["p50_ms"],
        "perp_decision_md_to_order_p99_ms": perp["md_to_order"]["p99_ms"],
        "perp_decision_compute_p50_ms": perp["decision_compute"]["p50_ms"],
        "perp_decision_compute_p99_ms": perp["decision_compute"]["p99_ms"],
        "perp_decision_samples": perp["decision_compute"]["n"],
        "perp_decision_limiter_wait_p99_ms": perp["limiter_wait_in_decision"]["p99_ms"],
        "perp_decision_compute_meets_target": (
            (perp["decision_compute"]["p99_ms"] or 1e9) < TARGET_DECISION_P99_MS),
        "cycle_lag_p99_under_watchers_ms": watch["lag"]["p99_ms"],
        "missed_ticks_under_watchers": watch["missed_ticks"],
        "watch_delivery_one_watcher_p99_ms": paper["bench_watcher_delivery"]["p99_ms"],
        "watch_delivery_p50_ms": watch.get("delivery", {}).get("p50_ms"),
        "watch_delivery_p99_ms": watch.get("delivery", {}).get("p99_ms"),
        "watch_delivery_meets_target": (
            (watch.get("delivery", {}).get("p99_ms") or 1e9) < TARGET_DELIVERY_P99_MS),
        "targets_ms": {"cycle_lag_p99": TARGET_LAG_P99_MS,
                       "decision_p99": TARGET_DECISION_P99_MS,
                       "watch_delivery_p99": TARGET_DELIVERY_P99_MS},
        "phases": phases,
    })
    return result


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that `finally` stops every child


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=60.0, help="paper window")
    parser.add_argument("--engines", type=int, default=100)
    parser.add_argument("--markets", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--watch-seconds", type=float, default=0.0,
                        help="watchers window (default: min(20, seconds))")
    parser.add_argument("--live-seconds", type=float, default=0.0,
                        help="LIVE restart loop (default: min(20, seconds))")
    parser.add_argument("--baseline-seconds", type=float, default=0.0,
                        help="one-engine baseline (default: min(10, seconds / 2))")
    parser.add_argument("--live-pace", type=float, default=0.5,
                        help="seconds between LIVE engine starts")
    parser.add_argument("--watcher-steps", default="",
                        help="comma-separated watcher counts, run in order (default: 50,WATCHERS)")
    parser.add_argument("--watch-settle", type=float, default=5.0,
                        help="pause after each watcher step")
    hidden = argparse.SUPPRESS
    parser.add_argument("--role", default="main", choices=("main", "daemon", "watchers"),
                        help=hidden)
    parser.add_argument("--trace", default="", help=hidden)
    parser.add_argument("--address", default="", help=hidden)
    parser.add_argument("--parent", type=int, default=0, help=hidden)
    parser.add_argument("--watcher-processes", type=int, default=WATCH_PROCESSES, help=hidden)
    parser.add_argument("--samples-out", default="", help=hidden)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=hidden)
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.engines < 1 or args.watchers < 1:
        parser.error("--seconds, --engines and --watchers must be positive")
    args.watch_seconds = args.watch_seconds or min(20.0, args.seconds)
    args.live_seconds = args.live_seconds or min(20.0, args.seconds)
    args.baseline_seconds = args.baseline_seconds or min(10.0, args.seconds / 2)
    steps = args.watcher_steps or f"{min(50, args.watchers)},{args.watchers}"
    args.watcher_steps = sorted({int(n) for n in steps.split(",") if n.strip()})
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.role == "daemon":
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        return run_daemon(args.trace, rest)
    if args.role == "watchers":
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # die with the parent
        if args.watcher_processes > 1:
            coordinate_watchers(args.address, args.watchers, args.watch_seconds,
                                args.watcher_processes)
            return 0
        found = asyncio.run(run_watchers(args.address, args.watchers, args.watch_seconds))
        if args.samples_out:  # one of several watcher processes: the coordinator sums up
            Path(args.samples_out).write_text(json.dumps(found))
            print("done", flush=True)
        else:
            print(json.dumps(watch_summary([found])), flush=True)
        return 0
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
