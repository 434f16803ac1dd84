"""Process start to grpc.health SERVING, with 1,000 connections stored.

Prints one JSON object as its last line. Also checks that ccxt (about 1 s
and 100 MB to import) stays off the start path. Baseline in the same run:
a bare `python -c "import grpc"` start, the floor any Python gRPC daemon pays.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import REPO, bench_daemon, median, seed_connections

ROWS = 1000
RUNS = 7
TARGET_S = 0.5
POLL_S = 0.002
"""How often readiness is asked while timing a start."""


def python_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import grpc"], check=True, cwd=REPO)
    return time.perf_counter() - started


def ccxt_on_start_path() -> bool:
    code = "import sys, ctsd.cli, ctsd.daemon; print('ccxt' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return out.stdout.strip() == "True"


def main() -> None:
    daemon = bench_daemon()
    try:
        daemon.start()
        seed_connections(daemon.address, ROWS)
        daemon.stop()
        times = []
        for _ in range(RUNS):
            times.append(daemon.start(poll_s=POLL_S).startup_s)
            daemon.stop()
        floors = [python_floor() for _ in range(3)]
    finally:
        daemon.cleanup()
    result = {
        "bench": "startup",
        "connections": ROWS,
        "start_to_serving_s_median": round(median(times), 4),
        "start_to_serving_s_max": round(max(times), 4),
        "python_grpc_import_floor_s": round(median(floors), 4),
        "ratio_to_floor": round(median(times) / median(floors), 2),
        "target_s": TARGET_S,
        "meets_target": median(times) < TARGET_S,
        "ccxt_imported_on_start_path": ccxt_on_start_path(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
