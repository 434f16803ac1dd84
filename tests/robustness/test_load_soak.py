"""Load and soak: 200 clients mixing every RPC and 500 engine watchers against the real daemon.

The daemon runs as a process with its metrics endpoint on, a few PAPER
engines cycling on simulator connections so the watch streams carry real
changes. The load comes from two child processes (tests/robustness/load_mix.py):
one drives the clients, one holds the watchers, so neither competes with the
simulator thread in this process. Measured from outside, once a second: the
daemon's RSS (/proc/PID/status), its open fds (/proc/PID/fd) and its live
asyncio tasks (`ctsd_asyncio_tasks`, scraped).

Passing means: every answer had a code expected for its call (never
UNKNOWN, INTERNAL or a client-side DEADLINE_EXCEEDED); every watcher got a
snapshot first and kept getting events; RSS at the end within 5 % of RSS
after warm-up (once the daemon has answered half of the load's calls, and at
least 15 s in); and once every client and
watcher is gone, fds and tasks back to the pre-load baseline.

`CTS_SOAK_SECONDS` sets the duration: 30 s here, 600 s in `make soak`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from prometheus_client.parser import text_string_to_metric_families

from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as epb
from cts.v1 import engine_service_pb2_grpc as egrpc
from tests.robustness.load_mix import LoadPlan, LoadReport, client_secret
from tests.robustness.tally import Tally, log_problems
from tests.support.conn_tests import PASSPHRASE, SECRET_PREFIX, run_test, sim_connection
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.simulator import SimulatorThread, running_simulator

pytestmark = pytest.mark.long

SOAK_SECONDS = float(os.environ.get("CTS_SOAK_SECONDS", "30"))
CLIENTS = 200
WATCHERS = 500
CLIENT_CHANNELS = 8
STARTERS = 8  # clients that also start and stop engines on their own connections
# Binance's 1200 weight/min is the tightest budget: one engine there, the rest on Bybit and OKX.
SHARED_ENGINES = (("soak-eng-bybit-1", "bybit"), ("soak-eng-okx-1", "okx"),
                  ("soak-eng-bybit-2", "bybit"), ("soak-eng-binance-1", "binance"))  # fmt: skip
EXCHANGE_CALLS_PER_S = 3.0  # connection tests and dry runs: see load_mix.Pacer
ENGINE_STARTS_PER_S = 0.5
# Client i's connections are on CLIENT_EXCHANGES[i % 8]: Kraken's budget (about one
# public call a second per IP) is the smallest, so one client in eight uses it.
CLIENT_EXCHANGES = ("bybit", "binance", "okx", "kraken", "bybit", "binance", "okx", "bybit")
KEY_PREFIX = "soak-key-"
RSS_GROWTH_MAX = 1.05
WARM_UP_MIN_S = 15.0
"""The quick form's warm-up: with both cores busy elsewhere, 10 s of load had not yet
filled the daemon's caches (RSS 162.7 MB at 10 s, 172.0 MB at 30 s: +5.7 %), while the
600 s form measures from 200 s on."""
WARM_UP_SHARE = 1 / 2
"""Warm-up ends when the daemon has answered this share of the load's calls, not at a
fixed second: a run whose clients started slowly (a busy machine) was measured at 16 s
before its caches had filled (158 MB, against 167 MB at 14 s in a run at full pace) and
failed the growth bound (1.063x) with the same end RSS as runs that passed. At full pace
the quick form has answered about 60 % of its calls at 16 s, so this moves only a slow
run's warm-up."""
# After the load, fds and tasks may exceed the idle baseline by a few that are
# not per-client state. Fds: the exchange clients' shared HTTP session keeps
# keep-alive sockets to the simulator, more of them after concurrent requests
# (bounded per host); the runs so far left 2 to 4 such sockets. Tasks: none
# so far (each exchange's market-cache refresher is started before the
# baseline, see start_shared_engines). A leak is per client or per stream:
# 200 clients and 500 watchers would leave hundreds, not a handful.
FD_SLACK = 8
TASK_SLACK = 3
# Idle keep-alive sockets close after aiohttp's 15 s timeout, found by a cleanup
# that runs every 15 s: up to 30 s after the load. Settling stops as soon as fds
# and tasks are back, so this costs nothing when they are.
SETTLE_S = 40.0
MAX_SILENCE_S = 15.0  # heartbeats come every 5 s; 3 missed ones is a stuck stream
MAX_SNAPSHOT_S = 30.0
"""From opening a stream to its snapshot: 500 streams open at once in one client process
while 200 clients start, so the last ones wait behind the others' snapshots."""
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Sample:
    at_s: float
    rss_kb: int
    fds: int
    tasks: int
    handled: int = 0  # RPCs the daemon has answered so far (grpc_server_handled_total)
    by_coroutine: Counter[str] = field(default_factory=Counter)


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found, status
    return int(found.group(1))


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(metrics_address: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The endpoint's samples by name: (labels, value) pairs."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    with opener.open(f"http://{metrics_address}/metrics", timeout=5) as answer:
        body: str = answer.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            found.setdefault(s.name, []).append((s.labels, s.value))
    return found


def sample(daemon: DaemonProcess, metrics: str, started: float) -> Sample:
    assert daemon.proc is not None
    pid = daemon.proc.pid
    scraped = scrape(metrics)
    assert "ctsd_asyncio_tasks" in scraped, "no ctsd_asyncio_tasks gauge on the metrics endpoint"
    by_coroutine = Counter({labels["coroutine"]: int(value) for labels, value
                            in scraped.get("ctsd_asyncio_tasks_by_coroutine", [])})  # fmt: skip
    handled = sum(value for _, value in scraped.get("grpc_server_handled_total", []))
    return Sample(time.monotonic() - started, rss_kb(pid), fd_count(pid),
                  int(scraped["ctsd_asyncio_tasks"][0][1]), int(handled), by_coroutine)  # fmt: skip


def fd_kinds(pid: int) -> Counter[str]:
    """Open fds by what they are: a TCP socket by its peer's port, a Unix socket, a pipe,
    anon_inode:[eventfd], or a file's name."""
    peers = _socket_peers(pid)
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed while we looked
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            inode = re.fullmatch(r"socket:\[(\d+)\]", target)
            if inode:
                kinds[peers.get(inode.group(1), "socket")] += 1
            else:
                kinds[re.sub(r":\[\d+\]$", "", target) if "[" in target else Path(target).name] += 1
    return kinds


def _socket_peers(pid: int) -> dict[str, str]:
    """Socket inode -> "tcp:PEERPORT" or "unix", from the process's /proc/PID/net tables."""
    peers: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                peers[cols[9]] = f"tcp:{int(cols[2].rsplit(':', 1)[1], 16)}"
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
            peers[line.split()[6]] = "unix"
    return peers


def grown(before: Counter[str], after: Counter[str]) -> str:
    """What there is more of after than before, e.g. tasks by coroutine: where a leak shows."""
    return ", ".join(f"{k}+{n}" for k, n in sorted((after - before).items())) or "none"


def rate_limit_waits(metrics: str) -> str:
    """Time requests queued for exchange budget, and refusals, per exchange: the slow calls' why."""
    scraped = scrape(metrics)
    waits: defaultdict[str, float] = defaultdict(float)
    refusals: defaultdict[str, float] = defaultdict(float)
    for labels, value in scraped.get("ctsd_ratelimit_wait_seconds_total", []):
        waits[labels["exchange"]] += value
    for labels, value in scraped.get("ctsd_ratelimit_rejections_total", []):
        refusals[labels["exchange"]] += value
    return ", ".join(f"{x}: queued {waits[x]:.0f} s, refused {refusals[x]:.0f}"
                     for x in sorted(waits))  # fmt: skip


def metrics_address(daemon: DaemonProcess) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = re.search(r"metrics_address=\"?([0-9.:\[\]]+)", daemon.logs())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"the daemon never said where metrics are served:\n{daemon.logs()}")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with running_simulator() as simulator:
        yield simulator


