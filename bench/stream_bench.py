"""Engines on the market-data hub: 1,000 PAPER engines, REST weight, watchers, LIVE event → order.

Everything runs on this machine over loopback: the exchange simulator (`ctsd sim`,
`--markets` pairs, Binance's charged request weight counted, every limit scaled by
`LIMIT_SCALE` for the REST phase only to stay out of the way) in a child process, and
`ctsd` in another (wrapped by this module's `daemon` role, which timestamps the hub's
market events and ccxt's order requests for the LIVE phase). Side by side in one run:

1. `rest`: `--rest-engines` PAPER engines (sma_cross and grid alternately, one symbol
   each) on connections with market_data_method REST, 1 s interval, for `--rest-seconds`:
   the Binance request weight the simulator charged per engine-hour.
2. `stream`: `--engines` PAPER engines, the same strategies, on `--symbols` symbols of
   Binance spot, on connections with market_data_method WEBSOCKET (interval 1 s = the
   minimum spacing of event-driven cycles), for `--seconds`: daemon CPU % and RSS
   (/proc), cycle lag = cycle start minus the moment the cycle was due (the market
   event, or the end of the minimum spacing), as the daemon measures it on its
   monotonic clock and reports it on every cycle (WatchEngines `last_cycle_lag`, read
   by one follower here), cycle duration, request weight per engine-hour, REST
   fallbacks, WebSocket connections the simulator saw.
3. `watch`: `--watchers` WatchEngines subscribers (bench.engine_bench's watcher child)
   while the stream engines keep running: delivery p99 = receipt - heartbeat_time of
   cycle-completion events, receipt being when gRPC hands a stream the message (the
   500 streams share 4 client processes: decoding waits for the window's end, so
   that no stream's receipt queues behind the others' decoding). The window is a whole
   minute (`--watch-seconds` 60), the period of the load: every 1-minute candle closes
   once in it, whenever it starts, and the sma_cross half of the engines cycles at that
   instant, the heaviest load the watchers meet. A 20 s window held such a herd or not
   (10 to 706 cycles), and its figure followed that draw. `watch_delivery_in_herd_seconds`
   is the delivery of the changes made in seconds when a quarter of the engines or more
   completed a cycle (`bench.engine_bench.HERD_CHANGES`), `watch_delivery_elsewhere` that
   of the rest: how many samples the herds make and what they cost.
4. `live`: `--live-engines` LIVE grid engines on WebSocket connections (tested keys),
   private order streams on; market event → order request sent, from timestamps taken
   in the daemon process: the hub's receipt of the ticker that woke the engine (the
   `Subscription.receive` that notified it) and the entry of ccxt's order POST, split
   into stages (wake, decide, PENDING write, ccxt's send: these LIVE engines outside a
   fleet send before they write, `ctsd.engine.rounds`, so the third stage is only the
   hand-over to the broker, and the write follows the send); measured from
   `LIVE_WARMUP_S` after every engine's first cycle. Grid levels (25 each side, 0.02 %
   apart: the band covers the simulated path's moves over minutes) are re-placed each
   time the price crosses one, so events keep producing orders for `--live-seconds`
   (20 engines x 300 s: about 1,200 samples). `balance_reads_most_in_1s`: the most
   periodic reconciliations (balance reads) within one second, which stays low only while
   the engines' reconciliations are spread over the interval.

The simulator's WebSocket and REST limit violations are reported (they must be 0).
The stream and live phases also report `quiet_events_total`: ticker changes that woke no
engine because they stayed inside its quiet bands (`ctsd.engine.wakes`), counted since
each engine started; the live phase its engines' cycles since they started
(`cycles_total`). Neither changes what is measured.
Prints one JSON object as its last line; progress goes to stderr. From the repository root:

    .venv/bin/python -m bench.stream_bench [--engines 1000] [--symbols 100] [--seconds 60]
        [--market-minute M]  # the same market for runs compared (see `pin_market`)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402

from bench.engine_bench import (  # noqa: E402
    Window,
    catalog_symbols,
    log,
    paper_config,
    read_line,
    spawn_watchers,
    stopping,
    summary,
)
from bench.support import SimProcess, bench_accounts, bench_daemon  # noqa: E402
from cts.engine_events import changed_engines  # noqa: E402
from cts.v1 import connection_pb2 as cpb  # noqa: E402
from cts.v1 import connection_service_pb2 as cspb  # noqa: E402
from cts.v1 import connection_service_pb2_grpc as csgrpc  # noqa: E402
from cts.v1 import engine_service_pb2 as pb  # noqa: E402
from cts.v1 import engine_service_pb2_grpc as sgrpc  # noqa: E402
from tests.support.daemon_process import DaemonProcess  # noqa: E402

LIMIT_SCALE = 1000.0
TARGET_LAG_P99_MS = 100.0
TARGET_CPU_PCT = 100.0
TARGET_EVENT_TO_ORDER_P99_MS = 5.0
TARGET_DELIVERY_P99_MS = 100.0
TARGET_WEIGHT_SAVING_PCT = 90.0
ORDER_PATH = "/api/v3/order"
ACCOUNT_PATH = "/api/v3/account"
"""Binance's balance read, which every LIVE engine's REST reconciliation makes."""
MAX_AHEAD_S = 366 * 86_400
"""How far ahead the simulator moves its paths (`/admin/advance`)."""
LIVE_WARMUP_S = 10.0
"""Left out of the LIVE figures after every engine ran its first cycle."""
PHASES = ("rest", "stream", "live")


# --- the daemon child: hub events and order requests timestamped ------------------------------


def run_daemon(trace: str, rest: list[str]) -> int:
    """`bench.support ctsd …` writing, at exit, (kind, time.monotonic(), symbol) rows (`R`:
    any REST request, as (kind, start, end, "METHOD path")): `E` a market event that woke
    engines, `F` an own fill arriving on a private stream, `S` a LIVE cycle falling due
    (the event, or the end of the minimum spacing after the last cycle: the clock the
    engine's `scheduled` runs on), `C` that cycle starting, `P` its decision made (the
    engine places an order), `Q` the broker's send beginning (after the order's PENDING
    record is written, or at once when the engine sends ahead, `ctsd.engine.rounds`),
    `O` an order request leaving."""
    from urllib.parse import parse_qs, urlsplit

    from ccxt.async_support.base.exchange import Exchange

    from bench.support import _ctsd_with_limits
    from ctsd.marketdata.feeds import Subscription
    from ctsd.wiring.engine_orders import ExchangeOrders

    rows: list[tuple[Any, ...]] = []
    fetch, notify, streamed = Exchange.fetch, Subscription.notify, ExchangeOrders.streamed

    async def timed(self: Any, url: str, method: str = "GET", headers: Any = None,
                    body: Any = None) -> Any:
        started = time.monotonic()
        if method == "POST" and urlsplit(url).path.endswith(ORDER_PATH):
            query = parse_qs(urlsplit(url).query or (body or ""))
            rows.append(("O", started, (query.get("symbol") or ["?"])[0]))
        try:
            return await fetch(self, url, method, headers, body)
        finally:
            rows.append(("R", started, repr(time.monotonic()), f"{method} {urlsplit(url).path}"))

    def noted(self: Subscription) -> None:
        if self.listeners and self.live:
            rows.append(("E", time.monotonic(),
                         str(self.key.key).replace("/", "")))
        notify(self)

    from ctsd.engine.brokers.live import LiveBroker
    from ctsd.engine.engine import Engine

    run_cycle, place, send = Engine.run_cycle, Engine._place, LiveBroker.place

    async def cycle_noted(self: Engine, scheduled: float | None = None,
                          interrupt: Any = None) -> bool:
        if scheduled is not None and self.config.mode.value == "live":
            symbol = self.config.symbols[0].replace("/", "")
            rows.extend((("S", scheduled, symbol), ("C", time.monotonic(), symbol)))
        return await run_cycle(self, scheduled, interrupt)

    async def placing(self: Engine, intent: Any) -> Any:
        rows.append(("P", time.monotonic(), intent.symbol.replace("/", "")))
        return await place(self, intent)

    async def sending(self: LiveBroker, request: Any) -> Any:
        rows.append(("Q", time.monotonic(), request.symbol.replace("/", "")))
        return await send(self, request)

    def fill_noted(self: ExchangeOrders, order: Any) -> Any:
        found = streamed(self, order)
        if found is not None and found.filled > 0:
            rows.append(("F", time.monotonic(), found.symbol.replace("/", "")))
        return found

    if trace:
        Exchange.fetch = timed
        Subscription.notify = noted  # type: ignore[method-assign]
        ExchangeOrders.streamed = fill_noted  # type: ignore[method-assign]
        Engine.run_cycle = cycle_noted  # type: ignore[method-assign]
        Engine._place = placing  # type: ignore[method-assign]
        LiveBroker.place = sending  # type: ignore[method-assign]
    try:
        return _ctsd_with_limits(rest)
    finally:
        if trace:
            Path(trace).write_text(json.dumps(rows))


def daemon(sim: SimProcess, trace: str = "", synchronous: str = "full") -> DaemonProcess:
    made = bench_daemon(launcher=[sys.executable, "-m", "bench.stream_bench", "--role", "daemon",
                                  "--trace", trace, "--", "--"])
    config = made.root / "ctsd.toml"
    config.write_text(
        "[rate_limits.binance.request_weight]\n"
        f"limit = {1200 * LIMIT_SCALE:.0f}\ninterval_s = 60\n"
        "[rate_limits.binance.orders]\n"
        f"limit = {50 * LIMIT_SCALE:.0f}\ninterval_s = 10\n"
        f'[store]\nsqlite_synchronous = "{synchronous}"\n')
    made.extra_args = ["--config", str(config), "--sim-endpoint", sim.base_url]
    return made


STAGES = ("wake", "decide", "pending_write", "send")
"""Of a sample, from the moment it was due: to its cycle starting (`C`), to the decision
(`P`), to the broker's send beginning (`Q`: the PENDING record written first, unless the
engine sends ahead), to the request leaving (`O`)."""


def event_to_order(rows: list[list[Any]], since: float = 0.0) -> dict[str, Any]:
    """Each order request from `since` on (monotonic: after the engines' first cycles)
    against the last event of its symbol before it — a market event (`E`: a ticker the
    engine reacts to) or its own fill arriving on the private stream (`F`: the market
    reached its order) — where that event is less than a second old (older: the order
    came from something else). Only the first order after an event counts: the cycle it
    woke may send several. Past spacing: from the later of the event and the moment
    the engine's minimum spacing allowed a cycle (`S`), split into `STAGES` — the
    engine's own path; other engines' concurrent work shows as waiting in them. The
    simulator trades every pair at the same instant, so market events come in bursts
    (`events_per_burst`): the last engine a burst wakes waits for the others."""
    requests = sorted((r[1], float(r[2])) for r in rows if r[0] == "R")
    balance_reads = sorted(r[1] for r in rows if r[0] == "R" and r[1] >= since
                           and r[3].startswith("GET ") and r[3].endswith(ACCOUNT_PATH))
    rows = [r for r in rows if r[0] != "R"]
    last: dict[str, tuple[float, str]] = {}
    marks: dict[str, dict[str, float]] = {}
    spans: dict[str, list[float]] = {"E": [], "F": []}
    net: list[float] = []
    stages: dict[str, list[float]] = {name: [] for name in STAGES}
    used: set[tuple[str, float]] = set()
    for kind, at, symbol in sorted(rows, key=lambda r: r[1]):
        if kind in spans:
            last[symbol] = (at, kind)
            marks[symbol] = {}
            continue
        if kind != "O":
            marks.setdefault(symbol, {}).setdefault(kind, at)  # the first after the event
            continue
        event, trigger = last.get(symbol, (None, ""))
        if event is None or at < since or at - event > 1.0 or (symbol, event) in used:
            continue
        used.add((symbol, event))
        spans[trigger].append((at - event) * 1000)
        mark = marks.get(symbol, {})
        start = max(event, mark.get("S", event))
        net.append((at - start) * 1000)
        points = [start, mark.get("C"), mark.get("P"), mark.get("Q"), at]
        if all(p is not None and start <= p <= at for p in points):
            for name, begin, end in zip(STAGES, points, points[1:], strict=False):
                stages[name].append((float(end or 0) - float(begin or 0)) * 1000)
    return {"market_events": sum(1 for r in rows if r[0] == "E"),
            "events_per_burst": bursts([r[1] for r in rows if r[0] == "E" and r[1] >= since]),
            "fills_streamed": sum(1 for r in rows if r[0] == "F"),
            "orders": sum(1 for r in rows if r[0] == "O"),
            "rest_requests": len(requests),
            "balance_reads": len(balance_reads),
            "balance_reads_most_in_1s": most_within(balance_reads, 1.0),
            "event_to_order": summary(spans["E"] + spans["F"]),
            "market_event_to_order": summary(spans["E"]),
            "fill_to_order": summary(spans["F"]),
            "event_to_order_past_spacing": summary(net),
            "stages": {name: summary(values) for name, values in stages.items()}}


def most_within(times: list[float], span_s: float) -> int:
    """The most of the sorted `times` that fall within any `span_s`: engines reconciling
    in step show as one such crowd every interval (`ctsd.engine.brokers.live`)."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > span_s:
            first += 1
        most = max(most, last - first + 1)
    return most


def bursts(times: list[float], gap_s: float = 0.05) -> dict[str, float]:
    """Events closer than `gap_s` to the one before belong to one burst: mean and max."""
    sizes: list[int] = []
    previous = -float("inf")
    for at in sorted(times):
        if at - previous > gap_s:
            sizes.append(0)
        sizes[-1] += 1
        previous = at
    return {"mean": round(sum(sizes) / len(sizes), 1) if sizes else 0.0,
            "max": float(max(sizes, default=0))}


# --- connections and engines -----------------------------------------------------------------


def seed(address: str, count: int, method: cpb.MarketDataMethod.ValueType, prefix: str,
         accounts: list[dict[str, Any]] | None = None) -> list[str]:
    """`count` Binance spot connections with `method`; keyed by `accounts` where given."""
    names = []
    with grpc.insecure_channel(address) as channel:
        stub = csgrpc.ConnectionServiceStub(channel)
        for i in range(count):
            account = accounts[i] if accounts else {"api_key": f"{prefix}key{i:010d}",
                                                    "secret": os.urandom(16).hex()}
            conn = cpb.Connection(
                display_name=f"{prefix} {i:05d}", exchange="binance",
                api_type=cpb.API_TYPE_SPOT, enabled=True, market_data_method=method,
                credentials=cpb.Credentials(api_key=account["api_key"],
                                            api_secret=account["secret"]))
            made = stub.CreateConnection(cspb.CreateConnectionRequest(
                connection=conn, connection_id=f"{prefix}-{i:05d}"))
            names.append(made.name)
    return names


def configs(count: int, symbols: int, markets: int) -> list[pb.EngineConfig]:
    catalog = [c for c in catalog_symbols(markets) if c[0].endswith("/USDT")][:symbols]
    return [paper_config(i, *catalog[i % len(catalog)]) for i in range(count)]


async def start_all(stub: sgrpc.EngineServiceAsyncStub, names: list[str],
                    configs: list[pb.EngineConfig], parallel: int = 20) -> None:
    queue = list(zip(names, configs, strict=True))

    async def worker() -> None:
        while queue:
            name, config = queue.pop()
            await stub.StartEngine(pb.StartEngineRequest(name=f"{name}/engine", config=config),
                                   timeout=60)

    await asyncio.gather(*(worker() for _ in range(parallel)))


async def stop_all(stub: sgrpc.EngineServiceAsyncStub, names: list[str]) -> None:
    for name in names:
        await stub.StopEngine(pb.StopEngineRequest(name=f"{name}/engine"), timeout=60)


async def running(stub: sgrpc.EngineServiceAsyncStub, names: list[str], within_s: float,
                  ) -> list[pb.Engine]:
    wanted = {f"{n}/engine" for n in names}
    deadline = time.monotonic() + within_s
    while True:
        listed = [e for e in (await stub.ListEngines(pb.ListEnginesRequest(), timeout=30)).engines
                  if e.name in wanted]
        if sum(e.state == pb.ENGINE_STATE_RUNNING and e.cycles >= 1 for e in listed) == len(
                wanted) or time.monotonic() > deadline:
            return listed
        await asyncio.sleep(1.0)


class Cycles:
    """Every cycle completion one WatchEngines stream sees: the daemon's lag and duration."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.samples: list[tuple[float, float, float, int]] = []
        """(receipt wall ms, lag ms, duration ms, market_data_source)."""

    async def follow(self, stub: sgrpc.EngineServiceAsyncStub) -> None:
        async for event in stub.WatchEngines(pb.WatchEnginesRequest()):
            now = time.time() * 1000
            engines = (event.snapshot.engines if event.WhichOneof("event") == "snapshot"
                       else changed_engines(event))
            for engine in engines:
                if engine.cycles > self.seen.get(engine.name, engine.cycles - 1 if
                                                 engine.cycles == 0 else 0):
                    self.seen[engine.name] = engine.cycles
                    self.samples.append((now, engine.last_cycle_lag.ToNanoseconds() / 1e6,
                                         engine.last_cycle_duration.ToNanoseconds() / 1e6,
                                         engine.market_data_source))

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        inside = [s for s in self.samples if t0 <= s[0] < t1]
        return {"cycles": len(inside), "lag": summary([s[1] for s in inside]),
                "duration": summary([s[2] for s in inside]),
                "cycles_on_rest_fallback": sum(
                    s[3] == pb.MARKET_DATA_SOURCE_REST_FALLBACK for s in inside)}


def sim_json(sim: SimProcess, path: str) -> Any:
    with urllib.request.urlopen(sim.base_url + path, timeout=30) as answer:
        return json.loads(answer.read())


def weight(sim: SimProcess) -> float:
    charged = sim.stats().get("bench_binance", {}).get("charged_weight", {})
    return float(sum(charged.values()))


# --- phases ------------------------------------------------------------------------------------


async def rest_phase(args: argparse.Namespace, sim: SimProcess, stub: sgrpc.EngineServiceAsyncStub,
                     names: list[str]) -> dict[str, Any]:
    await start_all(stub, names, configs(len(names), args.symbols, args.markets))
    await running(stub, names, 120)
    w0, t0 = weight(sim), time.monotonic()
    await asyncio.sleep(args.rest_seconds)
    spent, hours = weight(sim) - w0, (time.monotonic() - t0) / 3600
    await stop_all(stub, names)
    return {"engines": len(names), "seconds": args.rest_seconds, "weight": spent,
            "weight_per_engine_hour": round(spent / len(names) / hours, 1)}


async def stream_phase(args: argparse.Namespace, sim: SimProcess, ctsd: DaemonProcess,
                       stub: sgrpc.EngineServiceAsyncStub, names: list[str], cycles: Cycles,
                       ) -> dict[str, Any]:
    assert ctsd.proc is not None
    pid = ctsd.proc.pid
    started = time.monotonic()
    await start_all(stub, names, configs(len(names), args.symbols, args.markets))
    listed = await running(stub, names, 300)
    out: dict[str, Any] = {"start_s": round(time.monotonic() - started, 1),
                           "engines_running": sum(e.state == pb.ENGINE_STATE_RUNNING
                                                  for e in listed)}
    log(f"{out['engines_running']} stream engines running after {out['start_s']} s")
    w0, t0, wall0 = weight(sim), time.monotonic(), time.time() * 1000
    window = await Window(pid).run(args.seconds)
    hours = (time.monotonic() - t0) / 3600
    out.update(window)
    out.update(cycles.window(wall0, time.time() * 1000))
    spent = weight(sim) - w0
    out["weight"] = spent
    out["weight_per_engine_hour"] = round(spent / len(names) / hours, 2)
    listed = list((await stub.ListEngines(pb.ListEnginesRequest(), timeout=30)).engines)
    out["fallbacks"] = sum(e.market_data_fallbacks for e in listed)
    out["quiet_events_total"] = sum(e.quiet_events for e in listed)
    out["on_stream"] = sum(e.market_data_source == pb.MARKET_DATA_SOURCE_STREAM for e in listed)
    out["ws_connections"] = len(sim.admin("GET", "/admin/ws")["connections"])
    return out


async def watch_phase(args: argparse.Namespace, ctsd: DaemonProcess, cycles: Cycles,
                      ) -> dict[str, Any]:
    assert ctsd.proc is not None
    with stopping(spawn_watchers(ctsd.address, args.watchers, args.watch_seconds)) as child:
        if read_line(child, 300) != "ready":
            raise RuntimeError("watchers did not come up")
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        wall0 = time.time() * 1000
        out = await Window(ctsd.proc.pid).run(args.watch_seconds)
        out.update(cycles.window(wall0, time.time() * 1000))
        line = await asyncio.get_running_loop().run_in_executor(None, read_line, child, 120)
        out.update(json.loads(line) if line.startswith("{") else {"error": line})
    return out


async def live_phase(args: argparse.Namespace, sim: SimProcess, stub: sgrpc.EngineServiceAsyncStub,
                     conns: csgrpc.ConnectionServiceAsyncStub, names: list[str],
                     ) -> dict[str, Any]:
    for name in names:
        async for event in conns.TestConnection(cspb.TestConnectionRequest(name=name),
                                                timeout=120):
            if event.HasField("result"):
                assert event.result.status != cpb.TEST_STATUS_FAILED, event.result
    catalog = [c for c in catalog_symbols(args.markets) if c[0].endswith("/USDT")][:len(names)]
    engine_configs = []
    for symbol, _ in catalog:
        price = Decimal(str(sim_json(sim, f"/binance/api/v3/ticker/24hr?symbol="
                                          f"{symbol.replace('/', '')}")["lastPrice"]))
        amount = Decimal(10) / price
        engine_configs.append(pb.EngineConfig(
            strategy="grid", symbols=[symbol], mode=pb.TRADING_MODE_LIVE,
            interval=duration_pb2.Duration(seconds=1), params={
                "reference_price": f"{price}", "spacing_pct": "0.02", "levels": "25",
                "amount": f"{amount:.6g}"}))
    await start_all(stub, names, engine_configs, parallel=4)
    await running(stub, names, 120)
    await asyncio.sleep(LIVE_WARMUP_S)  # the first cycles' 25 orders each, and their echoes
    since = time.monotonic()
    await asyncio.sleep(args.live_seconds)
    listed = [e for e in (await stub.ListEngines(pb.ListEnginesRequest())).engines
              if e.mode == pb.TRADING_MODE_LIVE]
    await stop_all(stub, names)
    return {"engines": len(names), "seconds": args.live_seconds, "since": since,
            "orders_placed": sum(e.orders_placed for e in listed),
            "orders_filled": sum(e.orders_filled for e in listed),
            "cycles_total": sum(e.cycles for e in listed),
            "quiet_events_total": sum(e.quiet_events for e in listed),
            "failed": [e.last_error for e in listed if e.state == pb.ENGINE_STATE_FAILED]}


async def stream_phases(args: argparse.Namespace, sim: SimProcess, ctsd: DaemonProcess,
                        stub: sgrpc.EngineServiceAsyncStub, names: list[str],
                        phases: dict[str, Any]) -> None:
    """The stream phase, then the watch phase with those engines still running."""
    cycles = Cycles()
    follower = asyncio.create_task(cycles.follow(stub))
    try:
        phases["stream"] = await stream_phase(args, sim, ctsd, stub, names, cycles)
        log(f"stream: {phases['stream']}")
        phases["watch"] = await watch_phase(args, ctsd, cycles)
        log(f"watch: {phases['watch']}")
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.RpcError):
            await follower
    await stop_all(stub, names)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    live_accounts = bench_accounts(args.live_engines, prefix="livekey")
    for account in live_accounts:
        account["balances"] = {"spot": {"USDT": "100000", **{
            s.split("/")[0]: "1000" for s, _ in catalog_symbols(args.markets)[:200]}}}
    sim = SimProcess(args.markets, limit_scale=LIMIT_SCALE, accounts=live_accounts,
                     count_weights=True)
    trace = Path(tempfile.mkdtemp(prefix="ctsb-trace-", dir="/tmp")) / "events.json"
    result: dict[str, Any] = {"bench": "stream", "engines": args.engines,
                              "symbols": args.symbols, "watchers": args.watchers,
                              "sqlite_synchronous": args.sqlite_synchronous,
                              "cpus": os.cpu_count()}
    phases: dict[str, Any] = {}
    try:
        sim.start()
        result["market_minute"] = pin_market(sim, args.market_minute)
        log(f"simulator at {sim.base_url} with {args.markets} markets, market from minute "
            f"{result['market_minute']}")
        ctsd = daemon(sim, str(trace), args.sqlite_synchronous)
        try:
            ctsd.start(timeout=120)
            rest_names = seed(ctsd.address, args.rest_engines * ("rest" in args.phases),
                              cpb.MARKET_DATA_METHOD_REST, "rest")
            ws_names = seed(ctsd.address, args.engines * ("stream" in args.phases),
                            cpb.MARKET_DATA_METHOD_WEBSOCKET, "ws")
            live_names = seed(ctsd.address, args.live_engines, cpb.MARKET_DATA_METHOD_WEBSOCKET,
                              "live", live_accounts)
            async with grpc.aio.insecure_channel(ctsd.address) as channel:
                stub = sgrpc.EngineServiceStub(channel)
                if "rest" in args.phases:
                    log(f"rest phase: {args.rest_engines} engines, {args.rest_seconds} s")
                    phases["rest"] = await rest_phase(args, sim, stub, rest_names)
                    log(f"rest: {phases['rest']}")
                if "stream" in args.phases:
                    await stream_phases(args, sim, ctsd, stub, ws_names, phases)
                if "live" in args.phases and args.live_engines:
                    log(f"live phase: {args.live_engines} engines, {args.live_seconds} s")
                    phases["live"] = await live_phase(
                        args, sim, stub, csgrpc.ConnectionServiceStub(channel), live_names)
        finally:
            ctsd.cleanup()  # SIGTERM: the wrapper writes the trace on its way out
        rows = json.loads(trace.read_text()) if trace.exists() else []
        if args.keep_trace:
            trace.replace(args.keep_trace)
        if "live" in phases:
            phases["live"].update(event_to_order(rows, phases["live"].pop("since")))
            log(f"live: {phases['live']}")
        stats = sim.stats()
        phases["sim_violations"] = stats.get("violations_by_kind", {})
    finally:
        sim.stop()
        trace.unlink(missing_ok=True)
        trace.parent.rmdir()
    if "stream" in phases and "rest" in phases:
        result.update(engines_summary(phases["stream"], phases["watch"], phases["rest"]))
    live = phases.get("live", {}).get("event_to_order_past_spacing", {})
    result.update({
        "live_event_to_order_raw_p99_ms": phases.get("live", {}).get(
            "event_to_order", {}).get("p99_ms"),
        "live_event_to_order_p50_ms": live.get("p50_ms"),
        "live_event_to_order_p99_ms": live.get("p99_ms"),
        "live_event_to_order_samples": live.get("n", 0),
        **{f"live_{name}_p99_ms": phases.get("live", {}).get("stages", {}).get(name, {}).get(
            "p99_ms") for name in STAGES},
        "live_events_per_burst": phases.get("live", {}).get("events_per_burst"),
        "live_meets_target": (live.get("p99_ms") or 1e9) < TARGET_EVENT_TO_ORDER_P99_MS,
        "sim_violations": phases["sim_violations"],
        "phases": phases,
    })
    return result


def engines_summary(stream: dict[str, Any], watch: dict[str, Any], rest: dict[str, Any],
                    ) -> dict[str, Any]:
    """The headline figures of the rest, stream and watch phases."""
    saving = (100 * (1 - stream["weight_per_engine_hour"] / rest["weight_per_engine_hour"])
              if rest["weight_per_engine_hour"] else None)
    return {
        "stream_cpu_pct": stream["cpu_pct"], "stream_rss_mb_max": stream["rss_mb_max"],
        "cycle_lag_p50_ms": stream["lag"]["p50_ms"], "cycle_lag_p99_ms": stream["lag"]["p99_ms"],
        "cycle_duration_p99_ms": stream["duration"]["p99_ms"], "cycles": stream["cycles"],
        "cycle_lag_meets_target": (stream["lag"]["p99_ms"] or 1e9) < TARGET_LAG_P99_MS,
        "cpu_meets_target": stream["cpu_pct"] <= TARGET_CPU_PCT,
        "weight_per_engine_hour_rest": rest["weight_per_engine_hour"],
        "weight_per_engine_hour_stream": stream["weight_per_engine_hour"],
        "weight_saving_pct": None if saving is None else round(saving, 2),
        "weight_meets_target": saving is not None and saving >= TARGET_WEIGHT_SAVING_PCT,
        "watch_delivery_p99_ms": watch.get("delivery", {}).get("p99_ms"),
        "watch_cycles_in_window": watch.get("cycles"),
        "watch_delivery_in_herd_seconds": watch.get("delivery_in_herd_seconds"),
        "watch_delivery_elsewhere": watch.get("delivery_elsewhere"),
        "watch_delivery_meets_target": (
            (watch.get("delivery", {}).get("p99_ms") or 1e9) < TARGET_DELIVERY_P99_MS),
        "cycle_lag_p99_under_watchers_ms": watch["lag"]["p99_ms"],
        "cpu_pct_under_watchers": watch["cpu_pct"]}


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that `finally` stops every child


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--engines", type=int, default=1000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--markets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0, help="stream window")
    parser.add_argument("--rest-engines", type=int, default=100)
    parser.add_argument("--rest-seconds", type=float, default=20.0)
    parser.add_argument("--watchers", type=int, default=500)
    parser.add_argument("--watch-seconds", type=float, default=60.0,
                        help="a whole minute holds one candle close, whenever it starts")
    parser.add_argument("--live-engines", type=int, default=20)
    parser.add_argument("--live-seconds", type=float, default=300.0)
    parser.add_argument("--sqlite-synchronous", default="full", choices=("full", "normal"),
                        help="the daemon's [store] sqlite_synchronous (docs/operations.md)")
    parser.add_argument("--phases", type=lambda v: set(v.split(",")), default=set(PHASES),
                        help="comma-separated subset of " + ",".join(PHASES)
                        + " (watch runs with stream)")
    hidden = argparse.SUPPRESS
    parser.add_argument("--role", default="main", choices=("main", "daemon"), help=hidden)
    parser.add_argument("--trace", default="", help=hidden)
    parser.add_argument("--keep-trace", default="", help="write the LIVE trace rows here")
    parser.add_argument("--market-minute", type=int, default=None,
                        help="run the price paths from this minute since the epoch (ahead of "
                             "now): the same market for runs compared; default the current")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=hidden)
    return parser.parse_args(argv)


def pin_market(sim: SimProcess, minute: int | None) -> int:
    """The minute (since the epoch) the simulator's price paths run from: unpinned, the
    current one, each run walking another stretch of the seeded paths; pinned, a minute
    ahead of now (the simulator moves its paths forward only, `/admin/advance`), the same
    market for runs compared, give or take the seconds the engines take to start. The
    engines' cycles still differ between runs on one market (quiet bands make each
    engine's wake-ups depend on its own history): a 20 s watch window held 53 to 706
    cycles in four runs from one pinned minute. The watch window is a whole minute now,
    and `watch_cycles_in_window` still reports the load its delivery p99 was measured
    under."""
    now_s = time.time()
    if minute is None:
        return int(now_s // 60)
    ahead_s = minute * 60 - now_s
    if not 0 <= ahead_s <= MAX_AHEAD_S:
        raise SystemExit(f"--market-minute {minute} is not within the next 366 days "
                         f"(now is minute {int(now_s // 60)})")
    sim.admin("POST", "/admin/advance", {"seconds": round(ahead_s, 3)})
    return minute


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.role == "daemon":
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        return run_daemon(args.trace, rest)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    result = asyncio.run(run(args))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
