"""Rate limits shared by a fleet: three daemons batch-testing against one simulated Binance IP.

Three `ctsd` processes, each with connections of its own (distinct keys: no batch
dedups anything), all pointed at one simulated Binance (`ctsd sim`, its own process
on 127.0.0.1) and one private Redis, declaring the same `[fleet] egress`: the
exchange sees one IP, and the daemons must share its request weight exactly. The
simulator's weight window is scaled to `--window-s` seconds and its limit to what
the fleet's tests need in about `--target-s` seconds, as `bench/ratelimit_bench.py`
does for one daemon, whose measure this is: the simulator totals the weight it
charged; the theoretical minimum is that weight / (limit / window), and the ratio
is the fleet-wide elapsed time (the first batch call to the last summary) over it.
Each daemon gets the limit with safety margin 1.0 and guard 0.01 s (the limiter's own
efficiency, `ratelimit_bench`'s headline phase) through its config file.

Phases, interleaved `--repeats` times (3; the median run is reported with every run's
ratio: the machine's two cores are shared and noisy), each on fresh daemons, a fresh
Redis prefix and a reset simulator; each daemon is warmed up first (a one-connection
batch: ccxt import, market load), then a window passes before the measured batches
start, all three at once, each at concurrency `--concurrency` (ratelimit_bench's 32
split among the three: the same load on the exchange):

- `shared`: Redis up throughout. Target: 0 violations, ratio <= 1.05.
- `redis_killed`: Redis is SIGKILLed `--kill-after-s` into the batches and started
  again, empty, `--down-s` later. Each daemon counts on its share (limit / 3)
  once what the others may have granted has stopped counting, then hands its
  charges back and shares again. Target: 0 violations; its ratio is reported
  (the waits that keep it exact are the cost).

Each run also reports `before_first_request_s` (from the batch calls to the first
request at the simulator), `after_last_request_s`, and `sim_span_ratio` (the
simulator's first-to-last request over the minimum: the limiter alone, without the
start and end of the batches). Prints one JSON object as its last line; progress goes
to stderr. Run from the repository root:

    .venv/bin/python bench/fleet_limiter_bench.py [--connections-per-daemon N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench.ratelimit_bench import (
    BINANCE_WEIGHT_LIMIT,
    BINANCE_WINDOW_S,
    CONCURRENCY,
    MARKETS,
    TARGET_RATIO,
    WEIGHT_PER_TEST,
    batch_test,
    figures,
    log,
)
from bench.support import SimProcess, bench_accounts, bench_daemon, seed_accounts
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from tests.support.daemon_process import DaemonProcess
from tests.support.servers import PrivateRedis

DAEMONS = 3
FLEET_TIMINGS = {  # scaled to a 1 s window: a dead member's grants stop counting in ~3 s
    "heartbeat_s": 0.2, "stale_after_s": 0.6, "max_flight_s": 2.0, "lease_s": 1.0,
    "timeout_s": 0.5,
}  # fmt: skip


def daemon_config(redis_url: str, prefix: str, member: str, secret: Path, limit: int,
                  window_s: float, poll_s: float) -> str:
    """The `[rate_limits]` and `[fleet]` tables of one member."""
    timings = "".join(f"{k} = {v!r}\n" for k, v in FLEET_TIMINGS.items())
    return (f"[rate_limits]\nsafety_margin = 1.0\nguard_s = 0.01\n"
            f"[rate_limits.binance.request_weight]\nlimit = {float(limit)!r}\n"
            f"interval_s = {window_s!r}\n"
            f'[fleet]\nredis_url = "{redis_url}"\negress = "bench-office"\n'
            f'member = "{member}"\nprefix = "{prefix}"\nscope_secret_file = "{secret}"\n'
            f"poll_s = {poll_s!r}\n{timings}")


def start_fleet(sim: SimProcess, redis: PrivateRedis, prefix: str, secret: Path, limit: int,
                window_s: float, poll_s: float, count: int) -> list[DaemonProcess]:
    daemons = []
    for i in range(count):
        daemon = bench_daemon(extra_args=["--exchange-endpoint", f"binance={sim.base_url}"])
        config = daemon.root / "ctsd.toml"
        config.write_text(daemon_config(redis.url, prefix, f"bench-{i}", secret, limit,
                                        window_s, poll_s))
        daemon.extra_args += ["--config", str(config)]
        daemons.append(daemon)
    for daemon in daemons:
        daemon.start(timeout=60)
    return daemons


def scopes(address: str) -> list[dict[str, Any]]:
    """The daemon's Binance buckets as GetSystemStatus shows them (counting included)."""
    with grpc.insecure_channel(address) as ch:
        status = hgrpc.HealthServiceStub(ch).GetSystemStatus(hpb.GetSystemStatusRequest())
    return [{"scope": u.scope, "counting": hpb.RateLimitCounting.Name(u.counting),
             "waits": u.waits, "rate_limited": u.rate_limited}
            for u in status.rate_limits if u.scope.startswith("binance")]


