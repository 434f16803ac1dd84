"""Daemon memory per connection, against one private ccxt instance with its own markets.

A simulator (`ctsd sim`, its own process on 127.0.0.1) lists `--markets` pairs
(2,000) with every rate limit scaled up by 1e6, and holds one account per
connection (distinct keys: nothing is deduplicated). One daemon, pointed at it
with the matching (unreachable) weight limit, grows from 1 to 100 to 1,000
enabled Binance spot connections; after each step it batch-tests all of them
(BatchTestConnections, concurrency 32) and, a moment later, its RSS is read from
/proc/PID/status (VmRSS). Figures: MB per extra connection,
(RSS_100 - RSS_1) / 99 and (RSS_1000 - RSS_100) / 900, target < 0.5 MB.

The baseline, same run, in a separate fresh process: one `ccxt.async_support.binance`
with API keys pointed at the simulator, RSS after `load_markets()` (its own 2,000
spot markets) minus RSS before (ccxt imported, instance made), expected ~35 MB;
also what making the instance cost. Prints one JSON object as its last line;
progress goes to stderr. Run from the repository root:

    .venv/bin/python bench/memory_bench.py [--markets M]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench.support import REPO, SimProcess, bench_accounts, bench_daemon, seed_accounts
from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess

STEPS = (1, 100, 1000)
CONCURRENCY = 32
LIMIT_SCALE = 1e6
BATCH_TIMEOUT_S = 300.0
CHILD_TIMEOUT_S = 180.0
SETTLE_S = 1.0
TARGET_MB = 0.5
MB = 1024 * 1024


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def batch_test(address: str, names: list[str]) -> dict[str, Any]:
    request = spb.BatchTestConnectionsRequest(names=names, concurrency=CONCURRENCY)
    summary: Any = None
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        started = time.perf_counter()
        for event in stub.BatchTestConnections(request, timeout=BATCH_TIMEOUT_S):
            if event.HasField("summary"):
                summary = event.summary
        elapsed = time.perf_counter() - started
    if summary is None:
        raise RuntimeError("batch stream ended without a summary")
    return {
        "elapsed_s": round(elapsed, 2),
        "by_status": {pb.TestStatus.Name(c.status): c.count for c in summary.by_status},
        "failures": {pb.FailureClass.Name(c.failure_class): c.count for c in summary.failures},
    }


def ccxt_child(base_url: str) -> None:
    """The baseline, in a fresh process: one private ccxt binance and its own markets."""
    pid = os.getpid()
    start = rss_bytes(pid)
    import ccxt.async_support as ccxt

    from ctsd.sim.ccxt_target import point_at_simulator

    imported = rss_bytes(pid)

    async def run() -> dict[str, Any]:
        exchange = ccxt.binance({
            "apiKey": os.environ["MEMORY_BENCH_KEY"],
            "secret": os.environ["MEMORY_BENCH_SECRET"],
            "enableRateLimit": False,
            "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]},
                        "fetchCurrencies": False},
        })  # fmt: skip
        point_at_simulator(exchange, base_url)
        try:
            made = rss_bytes(pid)
            await exchange.load_markets()
            loaded = rss_bytes(pid)
            count = len(exchange.markets)
        finally:
            await exchange.close()
        return {
            "markets": count,
            "rss_start_mb": round(start / MB, 2),
            "ccxt_import_mb": round((imported - start) / MB, 2),
            "instance_mb": round((made - imported) / MB, 2),
            "markets_mb": round((loaded - made) / MB, 2),
        }

    print(json.dumps(asyncio.run(run())), flush=True)


def baseline(sim: SimProcess, account: dict[str, Any]) -> dict[str, Any]:
    env = {
        **os.environ,
        "MEMORY_BENCH_KEY": account["api_key"],
        "MEMORY_BENCH_SECRET": account["secret"],
    }
    child = subprocess.run(
        [sys.executable, __file__, "--ccxt-child", sim.base_url],
        cwd=REPO, env=env, capture_output=True, timeout=CHILD_TIMEOUT_S, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(child.stdout.decode().strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markets", type=int, default=2000)
    parser.add_argument("--ccxt-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ccxt_child:
        ccxt_child(args.ccxt_child)
        return

    accounts = bench_accounts(STEPS[-1] + 1)  # the last one is the baseline's
    sim = SimProcess(args.markets, limit_scale=LIMIT_SCALE, accounts=accounts)
    launcher = [
        sys.executable, "-m", "bench.support", "ctsd",
        "--limit", f"binance.request_weight={1200 * LIMIT_SCALE}/60", "--",
    ]  # fmt: skip
    daemon: DaemonProcess | None = None
    results: dict[str, Any] = {"bench": "memory", "markets": args.markets, "steps": {}}
    try:
        sim.start()
        log(f"simulator at {sim.base_url} with {args.markets} markets")
        results["ccxt_baseline"] = baseline(sim, accounts[-1])
        log(f"baseline: {results['ccxt_baseline']}")
        daemon = bench_daemon(extra_args=["--exchange-endpoint", f"binance={sim.base_url}"],
                        launcher=launcher)
        daemon.start(timeout=60)
        assert daemon.proc is not None
        pid = daemon.proc.pid
        results["rss_idle_mb"] = round(rss_bytes(pid) / MB, 2)
        names: list[str] = []
        measured: dict[int, int] = {}
        for count in STEPS:
            names += seed_accounts(daemon.address, accounts[len(names) : count], len(names))
            batch = batch_test(daemon.address, names)
            time.sleep(SETTLE_S)
            rss = measured[count] = rss_bytes(pid)
            results["steps"][str(count)] = {"rss_mb": round(rss / MB, 2), "batch": batch}
            log(f"{count} connections: RSS {rss / MB:.1f} MB, batch {batch}")
    finally:
        if daemon is not None:
            daemon.cleanup()
        sim.stop()
    per_100 = (measured[100] - measured[1]) / 99 / MB
    per_1000 = (measured[1000] - measured[100]) / 900 / MB
    results["mb_per_connection_1_to_100"] = round(per_100, 4)
    results["mb_per_connection_100_to_1000"] = round(per_1000, 4)
    results["baseline_mb_per_private_instance"] = round(
        results["ccxt_baseline"]["markets_mb"] + results["ccxt_baseline"]["instance_mb"], 2
    )
    results["target_mb_per_connection"] = TARGET_MB
    results["meets_target"] = per_100 < TARGET_MB and per_1000 < TARGET_MB and all(
        v["batch"]["by_status"].get("TEST_STATUS_SUCCESS", 0) == int(k)
        for k, v in results["steps"].items()
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
