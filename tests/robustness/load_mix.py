"""The soak test's load: clients looping over a seeded mix of every RPC, and stream watchers.

Runs as a child process of tests/robustness/test_load_soak.py, so its event
loop competes neither with the test's simulator thread nor with the daemon:

    python -m tests.robustness.load_mix PLAN.json REPORT.json

Each client owns its connections (created under its own ids and simulator
key) and may only expect what its own actions make true: an update with the
etag it just read is OK, one with an etag it knows is stale is ABORTED, a
name that never existed is NOT_FOUND. Every answer is checked against the
codes expected for that call; the first unexpected ones are reported with
their details. Watchers check that a snapshot comes first and that events
keep coming (heartbeats every few seconds at least).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from cts.v1 import connection_pb2 as cpb
from cts.v1 import connection_service_pb2 as cspb
from cts.v1 import connection_service_pb2_grpc as csgrpc
from cts.v1 import engine_service_pb2 as epb
from cts.v1 import engine_service_pb2_grpc as egrpc
from cts.v1 import health_service_pb2 as hpb
from cts.v1 import health_service_pb2_grpc as hgrpc

T = TypeVar("T")
Code = grpc.StatusCode
OK = frozenset({Code.OK})
CALL_TIMEOUT_S = 30.0  # a hang, not slowness: DEADLINE_EXCEEDED is a loss
THINK_S = 0.05  # each client pauses up to this long between operations
MAX_UNEXPECTED = 25  # details kept of the first unexpected answers
OWNED_MAX = 3  # connections a client holds at once
# Between two of one client's calls that spend exchange budget: each client has
# its own key, and some venues count a key's private calls in a slowly
# draining account counter (Kraken's decays by a third of a call a second).
EXCHANGE_GAP_S = 30.0
SYMBOL = "BTC/USDT"
PREFIX = "connections/"
FILTERS = ('exchange = "binance"', "enabled = true", 'exchange != "okx" AND enabled = true',
           "api_type = spot", "testnet = false")  # fmt: skip
# Distinct connections per channel: without it grpc shares one transport per target.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)


@dataclass(frozen=True)
class LoadPlan:
    address: str
    seconds: float
    clients: int
    watchers: int
    seed: int
    channels: int  # the clients' channels; watchers spread over their own
    shared_engines: tuple[str, ...]  # engines running the whole time (read-only here)
    exchanges: tuple[str, ...]  # client i's connections are on exchanges[i % len]
    key_prefix: str  # client i's simulator key is f"{key_prefix}{i}"
    secret_prefix: str
    passphrase: str
    starters: int  # clients 0..starters-1 also start and stop engines on their connections
    exchange_calls_per_s: float  # pace of the tests and dry runs: they spend exchange budget
    engine_starts_per_s: float  # pace of the starters' engine starts (see Pacer)

    @classmethod
    def read(cls, path: Path) -> LoadPlan:
        raw = json.loads(path.read_text())
        for key in ("shared_engines", "exchanges"):
            raw[key] = tuple(raw[key])
        return cls(**raw)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))


@dataclass
class RpcRecord:
    codes: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)


@dataclass
class WatcherRecord:
    snapshot_first: bool = False
    snapshots: int = 0
    changes: int = 0
    heartbeats: int = 0
    resyncs: int = 0
    first_s: float = 0.0
    """From opening the stream to its first message (the snapshot)."""
    max_gap_s: float = 0.0
    """The longest silence between two messages once the stream delivers."""
    max_gap_end_s: float = 0.0
    """When that silence ended, from the stream's opening: where to look in the logs."""
    error: str = ""


@dataclass(frozen=True)
class RpcSummary:
    codes: dict[str, int]
    n: int
    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, record: RpcRecord) -> RpcSummary:
        ms = sorted(record.latencies_ms)
        return cls(dict(record.codes), len(ms), _percentile(ms, 0.5), _percentile(ms, 0.99),
                   ms[-1] if ms else 0.0)


@dataclass
class LoadReport:
    """What one child saw: per-RPC codes and latencies, unexpected answers, each watcher."""

    rpcs: dict[str, RpcSummary]
    unexpected: list[str]
    unexpected_count: int
    watchers: list[WatcherRecord]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: Path) -> LoadReport:
        raw = json.loads(path.read_text())
        return cls({name: RpcSummary(**r) for name, r in raw["rpcs"].items()},
                   raw["unexpected"], raw["unexpected_count"],
                   [WatcherRecord(**w) for w in raw["watchers"]])  # fmt: skip


