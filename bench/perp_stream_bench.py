"""REST requests a LIVE perpetuals engine makes per cycle, on a WebSocket connection and on
REST, side by side in one run (Binance USDⓈ-M, Bybit linear, OKX SWAP).

For each venue two engines of the same account run the same cycles against one simulator:
one as on a WebSocket connection (market data from the hub, orders, fills and positions
from the private stream, funding terms held between funding times) and one as on REST.
Each holds a position (so funding and positions matter), then runs `--cycles` cycles
spaced `--spacing` seconds apart, and the simulator counts the REST requests each sent
(`/admin/stats` endpoints). Printed per venue and mode: REST requests per cycle (and by
endpoint), REST position reads, cycle time p50/p99 (on REST it includes the shared rate
limiter's waits). Target: 0 REST requests per steady cycle on the WebSocket connection
(REST only at start, after a gap and every 60 s).

Everything runs in this process (`tests/support/perp_stream_rig.py`): the simulator over
HTTP and WebSocket, the hub, the order feed, the exchange layer and shared rate limiter,
the engines and a SQLite store.

    .venv/bin/python -m bench.perp_stream_bench [--cycles 100] [--spacing 0.25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ctsd.clock import SystemClock  # noqa: E402
from ctsd.marketdata.hub import MarketDataHub  # noqa: E402
from ctsd.ratelimit import RateLimiter  # noqa: E402
from ctsd.sim.server import SimulatorServer  # noqa: E402
from ctsd.sim.ws.config import WsConfig  # noqa: E402
from ctsd.store.database import Database  # noqa: E402
from ctsd.store.engines import SqlEngineStore  # noqa: E402
from ctsd.strategies.model import Side  # noqa: E402
from tests.support.exchange_clients import exchange_sim_config, make_factory  # noqa: E402
from tests.support.perp_rig import market_order  # noqa: E402
from tests.support.perp_stream_rig import Driven, open_engine, rest_calls  # noqa: E402

VENUES = ("binance", "bybit", "okx")


async def measure(driven: Driven, server: SimulatorServer, cycles: int, spacing_s: float,
                  ) -> dict[str, Any]:
    """`cycles` cycles of an engine holding a position: REST requests and cycle times."""
    await driven.cycle(market_order(Side.BUY, "0.01"))
    await driven.holding("0.01")
    await driven.cycle()  # the first cycle holding a position reads its funding history
    before, reads = rest_calls(server, driven.venue), driven.broker.position_reads
    took = []
    for _ in range(cycles):
        started = time.perf_counter()
        await driven.cycle()
        took.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(spacing_s)
    spent = rest_calls(server, driven.venue) - before
    ordered = sorted(took)
    return {
        "cycles": cycles,
        "rest_per_cycle": round(sum(spent.values()) / cycles, 3),
        "rest_by_endpoint": dict(sorted(spent.items())),
        "position_reads": driven.broker.position_reads - reads,
        "cycle_p50_ms": round(statistics.median(took), 3),
        "cycle_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "position_differences": driven.engine.status.position_differences,
    }


async def venue_rows(venue: str, cycles: int, spacing_s: float) -> dict[str, Any]:
    config = exchange_sim_config(markets=30, ws=WsConfig(tick_s=0.02))
    with tempfile.TemporaryDirectory(prefix="ctsb-perpstream-") as state:
        async with (SimulatorServer(config) as server, RateLimiter() as limiter,
                    make_factory(server, limiter) as factory,
                    MarketDataHub(factory.market_stream, SystemClock()) as hub,
                    AsyncExitStack() as stack):
            database = await Database.open(Path(state))
            stack.push_async_callback(database.close)
            store = SqlEngineStore(database)
            rows = {}
            for mode, source in (("websocket", hub), ("rest", None)):
                driven = await open_engine(server, factory, source, store, stack, venue,
                                           engine_id=f"{mode[:2]}000000")
                rows[mode] = await measure(driven, server, cycles, spacing_s)
                driven.strategy.queue.append((market_order(Side.SELL, "0.01",
                                                           reduce_only=True),))
                assert await driven.engine.run_cycle()  # flat again for the next mode
            return rows


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "perp_stream", "cycles": args.cycles,
                              "spacing_s": args.spacing, "load": os.getloadavg()[0]}
    for venue in VENUES:
        rows = await venue_rows(venue, args.cycles, args.spacing)
        print(f"[perp_stream] {venue}: {json.dumps(rows)}", file=sys.stderr)
        result[venue] = rows
    result["meets_target"] = all(result[v]["websocket"]["rest_per_cycle"] == 0
                                 for v in VENUES)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=100)
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between cycles")
    args = parser.parse_args(argv)
    if args.cycles < 1:
        parser.error("--cycles must be positive")
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