@pytest.fixture(scope="module")
def soak_daemon(sim: SimulatorThread) -> Iterator[DaemonProcess]:
    """ctsd pointed at the simulator, metrics on; its own, as the test measures it from outside."""
    root = short_tempdir()
    config = root / "ctsd.toml"
    config.write_text("".join(f'[exchanges.{x}]\nendpoint = "{sim.base_url}"\n'
                              for x in sorted(set(CLIENT_EXCHANGES))))  # fmt: skip
    # The shipped unit's MALLOC_ARENA_MAX (systemd/ctsd.service): the RSS check measures
    # the daemon as it runs in production.
    proc = DaemonProcess(root, ["--config", str(config), "--metrics-listen", "127.0.0.1:0"],
                         env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    try:
        yield proc.start()
    finally:
        proc.stop()
        if os.environ.get("CTS_SOAK_KEEP"):  # the daemon's log and the load's reports
            print(f"soak files kept in {root}")
        else:
            remove_tree(root)


def start_shared_engines(daemon: DaemonProcess, sim: SimulatorThread) -> list[str]:
    """PAPER engines cycling every second for the whole run: the watchers' changes.

    Every exchange the clients use is touched once before the baseline (a
    connection test where no engine runs), so the per-exchange market caches
    and their refresh tasks exist before it is taken, not because of the load.
    """
    names = []
    with grpc.insecure_channel(daemon.address) as channel:
        conns, engines = csgrpc.ConnectionServiceStub(channel), egrpc.EngineServiceStub(channel)
        for exchange in sorted(set(CLIENT_EXCHANGES) - {x for _, x in SHARED_ENGINES}):
            warm = sim_connection(conns, sim, f"soak-warm-{exchange}", exchange)
            assert run_test(conns, warm.name).result is not None
        for cid, exchange in SHARED_ENGINES:
            conn = sim_connection(conns, sim, cid, exchange)
            config = epb.EngineConfig(strategy="sma_cross", symbols=["BTC/USDT"],
                                      params={"fast": "2", "slow": "3", "quote_amount": "10"},
                                      interval=duration_pb2.Duration(seconds=1))  # fmt: skip
            engines.StartEngine(epb.StartEngineRequest(name=f"{conn.name}/engine", config=config))
            names.append(f"{conn.name}/engine")
        deadline = time.monotonic() + 20
        for name in names:
            while engines.GetEngine(epb.GetEngineRequest(name=name)).cycles < 2:
                assert time.monotonic() < deadline, f"{name} never cycled"
                time.sleep(0.1)
    return names


def spawn(plan: LoadPlan, root: Path, role: str) -> tuple[subprocess.Popen[bytes], Path]:
    plan_path, report = root / f"{role}-plan.json", root / f"{role}-report.json"
    plan.write(plan_path)
    log = open(root / f"{role}.log", "wb")  # noqa: SIM115 - the child holds it; closed below
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.robustness.load_mix", str(plan_path), str(report)],
        cwd=REPO, stdout=log, stderr=log)  # fmt: skip
    log.close()
    return child, report