@dataclass
class Recorder:
    rpcs: dict[str, RpcRecord] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    unexpected_count: int = 0

    async def call(self, rpc: str, expected: frozenset[Code], call: Callable[[], Awaitable[T]],
                   ) -> T | None:  # fmt: skip
        """Runs one RPC; records its code and latency, and whether the code was expected."""
        started = time.perf_counter()
        result: T | None = None
        detail = ""
        try:
            result = await call()
            code = Code.OK
        except grpc.aio.AioRpcError as exc:
            code, detail = exc.code(), exc.details() or ""
        record = self.rpcs.setdefault(rpc, RpcRecord())
        record.codes[code.name] += 1
        record.latencies_ms.append((time.perf_counter() - started) * 1000)
        if code not in expected:
            self.unexpected_count += 1
            if len(self.unexpected) < MAX_UNEXPECTED:
                wanted = "/".join(sorted(c.name for c in expected))
                self.unexpected.append(f"{rpc}: {code.name} (wanted {wanted}): {detail[:200]}")
        return result


async def _drain(stream: AsyncIterable[T]) -> list[T]:
    return [message async for message in stream]


def client_secret(prefix: str, index: int) -> str:
    """Client `index`'s API secret: base64, as Kraken's secrets are (the others take any text)."""
    return base64.b64encode(f"{prefix}{index}".encode()).decode()


def _config(interval_s: int) -> epb.EngineConfig:
    return epb.EngineConfig(strategy="sma_cross", symbols=[SYMBOL],
                            params={"fast": "2", "slow": "3", "quote_amount": "10"},
                            interval=duration_pb2.Duration(seconds=interval_s))  # fmt: skip