def run_phase(sim: SimProcess, redis: PrivateRedis, accounts: list[list[dict[str, Any]]],
              limit: int, window_s: float, rate: float, poll_s: float, concurrency: int,
              prefix: str, secret: Path, kill_after_s: float | None = None,
              down_s: float = 0.0) -> dict[str, Any]:
    daemons = start_fleet(sim, redis, prefix, secret, limit, window_s, poll_s, len(accounts))
    try:
        names = []
        for index, (daemon, mine) in enumerate(zip(daemons, accounts, strict=True)):
            seeded = seed_accounts(daemon.address, mine, first=index * len(mine))
            batch_test(daemon.address, seeded[-1:])  # warm-up: ccxt, the shared markets
            names.append(seeded[:-1])
        time.sleep(window_s + 0.2)
        sim.reset()
        outcome = batches_at_once(daemons, names, redis, concurrency, kill_after_s, down_s)
        stats = sim.stats()
        counted = stats["bench_binance"]
        outcome["before_first_request_s"] = round(
            counted["first_request_monotonic"] - outcome.pop("started_monotonic"), 3)
        outcome["after_last_request_s"] = round(
            outcome.pop("ended_monotonic") - counted["last_request_monotonic"], 3)
        seen = {f"daemon_{i}": scopes(d.address) for i, d in enumerate(daemons)}
    finally:
        for daemon in daemons:
            daemon.cleanup()
    out = {**figures(stats, outcome["elapsed_s"], rate), **outcome, "daemon_scopes": seen}
    out["sim_span_ratio"] = round(out["sim_first_to_last_s"] / out["theoretical_min_s"], 4)
    successes = sum(b["by_status"].get("TEST_STATUS_SUCCESS", 0) for b in outcome["batches"])
    out["successes"] = successes
    out["tests"] = sum(len(n) for n in names)
    return out


def batches_at_once(daemons: list[DaemonProcess], names: list[list[str]], redis: PrivateRedis,
                    concurrency: int, kill_after_s: float | None, down_s: float,
                    ) -> dict[str, Any]:
    """Each daemon's batch on a thread of its own, started together; Redis killed and
    restarted meanwhile when asked."""
    results: list[dict[str, Any]] = [{} for _ in daemons]
    spans: list[tuple[float, float]] = [(0.0, 0.0) for _ in daemons]
    errors: list[BaseException] = []
    go = threading.Barrier(len(daemons) + 1)

    def one(index: int) -> None:
        go.wait()
        started = time.monotonic()
        try:
            results[index] = batch_test(daemons[index].address, names[index], concurrency)[1]
        except BaseException as exc:  # reported after the join
            errors.append(exc)
        spans[index] = (started, time.monotonic())

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(daemons))]
    for thread in threads:
        thread.start()
    go.wait()
    outage: dict[str, float] = {}
    if kill_after_s is not None:
        began = time.monotonic()
        time.sleep(kill_after_s)
        redis.kill()
        outage["killed_at_s"] = round(time.monotonic() - began, 3)
        time.sleep(down_s)
        redis.start()
        outage["restarted_at_s"] = round(time.monotonic() - began, 3)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    started, ended = min(start for start, _ in spans), max(end for _, end in spans)
    return {"elapsed_s": ended - started, "batches": results, "started_monotonic": started,
            "ended_monotonic": ended, **outage}