def child_report(child: subprocess.Popen[bytes], report: Path, root: Path, role: str,
                 ) -> LoadReport:  # fmt: skip
    code = child.wait(30)
    log = (root / f"{role}.log").read_text(errors="replace")
    assert code == 0 and report.exists(), f"{role} load exited with {code}:\n{log[-3000:]}"
    return LoadReport.read(report)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(daemon: DaemonProcess, metrics: str, baseline: Sample, started: float) -> Sample:
    """Waits (bounded) for fds and tasks to fall back to the baseline; the last sample."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        now = sample(daemon, metrics, started)
        back = now.fds <= baseline.fds + FD_SLACK and now.tasks <= baseline.tasks + TASK_SLACK
        if back or time.monotonic() > deadline:
            return now
        time.sleep(0.5)


def plan_for(daemon: DaemonProcess, engines: list[str], clients: int, watchers: int,
             ) -> LoadPlan:  # fmt: skip
    return LoadPlan(
        address=daemon.address, seconds=SOAK_SECONDS, clients=clients, watchers=watchers,
        seed=7, channels=CLIENT_CHANNELS, shared_engines=tuple(engines),
        exchanges=CLIENT_EXCHANGES, key_prefix=KEY_PREFIX, secret_prefix=SECRET_PREFIX,
        passphrase=PASSPHRASE, starters=STARTERS, exchange_calls_per_s=EXCHANGE_CALLS_PER_S,
        engine_starts_per_s=ENGINE_STARTS_PER_S)  # fmt: skip


def rpc_tally(mixed: LoadReport) -> Tally:
    tally = Tally("soak: RPC mix")
    for stats in mixed.rpcs.values():
        for code, count in stats.codes.items():
            for _ in range(count):
                tally.answer(grpc.StatusCode[code])
    tally.lost = max(tally.lost, mixed.unexpected_count)  # deliberate, but not for that call
    tally.survived = tally.tried - tally.lost
    tally.notes += [f"unexpected: {u}" for u in mixed.unexpected]
    tally.notes += [
        f"{name:<22} n={s.n:<6} p50={s.p50_ms:7.1f} ms  p99={s.p99_ms:7.1f} ms  "
        f"max={s.max_ms:7.1f} ms"
        for name, s in mixed.rpcs.items()
    ]
    return tally


def watcher_tally(watched: LoadReport) -> Tally:
    """Bad: an error, anything before the snapshot, a snapshot too slow, nothing after it,
    or a long silence."""
    tally = Tally("soak: watchers")
    records = watched.watchers
    bad = [r for r in records if r.error or not r.snapshot_first
           or r.max_gap_s > MAX_SILENCE_S or r.first_s > MAX_SNAPSHOT_S
           or r.heartbeats + r.changes == 0]  # fmt: skip
    tally.tried, tally.lost, tally.survived = len(records), len(bad), len(records) - len(bad)
    changes, beats = sum(r.changes for r in records), sum(r.heartbeats for r in records)
    resyncs = sum(r.resyncs for r in records)
    worst = max(records, key=lambda r: r.max_gap_s, default=None)
    slowest = max((r.first_s for r in records), default=0.0)
    tally.notes.append(
        f"changes={changes} heartbeats={beats} resyncs={resyncs}, longest silence "
        f"{worst.max_gap_s if worst else 0:.1f} s (max {MAX_SILENCE_S:g}), ending "
        f"{worst.max_gap_end_s if worst else 0:.1f} s after its stream opened; slowest "
        f"snapshot {slowest:.1f} s after opening (max {MAX_SNAPSHOT_S:g})")  # fmt: skip
    tally.notes += [f"bad watcher: {r}" for r in bad[:5]]
    return tally


@dataclass(frozen=True)
class Figures:
    baseline: Sample
    warm: Sample
    end: Sample
    peak: Sample  # the largest of each measure during the load
    rss_path: list[Sample]  # a few samples spread over the load, for the report
    fds_grown: str  # what the fds held after the load and not before are (see fd_kinds)
    after: Sample
    cpu: dict[str, float]
    rate_limits: str


def health_tally(f: Figures, problems: list[str]) -> Tally:
    tally = Tally("soak: daemon RSS, fds, tasks")
    checks = {
        f"RSS {f.baseline.rss_kb} kB idle, {f.warm.rss_kb} kB after warm-up ({f.warm.at_s:.0f} s, "
        f"{f.warm.handled - f.baseline.handled} of {f.end.handled - f.baseline.handled} calls)"
        f", {f.end.rss_kb} kB at the end (max {RSS_GROWTH_MAX:.2f}x)":
            f.end.rss_kb <= RSS_GROWTH_MAX * f.warm.rss_kb,
        f"fds {f.baseline.fds} idle, {f.peak.fds} at peak, {f.after.fds} after "
        f"(slack {FD_SLACK}; grown: {f.fds_grown})": f.after.fds <= f.baseline.fds + FD_SLACK,
        f"tasks {f.baseline.tasks} idle, {f.peak.tasks} at peak, {f.after.tasks} after "
        f"(slack {TASK_SLACK}; grown: {grown(f.baseline.by_coroutine, f.after.by_coroutine)})":
            f.after.tasks <= f.baseline.tasks + TASK_SLACK,
    }  # fmt: skip
    tally.tried, tally.survived = len(checks), sum(checks.values())
    tally.lost = tally.tried - tally.survived
    tally.notes += [("ok   " if ok else "FAIL ") + text for text, ok in checks.items()]
    tally.notes.append("RSS over the load: " + ", ".join(
        f"{s.at_s:.0f} s {s.rss_kb // 1024} MB" for s in f.rss_path))
    tally.notes.append("CPU s during the load: " + ", ".join(
        f"{who}={seconds:.1f}" for who, seconds in f.cpu.items()))  # fmt: skip
    tally.notes.append(f"exchange budget: {f.rate_limits}")
    tally.notes += [f"daemon log: {p}" for p in problems[:5]]
    return tally


@dataclass
class LoadRun:
    samples: list[Sample]  # once a second while both children run
    cpu: dict[str, float]  # CPU seconds used during the load, by process
    watched: LoadReport
    mixed: LoadReport


def run_load(daemon: DaemonProcess, metrics: str, engines: list[str], started: float) -> LoadRun:
    """Both load children, sampled from outside until one of them is done."""
    assert daemon.proc is not None
    root, pid = daemon.root, daemon.proc.pid
    children = {
        "watchers": spawn(plan_for(daemon, engines, 0, WATCHERS), root, "watchers"),
        "clients": spawn(plan_for(daemon, engines, CLIENTS, 0), root, "clients"),
    }
    try:
        cpu = {"daemon": -cpu_seconds(pid)}
        samples: list[Sample] = []
        deadline = started + SOAK_SECONDS + 60
        while time.monotonic() < deadline and all(c.poll() is None for c, _ in children.values()):
            samples.append(sample(daemon, metrics, started))
            for who, (child, _) in children.items():
                with contextlib.suppress(OSError):  # it may have just exited
                    cpu[who] = cpu_seconds(child.pid)
            time.sleep(1)
        cpu["daemon"] += cpu_seconds(pid)
        watched = child_report(*children["watchers"], root, "watchers")
        mixed = child_report(*children["clients"], root, "clients")
    finally:
        for child, _ in children.values():
            if child.poll() is None:  # the test failed before they were done
                child.kill()
                child.wait()
    return LoadRun(samples, cpu, watched, mixed)


def warmed_up(samples: list[Sample], earliest_s: float) -> Sample:
    """The first sample at least `earliest_s` into the load by which the daemon had answered
    WARM_UP_SHARE of the calls it answered in all: the measure of growth starts from a point
    in the load's progress, whatever pace a busy machine allowed."""
    due = samples[0].handled + WARM_UP_SHARE * (samples[-1].handled - samples[0].handled)
    return next(s for s in samples if s.at_s >= earliest_s and s.handled >= due)