class Pacer:
    """A token bucket shared by the clients for calls that spend exchange budget.

    Connection tests, dry runs and engine starts send requests to the
    (simulated) exchange through the daemon's limiter, which never exceeds
    the exchange's own limit. Asked for more than that budget the daemon can
    only queue, and with nothing but the caller's deadline to bound the wait,
    calls end in DEADLINE_EXCEEDED: an overload test's subject, not a soak's.
    So the mix sends these calls at a pace the budgets sustain (one bucket
    for tests and dry runs, one for engine starts); a client that finds its
    bucket empty does a local read instead.
    """

    def __init__(self, per_second: float) -> None:
        self._rate = per_second
        self._tokens = 1.0
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(1.0, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


@dataclass
class Owned:
    name: str
    enabled: bool = True
    engine: bool = False  # an engine this client started runs on it
    last_test_failed: bool = False  # StartEngine refuses with FAILED_PRECONDITION then

    @property
    def testable(self) -> frozenset[Code]:
        """A disabled connection cannot be tested: FAILED_PRECONDITION."""
        return OK if self.enabled else frozenset({Code.FAILED_PRECONDITION})


class LoadClient:
    """One client: a seeded loop over the operations, on its own connections and key."""

    def __init__(self, plan: LoadPlan, index: int, channel: grpc.aio.Channel,
                 recorder: Recorder, pacer: Pacer, engine_pacer: Pacer) -> None:  # fmt: skip
        self.plan = plan
        self.pacer = pacer
        self.engine_pacer = engine_pacer
        self.index = index
        self.rng = random.Random(plan.seed * 1_000_003 + index)
        self.rec = recorder
        self.conns = csgrpc.ConnectionServiceStub(channel)
        self.health = hgrpc.HealthServiceStub(channel)
        self.engines = egrpc.EngineServiceStub(channel)
        self.exchange = plan.exchanges[index % len(plan.exchanges)]
        self.owned: list[Owned] = []
        self.made = 0
        self.renames = 0
        self.spend_after = 0.0  # monotonic time of this client's next exchange-bound call
        ops: list[tuple[Callable[[], Awaitable[None]], int]] = [
            (self.create, 5), (self.get, 10), (self.list, 8), (self.update, 6),
            (self.set_enabled, 3), (self.delete, 3), (self.test, 1), (self.batch_test, 1),
            (self.list_exchanges, 4), (self.system_status, 4), (self.connections_health, 3),
            (self.verify_startup, 2), (self.get_engine, 8), (self.list_engines, 6),
            (self.coordinator_health, 4), (self.test_engine, 1), (self.list_orders, 4),
            (self.list_trades, 4), (self.bad_request, 8),
            (self.start_stop, 3 if index < plan.starters else 0),
        ]  # fmt: skip
        self.ops = [op for op, _ in ops]
        self.weights = [w for _, w in ops]

    def _may_spend(self, pacer: Pacer) -> bool:
        """Whether an exchange-bound call may go now: our gap has passed and the pace allows."""
        now = time.monotonic()
        if now < self.spend_after or not pacer.take():
            return False
        self.spend_after = now + EXCHANGE_GAP_S
        return True

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            await self.rng.choices(self.ops, self.weights)[0]()
            await asyncio.sleep(self.rng.random() * THINK_S)
        await self.clean_up()

    # --- ConnectionService ---------------------------------------------------------------

    def _connection(self, cid: str, exchange: str | None = None) -> cpb.Connection:
        exchange = exchange or self.exchange
        return cpb.Connection(
            display_name=f"soak {cid}", exchange=exchange, api_type=cpb.API_TYPE_SPOT,
            enabled=True, credentials=cpb.Credentials(
                api_key=f"{self.plan.key_prefix}{self.index}",
                api_secret=client_secret(self.plan.secret_prefix, self.index),
                passphrase=self.plan.passphrase if exchange == "okx" else ""))  # fmt: skip

    def _pick(self) -> Owned | None:
        return self.rng.choice(self.owned) if self.owned else None

    async def create(self) -> None:
        if len(self.owned) >= OWNED_MAX:
            return await self.get()
        cid = f"soak-{self.index}-{self.made}"
        self.made += 1
        validate_only = self.rng.random() < 0.2
        request = cspb.CreateConnectionRequest(
            connection_id=cid, connection=self._connection(cid), validate_only=validate_only)
        made = await self.rec.call("CreateConnection", OK,
                                   lambda: self.conns.CreateConnection(request,
                                                                       timeout=CALL_TIMEOUT_S))
        if made is not None and not validate_only:
            self.owned.append(Owned(made.name))

    async def get(self) -> None:
        owned = self._pick()
        name = owned.name if owned else f"{PREFIX}soak-{self.index}-never"
        await self.rec.call("GetConnection", OK if owned else frozenset({Code.NOT_FOUND}),
                            lambda: self.conns.GetConnection(
                                cspb.GetConnectionRequest(name=name), timeout=CALL_TIMEOUT_S))

    async def list(self) -> None:
        text = self.rng.choice(("", *FILTERS))
        token = ""
        for _ in range(3):  # follow at most three pages
            request = cspb.ListConnectionsRequest(
                filter=text, page_size=self.rng.randint(1, 40), page_token=token)
            page = await self.rec.call("ListConnections", OK, partial(
                self.conns.ListConnections, request, timeout=CALL_TIMEOUT_S))
            if page is None or not page.next_page_token:
                return
            token = page.next_page_token

    async def _read(self, owned: Owned) -> cpb.Connection | None:
        return await self.rec.call("GetConnection", OK, lambda: self.conns.GetConnection(
            cspb.GetConnectionRequest(name=owned.name), timeout=CALL_TIMEOUT_S))

    async def update(self) -> None:
        owned = self._pick()
        if owned is None:
            return await self.create()
        current = await self._read(owned)
        if current is None:
            return
        stale = self.rng.random() < 0.25
        self.renames += 1  # display names are unique: ours never meet another client's
        etag = "W/stale-etag" if stale else current.etag
        renamed = f"soak {owned.name.removeprefix(PREFIX)} {self.renames}"
        request = cspb.UpdateConnectionRequest(
            connection=cpb.Connection(name=owned.name, etag=etag, display_name=renamed),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]))
        await self.rec.call("UpdateConnection", frozenset({Code.ABORTED}) if stale else OK,
                            lambda: self.conns.UpdateConnection(request, timeout=CALL_TIMEOUT_S))

    async def set_enabled(self) -> None:
        owned = self._pick()
        if owned is None or owned.engine:  # keep an engine's connection enabled
            return await self.list_exchanges()
        request = cspb.SetConnectionEnabledRequest(name=owned.name,
                                                   enabled=self.rng.random() < 0.5)
        done = await self.rec.call("SetConnectionEnabled", OK, lambda: (
            self.conns.SetConnectionEnabled(request, timeout=CALL_TIMEOUT_S)))
        if done is not None:
            owned.enabled = done.enabled

    async def delete(self) -> None:
        owned = self._pick()
        if owned is None:
            return await self.create()
        if owned.engine:  # an engine runs on it: refused
            await self.rec.call("DeleteConnection", frozenset({Code.FAILED_PRECONDITION}),
                                lambda: self.conns.DeleteConnection(
                                    cspb.DeleteConnectionRequest(name=owned.name),
                                    timeout=CALL_TIMEOUT_S))
            return
        await self._delete(owned)

    async def _delete(self, owned: Owned) -> None:
        current = await self._read(owned)
        etag = current.etag if current is not None else ""
        done = await self.rec.call("DeleteConnection", OK, lambda: self.conns.DeleteConnection(
            cspb.DeleteConnectionRequest(name=owned.name, etag=etag), timeout=CALL_TIMEOUT_S))
        if done is not None:
            self.owned.remove(owned)

    async def test(self) -> None:
        owned = self._pick()
        if owned is None or not self._may_spend(self.pacer):
            return await self.get()
        request = cspb.TestConnectionRequest(name=owned.name)
        events = await self.rec.call("TestConnection", owned.testable, lambda: _drain(
            self.conns.TestConnection(request, timeout=CALL_TIMEOUT_S)))
        for event in events or ():
            if event.HasField("result"):
                owned.last_test_failed = event.result.status == cpb.TEST_STATUS_FAILED

    async def batch_test(self) -> None:
        names = [o.name for o in self.owned]
        if not names or not self._may_spend(self.pacer):
            return await self.get()
        expected = max((o.testable for o in self.owned), key=lambda codes: codes != OK)
        events = await self.rec.call("BatchTestConnections", expected, lambda: _drain(
            self.conns.BatchTestConnections(cspb.BatchTestConnectionsRequest(names=names),
                                            timeout=CALL_TIMEOUT_S)))
        failed = {e.result.name: e.result.result.status == cpb.TEST_STATUS_FAILED
                  for e in events or () if e.HasField("result")}  # fmt: skip
        for owned in self.owned:
            owned.last_test_failed = failed.get(owned.name, owned.last_test_failed)

    async def list_exchanges(self) -> None:
        await self.rec.call("ListExchanges", OK, lambda: self.conns.ListExchanges(
            cspb.ListExchangesRequest(), timeout=CALL_TIMEOUT_S))

    # --- HealthService -------------------------------------------------------------------

    async def system_status(self) -> None:
        await self.rec.call("GetSystemStatus", OK, lambda: self.health.GetSystemStatus(
            hpb.GetSystemStatusRequest(), timeout=CALL_TIMEOUT_S))

    async def connections_health(self) -> None:
        await self.rec.call("GetConnectionsHealth", OK, lambda: self.health.GetConnectionsHealth(
            hpb.GetConnectionsHealthRequest(), timeout=CALL_TIMEOUT_S))

    async def verify_startup(self) -> None:
        await self.rec.call("VerifyStartup", OK, lambda: self.health.VerifyStartup(
            hpb.VerifyStartupRequest(), timeout=CALL_TIMEOUT_S))

    # --- EngineService -------------------------------------------------------------------

    def _shared(self) -> str:
        return self.rng.choice(self.plan.shared_engines)

    async def get_engine(self) -> None:
        name = self._shared()
        await self.rec.call("GetEngine", OK, lambda: self.engines.GetEngine(
            epb.GetEngineRequest(name=name), timeout=CALL_TIMEOUT_S))

    async def list_engines(self) -> None:
        await self.rec.call("ListEngines", OK, lambda: self.engines.ListEngines(
            epb.ListEnginesRequest(), timeout=CALL_TIMEOUT_S))

    async def coordinator_health(self) -> None:
        await self.rec.call("GetCoordinatorHealth", OK, lambda: self.engines.GetCoordinatorHealth(
            epb.GetCoordinatorHealthRequest(), timeout=CALL_TIMEOUT_S))

    async def test_engine(self) -> None:
        if not self._may_spend(self.pacer):
            return await self.get_engine()
        name = self._shared()
        await self.rec.call("TestEngine", OK, lambda: self.engines.TestEngine(
            epb.TestEngineRequest(name=name), timeout=CALL_TIMEOUT_S))

    async def list_orders(self) -> None:
        request = epb.ListOrdersRequest(parent=self._shared(), page_size=self.rng.randint(1, 50),
                                        open_only=self.rng.random() < 0.5)
        await self.rec.call("ListOrders", OK, lambda: self.engines.ListOrders(
            request, timeout=CALL_TIMEOUT_S))

    async def list_trades(self) -> None:
        request = epb.ListTradesRequest(parent=self._shared(), page_size=self.rng.randint(1, 50))
        await self.rec.call("ListTrades", OK, lambda: self.engines.ListTrades(
            request, timeout=CALL_TIMEOUT_S))

    async def start_stop(self) -> None:
        """Starts an engine on a connection of ours, or stops the one we started."""
        running = [o for o in self.owned if o.engine]
        if running:
            return await self._stop(running[0])
        idle = self._pick()
        if idle is None or not self._may_spend(self.engine_pacer):
            return await self.get()
        enabled = await self.rec.call("SetConnectionEnabled", OK,
                                      lambda: self.conns.SetConnectionEnabled(
                                          cspb.SetConnectionEnabledRequest(name=idle.name,
                                                                           enabled=True),
                                          timeout=CALL_TIMEOUT_S))
        if enabled is None:
            return
        idle.enabled = True
        request = epb.StartEngineRequest(name=f"{idle.name}/engine", config=_config(2))
        expected = frozenset({Code.FAILED_PRECONDITION}) if idle.last_test_failed else OK
        started = await self.rec.call("StartEngine", expected, lambda: self.engines.StartEngine(
            request, timeout=CALL_TIMEOUT_S))
        idle.engine = started is not None

    async def _stop(self, owned: Owned) -> None:
        stopped = await self.rec.call("StopEngine", OK, lambda: self.engines.StopEngine(
            epb.StopEngineRequest(name=f"{owned.name}/engine"), timeout=CALL_TIMEOUT_S))
        owned.engine = stopped is None  # still running if the stop was refused

    # --- deliberately bad requests -------------------------------------------------------

    async def bad_request(self) -> None:
        missing = f"{PREFIX}soak-{self.index}-never"
        invalid, not_found = frozenset({Code.INVALID_ARGUMENT}), frozenset({Code.NOT_FOUND})
        bad: list[tuple[str, frozenset[Code], Callable[[], Awaitable[Any]]]] = [
            ("GetConnection", invalid, lambda: self.conns.GetConnection(
                cspb.GetConnectionRequest(name="not a name"), timeout=CALL_TIMEOUT_S)),
            ("CreateConnection", invalid, lambda: self.conns.CreateConnection(
                cspb.CreateConnectionRequest(connection=self._connection("x", "nosuchex")),
                timeout=CALL_TIMEOUT_S)),
            ("ListConnections", invalid, lambda: self.conns.ListConnections(
                cspb.ListConnectionsRequest(filter="exchange ~ binance"),
                timeout=CALL_TIMEOUT_S)),
            ("ListConnections", invalid, lambda: self.conns.ListConnections(
                cspb.ListConnectionsRequest(page_token="not-a-token"), timeout=CALL_TIMEOUT_S)),
            ("UpdateConnection", invalid, lambda: self.conns.UpdateConnection(
                cspb.UpdateConnectionRequest(
                    connection=cpb.Connection(name=missing, exchange="bybit"),
                    update_mask=field_mask_pb2.FieldMask(paths=["exchange"])),
                timeout=CALL_TIMEOUT_S)),
            ("DeleteConnection", not_found, lambda: self.conns.DeleteConnection(
                cspb.DeleteConnectionRequest(name=missing), timeout=CALL_TIMEOUT_S)),
            ("TestConnection", not_found, lambda: _drain(self.conns.TestConnection(
                cspb.TestConnectionRequest(name=missing), timeout=CALL_TIMEOUT_S))),
            ("GetEngine", not_found, lambda: self.engines.GetEngine(
                epb.GetEngineRequest(name=f"{missing}/engine"), timeout=CALL_TIMEOUT_S)),
            ("StartEngine", invalid, lambda: self.engines.StartEngine(
                epb.StartEngineRequest(name=f"{missing}/engine", config=epb.EngineConfig(
                    strategy="no-such-strategy", symbols=[SYMBOL])), timeout=CALL_TIMEOUT_S)),
            ("ListOrders", invalid, lambda: self.engines.ListOrders(
                epb.ListOrdersRequest(parent="engines/x"), timeout=CALL_TIMEOUT_S)),
            ("ListTrades", not_found, lambda: self.engines.ListTrades(
                epb.ListTradesRequest(parent=f"{missing}/engine"), timeout=CALL_TIMEOUT_S)),
        ]
        owned = self._pick()
        if owned is not None:
            bad.append(("CreateConnection", frozenset({Code.ALREADY_EXISTS}),
                        lambda: self.conns.CreateConnection(cspb.CreateConnectionRequest(
                            connection_id=owned.name.removeprefix(PREFIX),
                            connection=self._connection("dup")), timeout=CALL_TIMEOUT_S)))
        rpc, expected, call = self.rng.choice(bad)
        await self.rec.call(rpc, expected, call)

    async def clean_up(self) -> None:
        """Stop what we started and delete what we made, so the daemon goes back to idle."""
        for owned in list(self.owned):
            if owned.engine:
                await self._stop(owned)
            if not owned.engine:
                await self._delete(owned)


