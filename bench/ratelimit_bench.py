"""Shared Binance weight limit: a batch test of 200 connections, against naive ccxt, same run.

One simulated Binance (`ctsd sim`, its own process on 127.0.0.1) with 200 accounts
under distinct API keys, so the batch dedups nothing. Its request-weight window is
scaled to `--window-s` seconds and its limit to what 200 tests need in about
`--target-s` seconds (each test charges ~22 weight: time 1, account 20, ping 1;
the shared market load and price ticker are charged once or so). The
simulator child counts the weight it actually charged (`bench.support`'s `sim`
entry adds it to `/admin/stats`); the theoretical minimum of a phase is that
weight / (limit / window), the exchange's allowed rate.

Phases, each on the same simulator after `/admin/reset` (limits, bans, counters).
A daemon phase runs `--repeats` times (3, interleaved with the other phases; the
median run is reported with every run's ratio: the machine's two cores are shared
and noisy), each time a fresh daemon, warmed up by a one-connection batch (ccxt
import, the shared market load) before the measured BatchTestConnections of the
200 at concurrency 32 (the API's maximum):

- `ctsd_margin_default`: ctsd with the matching limit and its defaults, safety
  margin 0.9 and guard 0.01 s (each request counts until a window after its
  answer, plus the guard: at a 1 s window the guard is 1 %).
- `ctsd_margin_1`: safety margin 1.0, guard 0.01 s: the limiter's own efficiency
  against the exchange's full rate. This phase gives the headline
  `elapsed_ratio` and `violations`; the margin is a policy an operator sets.
- `ctsd_margin_1_guard_0`: safety margin 1.0, no guard.
- (`--diagnose-usage-headers`: both margin-1.0 phases again with X-MBX-USED-WEIGHT-1M
  disregarded by the daemon's sliding windows.)
- `naive`: the baseline, one `ccxt.async_support.binance` per connection with
  ccxt's own limiter on (`enableRateLimit=True`), pointed at the simulator, all 200
  concurrently doing what a test does: load their own markets, fetch_time,
  fetch_balance, fetch_ticker, fetch_balance, ping. A ccxt error ends that
  connection's sequence (no retries: the naive client); `completed` says how many
  got through, and its ratio is over the weight the simulator accepted.

The daemon gets the scaled limit, margin and guard through the `[rate_limits]` table of
its config file (`python -m bench.support ctsd --limit binance.request_weight=L/W
--safety-margin M --guard-s G` writes it). Prints one JSON object as its
last line; progress goes to stderr. Run from the repository root:

    .venv/bin/python bench/ratelimit_bench.py [--connections N] [--target-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench.support import SimProcess, bench_accounts, bench_daemon, seed_accounts
from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc
from ctsd.ratelimit.model import DEFAULT_GUARD_S, DEFAULT_SAFETY_MARGIN

BINANCE_WEIGHT_LIMIT, BINANCE_WINDOW_S = 1200, 60.0
WEIGHT_PER_TEST = 22
"""Measured: GET time 1 + GET account 20 (balance; key permissions read from the same
answer) + GET ping 1."""
CONCURRENCY = 32
MARKETS = 50
BATCH_TIMEOUT_S = 120.0
NAIVE_TIMEOUT_S = 120.0
TARGET_RATIO = 1.05


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spot_weight(stats: dict[str, Any]) -> float:
    return float(stats["bench_binance"]["charged_weight"].get("spot", 0))


def figures(stats: dict[str, Any], elapsed_s: float, rate: float) -> dict[str, Any]:
    weight = spot_weight(stats)
    minimum = weight / rate
    return {
        "elapsed_s": round(elapsed_s, 3),
        "charged_weight": weight,
        "theoretical_min_s": round(minimum, 3),
        "elapsed_ratio": round(elapsed_s / minimum, 4) if minimum else None,
        "sim_first_to_last_s": round(stats["bench_binance"]["first_to_last_request_s"], 3),
        "violations": int(stats["violations"].get("binance", 0)),
        "violations_by_kind": stats["violations_by_kind"],
        "requests": int(stats["requests"].get("binance", 0)),
        "requests_by_endpoint": stats["bench_binance"]["requests_by_endpoint"],
    }


def batch_test(address: str, names: list[str], concurrency: int = CONCURRENCY,
               ) -> tuple[float, dict[str, Any]]:
    """BatchTestConnections of `names`; (seconds to the summary, what the summary says)."""
    request = spb.BatchTestConnectionsRequest(names=names, concurrency=concurrency)
    summary: Any = None
    results = 0
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        started = time.perf_counter()
        for event in stub.BatchTestConnections(request, timeout=BATCH_TIMEOUT_S):
            if event.HasField("result"):
                results += 1
            elif event.HasField("summary"):
                summary = event.summary
        elapsed = time.perf_counter() - started
        usage = hgrpc.HealthServiceStub(ch).GetSystemStatus(hpb.GetSystemStatusRequest())
    if summary is None:
        raise RuntimeError("batch stream ended without a summary")
    by_status = {pb.TestStatus.Name(c.status): c.count for c in summary.by_status}
    failures = {pb.FailureClass.Name(c.failure_class): c.count for c in summary.failures}
    scopes = {
        u.scope: {"limit": u.limit, "waits": u.waits, "rate_limited": u.rate_limited}
        for u in usage.rate_limits
        if u.scope.startswith("binance")
    }
    return elapsed, {
        "results": results,
        "by_status": by_status,
        "failures": failures,
        "server_elapsed_s": round(summary.elapsed.ToTimedelta().total_seconds(), 3),
        "limiter_wait_s": round(summary.limiter_wait.ToTimedelta().total_seconds(), 3),
        "daemon_scopes": scopes,
    }


def run_daemon_phase(
    sim: SimProcess, accounts: list[dict[str, Any]], limit: int, window_s: float, margin: float,
    rate: float, guard_s: float = DEFAULT_GUARD_S, ignore_usage_headers: bool = False,
) -> dict[str, Any]:
    """A fresh daemon; a one-connection warm-up batch (ccxt import, shared markets), a
    pause of one window and guard, a simulator reset, then the measured batch of the rest."""
    launcher = [
        sys.executable, "-m", "bench.support", "ctsd",
        "--limit", f"binance.request_weight={limit}/{window_s}",
        "--safety-margin", str(margin), "--guard-s", str(guard_s),
        *(["--usage-headers", "ignore"] if ignore_usage_headers else []), "--",
    ]  # fmt: skip
    daemon = bench_daemon(extra_args=["--exchange-endpoint", f"binance={sim.base_url}"],
                    launcher=launcher)
    try:
        daemon.start(timeout=60)
        names = seed_accounts(daemon.address, accounts)
        warm, names = names[-1:], names[:-1]
        batch_test(daemon.address, warm)
        time.sleep(window_s + 0.2)
        sim.reset()
        elapsed, batch = batch_test(daemon.address, names)
        stats = sim.stats()
    finally:
        daemon.cleanup()
    out = {
        "safety_margin": margin,
        "guard_s": guard_s,
        "usage_headers": "ignored (diagnostic)" if ignore_usage_headers else "used",
        **figures(stats, elapsed, rate),
        "batch": batch,
    }
    out["meets_target"] = (
        out["elapsed_ratio"] is not None
        and out["elapsed_ratio"] <= TARGET_RATIO
        and out["violations"] == 0
        and batch["by_status"].get("TEST_STATUS_SUCCESS", 0) == len(names)
    )
    return out


async def naive(base_url: str, accounts: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """One ccxt instance per connection, ccxt's limiter on, all at once."""
    import ccxt.async_support as ccxt

    from ctsd.sim.ccxt_target import point_at_simulator

    exchanges = []
    for account in accounts:
        exchange = ccxt.binance({
            "apiKey": account["api_key"],
            "secret": account["secret"],
            "enableRateLimit": True,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
            },
        })  # fmt: skip
        exchanges.append(point_at_simulator(exchange, base_url))
    errors: dict[str, int] = {}
    done = 0

    async def sequence(exchange: Any) -> None:
        nonlocal done
        try:
            await exchange.load_markets()
            await exchange.fetch_time()
            await exchange.fetch_balance()  # the balance step
            await exchange.fetch_ticker("BTC/USDT")  # its value in USDT
            await exchange.fetch_balance()  # the api-type step
            await exchange.publicGetPing()  # latency
            done += 1
        except Exception as exc:  # the naive client just fails
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1

    try:
        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(sequence(e) for e in exchanges)), NAIVE_TIMEOUT_S
        )
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(e.close() for e in exchanges), return_exceptions=True)
    return elapsed, {"completed": done, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--target-s", type=float, default=10.0)
    parser.add_argument("--window-s", type=float, default=1.0,
                        help="the simulator's (and daemon's) weight window")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each daemon phase; the median run is reported")
    parser.add_argument("--diagnose-usage-headers", action="store_true",
                        help="one more phase: margin 1, X-MBX-USED-WEIGHT-1M disregarded")
    args = parser.parse_args()

    n = args.connections
    limit = math.ceil(n * WEIGHT_PER_TEST / args.target_s * args.window_s)
    limit_scale = (limit + 0.5) / BINANCE_WEIGHT_LIMIT  # the simulator floors limit * scale
    window_scale = args.window_s / BINANCE_WINDOW_S
    rate = limit / args.window_s
    accounts = bench_accounts(n + 1)  # the last one warms the daemon up
    sim = SimProcess(MARKETS, limit_scale=limit_scale, window_scale=window_scale,
                     accounts=accounts, count_weights=True)
    results: dict[str, Any] = {
        "bench": "ratelimit",
        "connections": n,
        "distinct_keys": len({a["api_key"] for a in accounts[:n]}),
        "concurrency": CONCURRENCY,
        "repeats": args.repeats,
        "sim_limit": limit,
        "sim_window_s": args.window_s,
        "allowed_rate_per_s": rate,
        "daemon_default_safety_margin": DEFAULT_SAFETY_MARGIN,
        "daemon_default_guard_s": DEFAULT_GUARD_S,
        "daemon_limit_via": "[rate_limits] in the daemon config file (bench.support ctsd --limit)",
    }
    try:
        sim.start()
        log(f"simulator at {sim.base_url}: {limit} weight per {args.window_s} s")
        phases = [
            ("ctsd_margin_default", DEFAULT_SAFETY_MARGIN, DEFAULT_GUARD_S, False),
            ("ctsd_margin_1", 1.0, DEFAULT_GUARD_S, False),
            ("ctsd_margin_1_guard_0", 1.0, 0.0, False),
        ]
        if args.diagnose_usage_headers:
            phases += [
                ("ctsd_margin_1_no_usage_headers", 1.0, DEFAULT_GUARD_S, True),
                ("ctsd_margin_1_guard_0_no_usage_headers", 1.0, 0.0, True),
            ]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in phases}
        for round_ in range(args.repeats):  # interleaved, so drift hits every phase alike
            for label, margin, guard, ignore in phases:
                log(f"{label} #{round_ + 1}: batch test of {n}")
                run = run_daemon_phase(
                    sim, accounts, limit, args.window_s, margin, rate, guard, ignore
                )
                runs[label].append(run)
                log(f"{label} #{round_ + 1}: {run['elapsed_s']} s, ratio {run['elapsed_ratio']}, "
                    f"violations {run['violations']}")
        for label, done in runs.items():
            done.sort(key=lambda run: run["elapsed_ratio"])
            median_run = done[len(done) // 2]  # the whole median run, not mixed figures
            results[label] = {
                **median_run,
                "elapsed_ratio_runs": [run["elapsed_ratio"] for run in done],
                "violations_all_runs": sum(run["violations"] for run in done),
                "meets_target_all_runs": all(run["meets_target"] for run in done),
            }
        log(f"naive: {n} ccxt instances")
        sim.reset()
        elapsed, outcome = asyncio.run(naive(sim.base_url, accounts[:n]))
        results["naive"] = {**figures(sim.stats(), elapsed, rate), **outcome}
    finally:
        sim.stop()
    results["target"] = {"elapsed_ratio_max": TARGET_RATIO, "violations": 0}
    ctsd_phases = [label for label in results if label.startswith("ctsd_")]
    results["elapsed_ratio"] = results["ctsd_margin_1"]["elapsed_ratio"]
    results["elapsed_ratio_default_margin"] = results["ctsd_margin_default"]["elapsed_ratio"]
    results["elapsed_ratio_default_margin_vs_its_budget"] = round(
        results["ctsd_margin_default"]["elapsed_ratio"] * DEFAULT_SAFETY_MARGIN, 4)
    results["violations"] = sum(results[p]["violations_all_runs"] for p in ctsd_phases)
    results["naive_elapsed_ratio"] = results["naive"]["elapsed_ratio"]
    results["naive_violations"] = results["naive"]["violations"]
    results["naive_completed"] = results["naive"]["completed"]
    results["meets_target"] = (results["elapsed_ratio"] <= TARGET_RATIO
                               and results["violations"] == 0)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
