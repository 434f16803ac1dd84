"""Shared by the daemon benchmarks: ctsd and the simulator as processes, seeded connections.

The daemon runs under the tests' one harness (`tests.support.daemon_process`).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess, short_tempdir, stop_process

REPO = Path(__file__).resolve().parent.parent


def bench_daemon(extra_args: Sequence[str] = (),
                 launcher: Sequence[str] | None = None) -> DaemonProcess:
    """`ctsd` for a benchmark (the tests' harness): a fresh root, warnings only, started from
    the repository so a wrapping `launcher` (`-m bench.engine_bench ...`) is importable."""
    return DaemonProcess(short_tempdir("ctsb-"), extra_args, log_level="warning",
                         launcher=launcher or (sys.executable, "-m", "ctsd"), cwd=REPO)


def seed_connections(address: str, count: int) -> list[str]:
    """Creates `count` Binance spot connections; returns their names."""
    names = []
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        for i in range(count):
            conn = pb.Connection(
                display_name=f"bench {i:05d}",
                exchange="binance",
                api_type=pb.API_TYPE_SPOT,
                enabled=i % 2 == 0,
                credentials=pb.Credentials(
                    api_key=f"benchkey{i:012d}", api_secret=os.urandom(16).hex()
                ),
            )
            made = stub.CreateConnection(
                spb.CreateConnectionRequest(connection=conn, connection_id=f"bench-{i:05d}")
            )
            names.append(made.name)
    return names


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


# --- the simulator as a child process ----------------------------------------------------


class SimProcess:
    """`ctsd sim` in its own process on 127.0.0.1; `start()` returns its base URL.

    With `count_weights`, the child (this module's `sim` entry) also totals the
    Binance request weight it charged, per surface, and the requests per endpoint,
    and adds them to `/admin/stats` under `bench_binance`: the simulator's own
    counters stop at requests per venue.
    """

    def __init__(
        self,
        markets: int,
        *,
        limit_scale: float = 1.0,
        window_scale: float = 1.0,
        accounts: Sequence[dict[str, Any]] = (),
        count_weights: bool = False,
    ) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ctsb-sim-", dir="/tmp"))
        self.args = [
            "--port", "0", "--markets", str(markets),
            "--limit-scale", repr(limit_scale), "--window-scale", repr(window_scale),
        ]  # fmt: skip
        if accounts:
            path = self.root / "accounts.json"
            path.write_text(json.dumps({"accounts": list(accounts)}))
            path.chmod(0o600)
            self.args += ["--accounts", str(path)]
        self.count_weights = count_weights
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self, timeout: float = 120.0) -> str:
        entry = ["-m", "bench.support", "sim"] if self.count_weights else ["-m", "ctsd.sim"]
        self.proc = subprocess.Popen(
            [sys.executable, *entry, *self.args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if ready else ""
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            raise TimeoutError(f"simulator did not start: {line!r}")
        self.base_url = found.group(1)
        return self.base_url

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.admin("GET", "/admin/stats")
        return result

    def reset(self) -> None:
        self.admin("POST", "/admin/reset", {})

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, 15.0, strict=False)
        self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)


def bench_accounts(count: int, prefix: str = "benchkey") -> list[dict[str, Any]]:
    """`count` simulator accounts with distinct keys and a small spot balance."""
    return [
        {
            "api_key": f"{prefix}{i:012d}",
            "secret": os.urandom(16).hex(),
            "balances": {"spot": {"USDT": "1000", "BTC": "0.01"},
                         "derivatives": {"USDT": "1000"}},
            "permissions": ["read", "trade"],
        }
        for i in range(count)
    ]


def seed_accounts(address: str, accounts: Sequence[dict[str, Any]], first: int = 0,
                  api_type: pb.ApiType.ValueType = pb.API_TYPE_SPOT) -> list[str]:
    """One enabled Binance connection (spot unless `api_type` says) per simulator account,
    ids numbered from `first`; returns their names."""
    names = []
    with grpc.insecure_channel(address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        for i, account in enumerate(accounts, start=first):
            conn = pb.Connection(
                display_name=f"bench {i:05d}",
                exchange="binance",
                api_type=api_type,
                enabled=True,
                credentials=pb.Credentials(
                    api_key=account["api_key"], api_secret=account["secret"]
                ),
            )
            made = stub.CreateConnection(
                spb.CreateConnectionRequest(connection=conn, connection_id=f"bench-{i:05d}")
            )
            names.append(made.name)
    return names


def _sim_counting_weights(argv: list[str]) -> int:
    """`ctsd sim` with Binance's charged weight and per-endpoint requests in /admin/stats."""
    from collections import Counter

    from ctsd.sim import binance, state
    from ctsd.sim.cli import main as sim_main

    charged: Counter[str] = Counter()
    paths: Counter[str] = Counter()
    span = [0.0, 0.0]
    charge, dispatch = binance.BinanceSim._charge, binance.BinanceSim.dispatch
    snapshot, reset = state.Simulator.snapshot, state.Simulator.reset

    def counted_charge(self: Any, surface: Any, ip: str, weight: int) -> Any:
        verdict = charge(self, surface, ip, weight)  # raises when refused: not charged
        charged[str(surface)] += weight
        return verdict

    async def counted_dispatch(self: Any, request: Any, endpoint: Any) -> Any:
        now = time.monotonic()
        span[0] = span[0] or now
        span[1] = now
        paths[f"{endpoint.method} {endpoint.path}"] += 1
        return await dispatch(self, request, endpoint)

    def counted_snapshot(self: Any) -> dict[str, Any]:
        out = snapshot(self)
        out["bench_binance"] = {
            "charged_weight": dict(charged),
            "requests_by_endpoint": dict(paths),
            "first_to_last_request_s": span[1] - span[0],
            "first_request_monotonic": span[0],
            "last_request_monotonic": span[1],
        }
        return out

    def counted_reset(self: Any) -> None:
        reset(self)
        charged.clear()
        paths.clear()
        span[:] = [0.0, 0.0]

    binance.BinanceSim._charge = counted_charge  # type: ignore[method-assign]
    binance.BinanceSim.dispatch = counted_dispatch  # type: ignore[method-assign]
    state.Simulator.snapshot = counted_snapshot  # type: ignore[method-assign]
    state.Simulator.reset = counted_reset  # type: ignore[method-assign]
    return sim_main(argv)


def _ctsd_with_limits(argv: list[str]) -> int:
    """`ctsd` with rate-limit overrides, written as the `[rate_limits]` table of a config file.

    `--limit EXCHANGE.NAME=LIMIT/INTERVAL_S` (repeatable), `--safety-margin M`,
    `--guard-s G` and, to diagnose, `--usage-headers ignore` (sliding windows
    disregard the exchange's usage headers), then `--` and the daemon's own flags.
    """
    split = argv.index("--")
    own, rest = argv[:split], argv[split + 1 :]
    lines = ["[rate_limits]"]
    tables: list[str] = []
    for flag, value in zip(own[::2], own[1::2], strict=True):
        if flag == "--safety-margin":
            lines.append(f"safety_margin = {float(value)!r}")
        elif flag == "--guard-s":
            lines.append(f"guard_s = {float(value)!r}")
        elif flag == "--usage-headers" and value == "ignore":  # a diagnostic, not a setting
            from ctsd.ratelimit import meters

            meters.SlidingWindow.observe = lambda self, used, now: False  # type: ignore[method-assign]
        elif flag == "--limit":
            key, _, numbers = value.partition("=")
            exchange, _, name = key.partition(".")
            limit, _, interval = numbers.partition("/")
            tables += [f"[rate_limits.{exchange}.{name}]", f"limit = {float(limit)!r}",
                       f"interval_s = {float(interval)!r}"]  # fmt: skip
        else:
            raise SystemExit(f"unknown flag {flag}")
    config = Path(tempfile.mkdtemp(prefix="ctsb-cfg-", dir="/tmp")) / "ctsd.toml"
    config.write_text("\n".join([*lines, *tables]) + "\n")
    from ctsd.cli import main as ctsd_main

    return ctsd_main(["--config", str(config), *rest])


if __name__ == "__main__":
    if sys.argv[1:2] == ["sim"]:
        sys.exit(_sim_counting_weights(sys.argv[2:]))
    if sys.argv[1:2] == ["ctsd"]:
        sys.exit(_ctsd_with_limits(sys.argv[2:]))
    raise SystemExit("usage: python -m bench.support sim ARGS | ctsd [--limit ...] -- ARGS")