class StreamWatcher:
    """One WatchEngines stream from open to cancel."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = egrpc.EngineServiceStub(channel)
        self.record = WatcherRecord()

    async def run(self, stop: asyncio.Event) -> None:
        call = self.stub.WatchEngines(epb.WatchEnginesRequest())
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: call.cancel())
        opened = last = time.monotonic()
        try:
            async for message in call:
                now = time.monotonic()
                if last == opened:
                    self.record.first_s = now - opened
                elif now - last > self.record.max_gap_s:
                    self.record.max_gap_s, self.record.max_gap_end_s = now - last, now - opened
                last = now
                self._count(message)
        except grpc.aio.AioRpcError as exc:
            if not stop.is_set() or exc.code() != Code.CANCELLED:
                self.record.error = f"{exc.code().name}: {exc.details()}"
        except asyncio.CancelledError:
            if not stop.is_set():
                raise
        else:
            if not stop.is_set():
                self.record.error = "the stream ended by itself"
        finally:
            stopper.cancel()

    def _count(self, message: epb.WatchEnginesResponse) -> None:
        kind = message.WhichOneof("event")
        seen = self.record.snapshots + self.record.changes + self.record.heartbeats
        if seen == 0:
            self.record.snapshot_first = kind == "snapshot"
        if kind == "snapshot":
            self.record.snapshots += 1
            self.record.resyncs += int(message.snapshot.resync)
        elif kind == "heartbeat":
            self.record.heartbeats += 1
        else:  # "changed", or a batch of changes
            self.record.changes += 1


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else 0.0


async def run(plan: LoadPlan) -> LoadReport:
    """Drives the plan's clients and watchers for `plan.seconds`; returns the report."""
    channels = [grpc.aio.insecure_channel(plan.address, options=CHANNEL_OPTIONS)
                for _ in range(max(1, plan.channels))]  # fmt: skip
    watch_channels = [grpc.aio.insecure_channel(plan.address, options=CHANNEL_OPTIONS)
                      for _ in range(max(1, plan.watchers // 50))]  # fmt: skip
    recorder = Recorder()
    stop = asyncio.Event()
    watchers = [StreamWatcher(watch_channels[i % len(watch_channels)])
                for i in range(plan.watchers)]  # fmt: skip
    watching = [asyncio.create_task(w.run(stop)) for w in watchers]
    until = time.monotonic() + plan.seconds
    pacer, engine_pacer = Pacer(plan.exchange_calls_per_s), Pacer(plan.engine_starts_per_s)
    clients = [LoadClient(plan, i, channels[i % len(channels)], recorder, pacer, engine_pacer)
               for i in range(plan.clients)]  # fmt: skip
    try:
        await asyncio.gather(*(c.run(until) for c in clients))
        await asyncio.sleep(max(0.0, until - time.monotonic()))
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*watching, return_exceptions=True), 30)
        for channel in (*channels, *watch_channels):
            await channel.close()
    rpcs = {name: RpcSummary.of(record) for name, record in sorted(recorder.rpcs.items())}
    return LoadReport(rpcs, recorder.unexpected, recorder.unexpected_count,
                      [w.record for w in watchers])  # fmt: skip


def main(argv: list[str]) -> None:
    plan = LoadPlan.read(Path(argv[1]))
    asyncio.run(run(plan)).write(Path(argv[2]))


if __name__ == "__main__":
    main(sys.argv)
