"""Unary latency and throughput of ctsd against a bare grpc.aio server, same run.

ctsd serves GetConnection and ListConnections (100 of 1,000 rows) over its
Unix socket; the baseline is a bare grpc.aio server in its own process that
answers the same methods with constant messages of the same size, so the
ratio isolates what ctsd adds (decoding, validation, SQLite, encoding).
Both are driven by the same client at 64 requests in flight. Prints one JSON
object as its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc

from bench.support import REPO, bench_daemon, percentile, seed_connections
from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb

ROWS = 1000
IN_FLIGHT = 64
SERVICE = "/cts.v1.ConnectionService/"


async def serve_bare(socket: str, get_bytes: bytes, list_bytes: bytes) -> None:
    """The baseline: no work beyond gRPC itself."""

    async def get(request: bytes, context: Any) -> bytes:
        return get_bytes

    async def list_(request: bytes, context: Any) -> bytes:
        return list_bytes

    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        "GetConnection": grpc.unary_unary_rpc_method_handler(get),
        "ListConnections": grpc.unary_unary_rpc_method_handler(list_),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("cts.v1.ConnectionService", handlers)]
    )
    server.add_insecure_port(socket)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def drive(address: str, method: str, request: bytes, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            SERVICE + method)
        for _ in range(50):  # warm-up
            await call(request)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    await call(request)
                except grpc.aio.AioRpcError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        elapsed = time.perf_counter() - began
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--bare-server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        data = sys.stdin.buffer.read()
        get_len = int.from_bytes(data[:4], "big")
        asyncio.run(serve_bare(args.bare_server, data[4 : 4 + get_len], data[4 + get_len :]))
        return

    daemon = bench_daemon()
    bare: subprocess.Popen[bytes] | None = None
    try:
        daemon.start()
        names = seed_connections(daemon.address, ROWS)
        get_req = spb.GetConnectionRequest(name=names[500]).SerializeToString()
        list_req = spb.ListConnectionsRequest(page_size=100).SerializeToString()
        results: dict[str, Any] = {"bench": "api", "rows": ROWS, "in_flight": IN_FLIGHT}

        import grpc as sync_grpc

        with sync_grpc.insecure_channel(daemon.address) as ch:
            raw: Callable[[str], sync_grpc.UnaryUnaryMultiCallable[bytes, bytes]] = (
                ch.unary_unary)
            get_bytes: bytes = raw(SERVICE + "GetConnection")(get_req)
            list_bytes: bytes = raw(SERVICE + "ListConnections")(list_req)
        assert pb.Connection.FromString(get_bytes).name == names[500]

        bare_socket = f"unix:{daemon.root}/bare.sock"
        bare = subprocess.Popen(
            [sys.executable, __file__, "--bare-server", bare_socket],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        assert bare.stdin is not None and bare.stdout is not None
        bare.stdin.write(len(get_bytes).to_bytes(4, "big") + get_bytes + list_bytes)
        bare.stdin.close()
        assert bare.stdout.readline().strip() == b"ready"

        for label, address in (("bare", bare_socket), ("ctsd", daemon.address)):
            results[f"{label}_get"] = asyncio.run(
                drive(address, "GetConnection", get_req, args.seconds)
            )
            results[f"{label}_list"] = asyncio.run(
                drive(address, "ListConnections", list_req, args.seconds)
            )
        results["get_vs_bare"] = round(results["ctsd_get"]["rps"] / results["bare_get"]["rps"], 3)
        results["list_vs_bare"] = round(
            results["ctsd_list"]["rps"] / results["bare_list"]["rps"], 3
        )
        results["targets"] = {"get_vs_bare": 0.7, "list_p99_ms": 50}
        results["meets_targets"] = (
            results["get_vs_bare"] >= 0.7 and results["ctsd_list"]["p99_ms"] < 50
        )
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait(10)
        daemon.cleanup()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
