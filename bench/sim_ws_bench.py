"""Messages per second the simulator's WebSockets deliver to N subscribers, on one core.

The simulator (`ctsd sim`, `--markets` pairs) runs in its own process pinned to the
first CPU; this process, pinned to the others, opens `--subscribers` WebSocket
connections to the simulated Bybit spot stream and subscribes each to `--topics`
tickers (`tickers.<SYMBOL>`, pushed every 50 ms when they change). A driver moves
the market's path a second forward every `--step-ms` through the admin API
(`POST /admin/advance`), so every ticker changes at that rate; the hub's one data
loop then renders each topic once and fans it out to every subscriber. After
`--warmup` seconds, a window of `--seconds` counts the messages the clients
received and reads the server's CPU time and run-queue wait from /proc.

`messages_per_s` is what the clients got; `server_cpu` the share of a core the
server used (with `server_wait`, the share it wanted but a neighbour had: the
machine is shared); `messages_per_cpu_s` = messages per server CPU-second, what one
core would deliver without neighbours. The hub's counters must show no message lost
and no WebSocket limit violated. Prints one JSON object as its last line; progress
goes to stderr. Run from the repository root:

    .venv/bin/python bench/sim_ws_bench.py [--subscribers N] [--topics K] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STREAM = "/bybit/v5/public/spot"
READY_TIMEOUT_S = 60.0
SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT",
           "TRXUSDT")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Server:
    """`ctsd sim` in a child process pinned to CPU 0."""

    def __init__(self, markets: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ctsd", "sim", "--port", "0", "--markets", str(markets)],
            cwd=REPO, stdout=subprocess.PIPE, text=True)
        if hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self.proc.pid, {0})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"listening on (http://\S+)", line)
        if found is None:
            self.stop()
            raise RuntimeError(f"simulator did not start: {line!r}")
        self.base_url = found.group(1)

    def cpu(self) -> tuple[float, float]:
        """(CPU seconds used, seconds spent waiting for a CPU) so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        used = (int(fields[11]) + int(fields[12])) / ticks
        wait = 0.0
        with contextlib.suppress(OSError, ValueError, IndexError):
            wait = int(Path(f"/proc/{self.proc.pid}/schedstat").read_text().split()[1]) / 1e9
        return used, wait

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base_url}/admin/{path}", data=data,
                                         method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read().decode() or "null")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Counter:
    def __init__(self) -> None:
        self.messages = 0


async def subscriber(session: aiohttp.ClientSession, url: str, topics: list[str],
                     counter: Counter, ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with session.ws_connect(url, compress=0) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "args": topics}))
        answer = json.loads((await ws.receive()).data)
        assert answer.get("success"), answer
        ready.set()
        while not stop.is_set():
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"subscriber lost its connection: {message}")
            if message.data.startswith('{"topic"'):
                counter.messages += 1


async def drive(server: Server, step_s: float, stop: asyncio.Event) -> None:
    """Move the path a second forward every `step_s`: every ticker changes."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            async with session.post(f"{server.base_url}/admin/advance",
                                    json={"seconds": 1.0}) as answer:
                assert answer.status == 200, answer.status
            await asyncio.sleep(step_s)


async def run(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    url = server.base_url.replace("http://", "ws://") + STREAM
    topics = [f"tickers.{s}" for s in SYMBOLS[: args.topics]]
    counter, stop = Counter(), asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        readies = [asyncio.Event() for _ in range(args.subscribers)]
        tasks = [asyncio.create_task(subscriber(session, url, topics, counter, ready, stop))
                 for ready in readies]
        async with asyncio.timeout(READY_TIMEOUT_S):
            for ready in readies:
                await ready.wait()
        log(f"{args.subscribers} subscribers, {len(topics)} topics each; warming up")
        driver = asyncio.create_task(drive(server, args.step_ms / 1000, stop))
        await asyncio.sleep(args.warmup)
        m0, (cpu0, wait0), t0 = counter.messages, server.cpu(), time.monotonic()
        await asyncio.sleep(args.seconds)
        m1, (cpu1, wait1), t1 = counter.messages, server.cpu(), time.monotonic()
        stop.set()
        await driver
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    window = t1 - t0
    messages, cpu = m1 - m0, cpu1 - cpu0
    hub = server.admin("GET", "ws")
    stats = server.admin("GET", "stats")
    return {
        "bench": "sim_ws", "subscribers": args.subscribers, "topics_per_subscriber": len(topics),
        "subscriptions": args.subscribers * len(topics), "window_s": round(window, 2),
        "messages": messages, "messages_per_s": round(messages / window),
        "server_cpu": round(cpu / window, 3), "server_wait": round((wait1 - wait0) / window, 3),
        "messages_per_cpu_s": round(messages / cpu) if cpu else None,
        "lost": sum(c["lost"] for c in hub["connections"]),
        "ws_violations": {k: v for k, v in stats["violations_by_kind"].items() if ":ws_" in k},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--topics", type=int, default=4, choices=range(1, len(SYMBOLS) + 1))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--step-ms", type=float, default=50.0)
    parser.add_argument("--markets", type=int, default=8)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})
    server = Server(args.markets)
    try:
        result = asyncio.run(run(args, server))
    finally:
        server.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