@pytest.mark.timeout(max(120, SOAK_SECONDS + 150))
def test_load_and_soak_leaves_no_error_no_growth_no_leak(
    soak_daemon: DaemonProcess, sim: SimulatorThread
) -> None:
    for i in range(CLIENTS):
        sim.provision(f"{KEY_PREFIX}{i}", client_secret(SECRET_PREFIX, i), passphrase=PASSPHRASE)
    engines = start_shared_engines(soak_daemon, sim)
    metrics = metrics_address(soak_daemon)
    time.sleep(2)  # the engines' first cycles and the setup's calls are done
    baseline = sample(soak_daemon, metrics, time.monotonic())
    assert soak_daemon.proc is not None
    fds_before = fd_kinds(soak_daemon.proc.pid)
    started = time.monotonic()
    load = run_load(soak_daemon, metrics, engines, started)
    samples_file = soak_daemon.root / "samples.json"  # kept with CTS_SOAK_KEEP=1
    samples_file.write_text(json.dumps([(s.at_s, s.rss_kb, s.fds, s.tasks) for s in load.samples]))
    after = settle(soak_daemon, metrics, baseline, started)
    fds_grown = grown(fds_before, fd_kinds(soak_daemon.proc.pid))
    samples = load.samples
    warm_up = max(WARM_UP_MIN_S, SOAK_SECONDS / 3)
    assert samples and samples[-1].at_s >= warm_up, f"the load ended early: {samples[-1:]}"
    figures = Figures(
        baseline, warm=warmed_up(samples, warm_up), end=samples[-1],
        peak=Sample(0, max(s.rss_kb for s in samples), max(s.fds for s in samples),
                    max(s.tasks for s in samples)),
        after=after, rss_path=samples[:: max(1, len(samples) // 6)], cpu=load.cpu,
        rate_limits=rate_limit_waits(metrics),
        fds_grown=fds_grown)  # fmt: skip
    problems = log_problems(soak_daemon.logs())
    tallies = [rpc_tally(load.mixed), watcher_tally(load.watched), health_tally(figures, problems)]
    for tally in tallies:
        tally.report()
    assert all(t.lost == 0 for t in tallies), [t.notes for t in tallies if t.lost]
    assert not problems, problems
