"""The store on both backends: write throughput, write latency, change-feed latency.

For SQLite (a file) and PostgreSQL (a private cluster from tests/support/servers.py,
or `CTS_TEST_POSTGRES_URL`): `WRITES` order upserts (the engine's hottest write,
`SqlEngineStore.save_execution`) one after the other, then from `CONCURRENCY`
tasks at once, and `NOTICES` notifications timed from the moment the writer's
`write` returns until a second `Database` on the same store (another daemon of
a fleet) receives them. The fleet needs a change visible on every member within
100 ms: the notice p99 is that figure's store part.

    .venv/bin/python bench/store_bench.py [--writes N] [--notices N]

Prints one JSON object on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctsd.engine.orders import Execution, Order, OrderStatus
from ctsd.store.database import Database, Transaction
from ctsd.store.engines import SqlEngineStore
from ctsd.strategies.model import OrderType, Side
from tests.support.pg_databases import PgDatabases
from tests.support.servers import postgres_url

CONCURRENCY = 8


def _order(n: int) -> Order:
    return Order(f"o{n}", "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal(1), Decimal(10), "t",
                 1, OrderStatus.OPEN, Decimal(0), None, Decimal(0), f"x{n}", "", n, n)


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)}


async def _writes(db: Database, count: int) -> dict[str, Any]:
    store = SqlEngineStore(db)
    latencies = []
    started = time.perf_counter()
    for n in range(count):
        at = time.perf_counter()
        await store.save_execution("bench", Execution(_order(n), ()))
        latencies.append(time.perf_counter() - at)
    serial = count / (time.perf_counter() - started)

    async def worker(k: int) -> None:
        for n in range(k, count, CONCURRENCY):
            await store.save_execution("bench", Execution(_order(count + n), ()))

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
    concurrent = count / (time.perf_counter() - started)
    return {"writes_per_s": round(serial, 1), "concurrent_writes_per_s": round(concurrent, 1),
            **{f"write_{k}": v for k, v in _quantiles(latencies).items()}}


async def _notices(db: Database, other: Database, count: int) -> dict[str, float]:
    delays = []
    async with other.listen("bench") as feed:
        for n in range(count):
            def unit(tx: Transaction, n: int = n) -> None:
                tx.notify("bench", str(n))

            await db.write(unit)
            sent = time.perf_counter()
            notice = await asyncio.wait_for(anext(feed), 10)
            delays.append(time.perf_counter() - sent)
            assert notice.payload == str(n), notice
    return {f"notice_{k}": v for k, v in _quantiles(delays).items()}


async def _backend(state: Path, url: str | None, writes: int, notices: int) -> dict[str, Any]:
    db = await Database.open(state, url)
    other = await Database.open(state, url)
    try:
        return {**await _writes(db, writes), **await _notices(db, other, notices)}
    finally:
        await other.close()
        await db.close()


async def _run(server: str, writes: int, notices: int) -> dict[str, Any]:
    databases = PgDatabases(server)
    url = await databases.fresh()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return {"sqlite": await _backend(Path(tmp), None, writes, notices),
                    "postgresql": await _backend(Path(tmp), url, writes, notices)}
    finally:
        await databases.drop(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--notices", type=int, default=500)
    args = parser.parse_args()
    with postgres_url() as server:  # started on the main thread: it dies with us
        figures = asyncio.run(_run(server, args.writes, args.notices))
    print(json.dumps({"bench": "store", "writes": args.writes, "notices": args.notices,
                      "concurrency": CONCURRENCY, **figures}))


if __name__ == "__main__":
    main()