def measure(daemons: int, per_daemon: int, target_s: float, window_s: float, poll_s: float,
            concurrency: int, phases: dict[str, dict[str, float]], repeats: int,
            ) -> dict[str, Any]:
    """Every phase `repeats` times on a fresh simulated Binance and Redis; per phase, the
    whole median run (by ratio) with every run's ratio, violations and outcome."""
    total = per_daemon * daemons
    limit = math.ceil(total * WEIGHT_PER_TEST / target_s * window_s)
    limit_scale = (limit + 0.5) / BINANCE_WEIGHT_LIMIT  # the simulator floors limit * scale
    rate = limit / window_s
    everyone = bench_accounts(daemons * (per_daemon + 1))  # one more each warms it up
    accounts = [everyone[i * (per_daemon + 1):(i + 1) * (per_daemon + 1)]
                for i in range(daemons)]
    sim = SimProcess(MARKETS, limit_scale=limit_scale,
                     window_scale=window_s / BINANCE_WINDOW_S, accounts=everyone,
                     count_weights=True)
    redis = PrivateRedis()
    secret = redis.root / "scope-secret"
    secret.write_bytes(os.urandom(32))
    secret.chmod(0o600)
    results: dict[str, Any] = {
        "bench": "fleet_limiter", "daemons": daemons, "connections": total,
        "concurrency_per_daemon": concurrency, "sim_limit": limit,
        "sim_window_s": window_s, "allowed_rate_per_s": rate, "safety_margin": 1.0,
        "guard_s": 0.01, "fleet_poll_s": poll_s, "fleet_timings": FLEET_TIMINGS,
    }
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in phases}
    try:
        sim.start()
        redis.start()
        log(f"simulator at {sim.base_url}: {limit} weight per {window_s} s; "
            f"Redis at {redis.url}")
        common = (sim, redis, accounts, limit, window_s, rate, poll_s, concurrency)
        for round_ in range(repeats):  # interleaved, so drift hits every phase alike
            for label, outage in phases.items():
                log(f"{label} #{round_ + 1}: {daemons} daemons x {per_daemon} connections"
                    + (f"; Redis killed {outage['kill_after_s']} s in, back "
                       f"{outage['down_s']} s later" if outage else ""))
                run = run_phase(*common, prefix=f"bench-{label}-{round_}", secret=secret,
                                kill_after_s=outage.get("kill_after_s"),
                                down_s=outage.get("down_s", 0.0))
                runs[label].append(run)
                log(f"{label} #{round_ + 1}: {run['elapsed_s']:.3f} s, ratio "
                    f"{run['elapsed_ratio']}, violations {run['violations']}")
    finally:
        sim.stop()
        redis.stop()
    for label, done in runs.items():
        done.sort(key=lambda run: run["elapsed_ratio"])
        results[label] = {  # the whole median run, not mixed figures
            **done[len(done) // 2],
            "elapsed_ratio_runs": [run["elapsed_ratio"] for run in done],
            "violations_all_runs": sum(run["violations"] for run in done),
            "all_tests_passed_all_runs": all(run["successes"] == run["tests"] for run in done),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemons", type=int, default=DAEMONS)
    parser.add_argument("--connections-per-daemon", type=int, default=100)
    parser.add_argument("--target-s", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=1.0,
                        help="the simulator's (and daemons') weight window")
    parser.add_argument("--poll-s", type=float, default=0.1, help="[fleet] poll_s")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY // DAEMONS,
                        help="tests at once per daemon (default: ratelimit_bench's one "
                             "daemon's, split among the three)")
    parser.add_argument("--kill-after-s", type=float, default=3.0)
    parser.add_argument("--down-s", type=float, default=6.0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each phase; the median run is reported")
    args = parser.parse_args()
    results = measure(
        args.daemons, args.connections_per_daemon, args.target_s, args.window_s, args.poll_s,
        args.concurrency,
        {"shared": {}, "redis_killed": {"kill_after_s": args.kill_after_s,
                                        "down_s": args.down_s}},
        args.repeats)
    shared, killed = results["shared"], results["redis_killed"]
    results["target"] = {"elapsed_ratio_max": TARGET_RATIO, "violations": 0}
    results["elapsed_ratio"] = shared["elapsed_ratio"]
    results["violations"] = shared["violations_all_runs"]
    results["redis_killed_elapsed_ratio"] = killed["elapsed_ratio"]
    results["redis_killed_violations"] = killed["violations_all_runs"]
    results["meets_target"] = (shared["elapsed_ratio"] <= TARGET_RATIO
                               and results["violations"] == 0
                               and results["redis_killed_violations"] == 0
                               and shared["all_tests_passed_all_runs"]
                               and killed["all_tests_passed_all_runs"])
    print(json.dumps(results))


if __name__ == "__main__":
    main()
