"""Process start to grpc.health SERVING, with 1,000 connections stored.

Prints one JSON object as its last line. Also checks that ccxt (about 1 s
and 100 MB to import) and the other subsystems a default start does not use
(`tests.support.start_path.OFF_START_PATH`) stay off the start path. Baseline in
the same run: a bare `python -c "import grpc"` start, the floor any Python gRPC
daemon pays.

Bytecode: with PYTHONDONTWRITEBYTECODE set and no __pycache__ (a fresh checkout),
every ctsd module is compiled on each start while grpc's installed .pyc are read,
so the ratio to the floor counts compilation too; `bytecode_cached` says which. The
`cached_bytecode_*` figures are the same starts as an installed daemon makes them:
its modules read from .pyc (written to a temporary PYTHONPYCACHEPREFIX by a first
start, never into the repository).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import REPO, bench_daemon, median, seed_connections
from tests.support.daemon_process import DaemonProcess
from tests.support.start_path import imported_by_daemon_modules

ROWS = 1000
RUNS = 7
TARGET_S = 0.5
POLL_S = 0.002
"""How often readiness is asked while timing a start."""


def python_floor() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import grpc"], check=True, cwd=REPO)
    return time.perf_counter() - started


def bytecode_cached() -> bool:
    """Whether the daemon's modules load from .pyc (`__pycache__` next to the source, or
    under PYTHONPYCACHEPREFIX) rather than being compiled at each start."""
    code = ("import importlib.util, os, ctsd.daemon as m; "
            "print(os.path.exists(importlib.util.cache_from_source(m.__file__)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    return out.stdout.strip() == "True"


def timed_starts(daemon: DaemonProcess) -> list[float]:
    """`RUNS` starts to SERVING, after one untimed start (its caches warm, as a restart's)."""
    daemon.start()
    daemon.stop()
    times = []
    for _ in range(RUNS):
        times.append(daemon.start(poll_s=POLL_S).startup_s)
        daemon.stop()
    return times


def main() -> None:
    daemon = bench_daemon()
    env = daemon.env
    try:
        daemon.start()
        seed_connections(daemon.address, ROWS)
        daemon.stop()
        times = timed_starts(daemon)
        with tempfile.TemporaryDirectory(prefix="ctsb-pyc-") as pycache:
            daemon.env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
            daemon.env["PYTHONPYCACHEPREFIX"] = pycache
            cached = timed_starts(daemon)
            daemon.env = env
        floors = [python_floor() for _ in range(3)]
    finally:
        daemon.cleanup()
    kept_off = imported_by_daemon_modules()
    result = {
        "bench": "startup",
        "connections": ROWS,
        "start_to_serving_s_median": round(median(times), 4),
        "start_to_serving_s_max": round(max(times), 4),
        "python_grpc_import_floor_s": round(median(floors), 4),
        "ratio_to_floor": round(median(times) / median(floors), 2),
        "cached_bytecode_start_to_serving_s_median": round(median(cached), 4),
        "cached_bytecode_ratio_to_floor": round(median(cached) / median(floors), 2),
        "target_s": TARGET_S,
        "meets_target": median(times) < TARGET_S,
        "ccxt_imported_on_start_path": any(m.split(".")[0] == "ccxt" for m in kept_off),
        "kept_off_start_path_imported": kept_off,
        "bytecode_cached": bytecode_cached(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
