"""A fleet of daemons: failover time over repeated SIGKILLs, and API throughput.

Three `ctsd` processes on one private PostgreSQL database, four LIVE grids on the
simulated Bybit (the price swinging across the grids' levels). `--kills` times: the
member running most engines is SIGKILLed; the time until every engine runs again on
a survivor (RUNNING under its lease there, one cycle done, so reconciled) is one
failover sample; the venue is then checked against what the fleet knows (no order
the fleet does not know, no client order id twice, no grid level held twice: an
"order placed twice" counts one); a fresh member replaces the killed one.

API throughput: `--clients` threads calling GetConnection for `--seconds`, all
through one daemon, then spread over the three (the machine's cores are shared:
reads scale with daemons only where cores are free).

Rate limits: `sim_violations` counts every rate-limit violation the simulated Bybit
saw during the whole run (0 expected); then the fleet limiter is measured as
`bench/fleet_limiter_bench.py` does it (its `measure`, Redis up, `--limiter-repeats`
runs of `--limiter-connections` tests per daemon, three daemons sharing one simulated
Binance IP): `limiter_ratio` = fleet-wide elapsed / theoretical minimum (the median
run), `limiter_violations` = the simulator's violations over all its runs. Prints one
JSON object as its last line; run from the repository root:
`.venv/bin/python bench/fleet_bench.py [--kills N]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from bench.fleet_limiter_bench import measure  # noqa: E402
from bench.ratelimit_bench import CONCURRENCY  # noqa: E402
from cts.v1 import connection_service_pb2 as cspb  # noqa: E402
from cts.v1 import connection_service_pb2_grpc as csgrpc  # noqa: E402
from tests.fleet.daemons import Fleet, fleet_on_postgres, swinging, wait_for  # noqa: E402
from tests.support import servers  # noqa: E402
from tests.support.daemon_process import DaemonProcess  # noqa: E402
from tests.support.simulator import running_simulator  # noqa: E402

ENGINES = 4
DAEMONS = 3


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def alive(fleet: Fleet) -> list[DaemonProcess]:
    return [d for d in fleet.daemons if d.proc is not None]


def one_failover(fleet: Fleet) -> tuple[float, int]:
    names = {w.name for w in fleet.workers}
    live = alive(fleet)
    victim = max(live, key=lambda d: len(fleet.running_on(d, 0)))
    survivors = [d for d in live if d is not victim]
    victim.kill()
    took = wait_for(lambda: set().union(*(fleet.running_on(d) for d in survivors)) == names,
                    120, "every engine on a survivor")
    problems = fleet.check_venue()
    for problem in problems:
        log(f"  problem: {problem}")
    fleet.replace(victim)
    return took, len(problems)


def throughput(addresses: list[str], clients: int, seconds: float, name: str) -> float:
    calls = [0] * clients
    stop = threading.Event()

    def client(i: int) -> None:
        with grpc.insecure_channel(addresses[i % len(addresses)]) as channel:
            stub = csgrpc.ConnectionServiceStub(channel)
            request = cspb.GetConnectionRequest(name=name)
            while not stop.is_set():
                stub.GetConnection(request, timeout=10)
                calls[i] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)  # the measuring window
    stop.set()
    for thread in threads:
        thread.join()
    return sum(calls) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--ttl-s", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--limiter-connections", type=int, default=100,
                        help="tests per daemon in one fleet limiter run (as fleet_limiter_bench)")
    parser.add_argument("--limiter-target-s", type=float, default=10.0,
                        help="the simulator's limit is what the tests need in this long")
    parser.add_argument("--limiter-repeats", type=int, default=1)
    args = parser.parse_args()
    with servers.postgres_url() as pg, running_simulator() as sim, \
            fleet_on_postgres(pg, sim, args.ttl_s) as fleet:
        fleet.add()
        fleet.connections(ENGINES, "bench")
        fleet.start_engines(fleet.daemons[0])  # alone: the first kill moves every engine
        names = {w.name for w in fleet.workers}
        wait_for(lambda: fleet.running_on(fleet.daemons[0], 2) == names, 120, "engines")
        for _ in range(DAEMONS - 1):
            fleet.add()
        addresses = [d.address for d in fleet.daemons]
        one = throughput(addresses[:1], args.clients, args.seconds, fleet.workers[0].conn.name)
        three = throughput(addresses, args.clients, args.seconds, fleet.workers[0].conn.name)
        log(f"GetConnection: {one:.0f}/s through one daemon, {three:.0f}/s through three")
        samples: list[float] = []
        twice = 0
        with swinging(sim, fleet.workers, 16):
            for kill in range(args.kills):
                took, problems = one_failover(fleet)
                samples.append(took)
                twice += problems
                log(f"kill {kill + 1}: every engine resumed after {took:.1f} s")
        by_venue = sim.stats()["violations"]
        log(f"simulator rate-limit violations: {by_venue}")
    limiter = measure(DAEMONS, args.limiter_connections, args.limiter_target_s, 1.0, 0.1,
                      CONCURRENCY // DAEMONS, {"shared": {}}, args.limiter_repeats)["shared"]
    print(json.dumps({
        "kills": len(samples), "ttl_s": args.ttl_s,
        "failover_p50_s": round(statistics.median(samples), 2),
        "failover_p99_s": round(percentile(samples, 0.99), 2),
        "failover_max_s": round(max(samples), 2),
        "orders_placed_twice": twice,
        "api_calls_per_s_one_daemon": round(one), "api_calls_per_s_three_daemons": round(three),
        "sim_violations": sum(int(n) for n in by_venue.values()),
        "limiter_ratio": limiter["elapsed_ratio"],
        "limiter_ratio_runs": limiter["elapsed_ratio_runs"],
        "limiter_violations": limiter["violations_all_runs"],
        "limiter_all_tests_passed": limiter["all_tests_passed_all_runs"],
    }))


if __name__ == "__main__":
    main()
