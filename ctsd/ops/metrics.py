"""Metrics that subsystems register with, exported to Prometheus only on request.

The daemon owns one `MetricsRegistry` and hands it to whoever needs it (the
API interceptors now; rate limiters, connection tests and engines as they
land): nothing registers with a process-global registry. Without
`metrics_listen` the registry is null: every metric it hands out accepts
calls and does nothing, and prometheus_client is never imported, so the
daemon's start pays nothing for an endpoint nobody scrapes.

    registry.counter("ctsd_ratelimit_waits_total", "...", ("scope",)).labels("binance:ip").inc()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ctsd.errors import ConfigurationError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

    from ctsd.connections.checks.results import TestResult
    from ctsd.engine.status import EngineStatus
    from ctsd.marketdata.feeds import StreamStatus
    from ctsd.ratelimit.model import ScopeUsage

log = logging.getLogger("ctsd.ops")

T = TypeVar("T")
LOOP_READ_TIMEOUT_S = 5.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Counter(Protocol):
    def labels(self, *values: str) -> Counter: ...
    def inc(self, amount: float = 1) -> None: ...


class Histogram(Protocol):
    def labels(self, *values: str) -> Histogram: ...
    def observe(self, amount: float) -> None: ...


class Gauge(Protocol):
    def labels(self, *values: str) -> Gauge: ...
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...
    def set(self, value: float) -> None: ...


class _NullMetric:
    """Accepts every metric call and keeps nothing."""

    def labels(self, *values: str) -> _NullMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


class MetricsRegistry:
    """Hands out counters, histograms and gauges; backed by a CollectorRegistry or by nothing."""

    def __init__(self, backend: CollectorRegistry | None = None) -> None:
        self.backend = backend

    @classmethod
    def exporting(cls) -> MetricsRegistry:
        """A real registry, with the process (CPU, memory, fds), GC and asyncio-task collectors."""
        from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

        from ctsd.ops.runtime_metrics import AsyncioTaskCollector

        backend = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=backend)
        GCCollector(registry=backend)
        AsyncioTaskCollector.register_for_running_loop(backend)
        return cls(backend)

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    def counter(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
        if self.backend is None:
            return _NullMetric()
        from prometheus_client import Counter as PromCounter

        made: Counter = PromCounter(name, documentation, labels, registry=self.backend)
        return made

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: tuple[str, ...] = (),
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
    ) -> Histogram:
        if self.backend is None:
            return _NullMetric()
        from prometheus_client import Histogram as PromHistogram

        made: Histogram = PromHistogram(
            name, documentation, labels, registry=self.backend, buckets=buckets
        )
        return made

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        if self.backend is None:
            return _NullMetric()
        from prometheus_client import Gauge as PromGauge

        made: Gauge = PromGauge(name, documentation, labels, registry=self.backend)
        return made

    def register(self, collector: Collector) -> None:
        """For custom collectors that read state at scrape time (e.g. engine states)."""
        if self.backend is not None:
            self.backend.register(collector)


class RpcMetrics:
    """The API's own metrics, named as in go-grpc-prometheus so stock dashboards work."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self._handled = registry.counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by method and status code.",
            ("grpc_service", "grpc_method", "grpc_code"),
        )
        self._latency = registry.histogram(
            "grpc_server_handling_seconds",
            "Time from receiving an RPC to its last message, by method and status code.",
            ("grpc_service", "grpc_method", "grpc_code"),
        )
        self._auth_failures = registry.counter(
            "ctsd_auth_failures_total",
            "Calls refused for missing or wrong credentials, by method and reason.",
            ("grpc_service", "grpc_method", "reason"),
        )

    def handled(self, method: str, code: str, seconds: float) -> None:
        service, name = split_method(method)
        self._handled.labels(service, name, code).inc()
        self._latency.labels(service, name, code).observe(seconds)

    def auth_failed(self, method: str, reason: str) -> None:
        self._auth_failures.labels(*split_method(method), reason).inc()


class ConnectionTestMetrics:
    """Connection-test outcomes; `observe` is the tester's `on_result` callback."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self._outcomes = registry.counter(
            "ctsd_connection_tests_total",
            "Connection-test results (single and batch), by status and failure class.",
            ("status", "failure_class"),
        )

    def observe(self, result: TestResult) -> None:
        failure = result.failure_class.code if result.failure_class is not None else "none"
        self._outcomes.labels(result.status.value, failure).inc()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def read_on_loop(loop: asyncio.AbstractEventLoop | None, read: Callable[[], T]) -> T:
    """`read()` run on `loop`'s thread, for collectors of state the loop owns.

    Scrapes run on the exporter's thread while the loop changes that state
    (a limiter's buckets, the engines' statuses): iterating it from there
    fails with "dictionary changed size during iteration" now and then.
    Without a running loop (tests, shutdown) nothing else changes it.
    """
    if loop is None or not loop.is_running() or _running_loop() is loop:
        return read()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()

    def run() -> None:
        try:
            done.set_result(read())
        except BaseException as exc:  # handed to the scraping thread
            done.set_exception(exc)

    loop.call_soon_threadsafe(run)
    return done.result(LOOP_READ_TIMEOUT_S)


class RateLimitCollector:
    """Each rate-limit scope's usage, read from the limiter snapshot at scrape time.

    Labelled by exchange and the scope's label (exchange/limit/owner, where an
    account owner is shown only by its masked key hint).
    """

    def __init__(self, usage: Callable[[], Sequence[ScopeUsage]]) -> None:
        self._usage = usage
        self._loop = _running_loop()  # the limiter's; see read_on_loop

    def describe(self) -> list[Metric]:
        return []  # nothing to read at registration; names are checked at scrape

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from ctsd.ratelimit.model import Counting

        labels = ("exchange", "scope")
        gauges = {
            "used": GaugeMetricFamily(
                "ctsd_ratelimit_used", "Units counted in the current window.", labels=labels
            ),
            "limit": GaugeMetricFamily("ctsd_ratelimit_limit", "The scope's limit.", labels=labels),
            "capacity": GaugeMetricFamily(
                "ctsd_ratelimit_capacity",
                "Units the limiter lets through per window.",
                labels=labels,
            ),
            "queued": GaugeMetricFamily(
                "ctsd_ratelimit_queued", "Requests queued for budget now.", labels=labels
            ),
            "paused": GaugeMetricFamily(
                "ctsd_ratelimit_paused_seconds",
                "Seconds until a pause ends; 0 when not paused.",
                labels=labels,
            ),
            "share": GaugeMetricFamily(
                "ctsd_ratelimit_share",
                "Fraction of the capacity this daemon may use: 1 alone or in a fleet's shared "
                "bucket, its share while Redis is unreachable, 0 while blocked.",
                labels=labels,
            ),
        }
        counting = GaugeMetricFamily(
            "ctsd_ratelimit_counting",
            "1 for where the scope is counted now: local, shared (Redis), fallback, blocked.",
            labels=(*labels, "counting"),
        )
        counters = {
            "waits": CounterMetricFamily(
                "ctsd_ratelimit_waits_total",
                "Requests that had to queue for budget.",
                labels=labels,
            ),
            "wait_time": CounterMetricFamily(
                "ctsd_ratelimit_wait_seconds_total",
                "Total time requests spent queued.",
                labels=labels,
            ),
            "rejections": CounterMetricFamily(
                "ctsd_ratelimit_rejections_total",
                "429/418-style refusals from the exchange.",
                labels=labels,
            ),
        }
        for u in read_on_loop(self._loop, self._usage):
            values = [u.key.exchange, u.key.label]
            gauges["used"].add_metric(values, u.used)
            gauges["limit"].add_metric(values, u.limit)
            gauges["capacity"].add_metric(values, u.capacity)
            gauges["queued"].add_metric(values, u.queued)
            gauges["paused"].add_metric(values, u.paused_for_s)
            gauges["share"].add_metric(values, u.share)
            for state in Counting:
                counting.add_metric([*values, state.value], float(u.counting is state))
            counters["waits"].add_metric(values, u.waits)
            counters["wait_time"].add_metric(values, u.wait_time_s)
            counters["rejections"].add_metric(values, u.rejections)
        yield from gauges.values()
        yield counting
        yield from counters.values()


class StreamCollector:
    """The market-data hub's streams: state, message rate, data age, reconnects, fallbacks."""

    def __init__(self, streams: Callable[[], Sequence[StreamStatus]]) -> None:
        self._streams = streams
        self._loop = _running_loop()

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from ctsd.marketdata.feeds import StreamState

        streams = read_on_loop(self._loop, self._streams)
        label = ("stream",)
        state = GaugeMetricFamily("ctsd_stream_state", "1 for the stream's current state.",
                                  labels=("stream", "state"))
        rate = GaugeMetricFamily("ctsd_stream_messages_per_second",
                                 "Messages a second over the last second.", labels=label)
        age = GaugeMetricFamily("ctsd_stream_data_age_seconds",
                                "Seconds since the stream's last data.", labels=label)
        reconnects = CounterMetricFamily("ctsd_stream_reconnects_total",
                                         "Reconnections of the stream's connection.", labels=label)
        fallbacks = CounterMetricFamily("ctsd_stream_rest_fallbacks_total",
                                        "Reads served by REST while the stream was not live.",
                                        labels=label)
        for s in streams:
            for each in StreamState:
                state.add_metric([s.stream, each.value], 1.0 if s.state is each else 0.0)
            rate.add_metric([s.stream], s.messages_per_s)
            if s.data_age_s is not None:
                age.add_metric([s.stream], s.data_age_s)
            reconnects.add_metric([s.stream], s.reconnects)
            fallbacks.add_metric([s.stream], s.fallbacks)
        yield from (state, rate, age, reconnects, fallbacks)


class EngineCollector:
    """Trade engines' states and counters, read from the engine manager at scrape time."""

    def __init__(
        self,
        engines: Callable[[], Sequence[EngineStatus]],
        now: Callable[[], float] = time.time,
    ) -> None:
        self._engines = engines
        self._now = now
        self._loop = _running_loop()  # the engine manager's; see read_on_loop

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from ctsd.engine.status import EngineState

        engines = read_on_loop(self._loop, self._engines)
        by_state = GaugeMetricFamily("ctsd_engines", "Engines by state.", labels=("state",))
        for state in EngineState:
            by_state.add_metric([state.value], sum(1 for e in engines if e.state is state))
        conn = ("connection_id",)
        cycles = CounterMetricFamily(
            "ctsd_engine_cycles_total", "Cycles the engine has run.", labels=conn
        )
        duration = GaugeMetricFamily(
            "ctsd_engine_last_cycle_duration_seconds", "The last cycle's duration.", labels=conn
        )
        lag = GaugeMetricFamily(
            "ctsd_engine_last_cycle_lag_seconds",
            "How late the last cycle started after its scheduled tick.", labels=conn
        )
        skipped = CounterMetricFamily(
            "ctsd_engine_skipped_ticks_total",
            "Scheduled ticks skipped because a cycle overran its interval.", labels=conn
        )
        quiet_events = CounterMetricFamily(
            "ctsd_engine_quiet_events_total",
            "WebSocket ticker changes that woke no cycle: inside the engine's quiet bands "
            "(counted as they come, published with the engine's next cycle).", labels=conn
        )
        heartbeat = GaugeMetricFamily(
            "ctsd_engine_heartbeat_age_seconds",
            "Seconds since the engine last finished a cycle.",
            labels=conn,
        )
        orders = CounterMetricFamily(
            "ctsd_engine_orders_total",
            "Orders by outcome (placed, filled, rejected).",
            labels=(*conn, "outcome"),
        )
        restarts = CounterMetricFamily(
            "ctsd_engine_restarts_total", "Times the engine was restarted.", labels=conn
        )
        differences = CounterMetricFamily(
            "ctsd_engine_position_differences_total",
            "Times a LIVE perpetuals engine found the venue's positions differing from its "
            "ledger (outside trade, liquidation, auto-deleveraging).", labels=conn
        )
        liquidations = CounterMetricFamily(
            "ctsd_engine_liquidations_total",
            "Positions of the engine the venue (or the paper account) liquidated.", labels=conn
        )
        now_ms = self._now() * 1000
        for e in engines:
            cid = [e.connection_id]
            cycles.add_metric(cid, e.cycles)
            duration.add_metric(cid, e.last_cycle_duration_s)
            lag.add_metric(cid, e.last_cycle_lag_s)
            skipped.add_metric(cid, e.skipped_ticks)
            quiet_events.add_metric(cid, e.quiet_events)
            if e.heartbeat_ms:
                heartbeat.add_metric(cid, max(0.0, (now_ms - e.heartbeat_ms) / 1000))
            orders.add_metric([*cid, "placed"], e.orders_placed)
            orders.add_metric([*cid, "filled"], e.orders_filled)
            orders.add_metric([*cid, "rejected"], e.orders_rejected)
            restarts.add_metric(cid, e.restarts)
            differences.add_metric(cid, e.position_differences)
            liquidations.add_metric(cid, e.liquidations)
        yield from (by_state, cycles, duration, lag, skipped, quiet_events, heartbeat, orders,
                    restarts, differences, liquidations)


def split_method(method: str) -> tuple[str, str]:
    """'/cts.v1.ConnectionService/GetConnection' -> (service, 'GetConnection')."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class MetricsEndpoint:
    """The metrics over HTTP on its own thread, a bounded number of connections at once
    (`ctsd.ops.metrics_http`); `close()` stops it."""

    def __init__(self, server: WSGIServer, thread: Any) -> None:
        self._server = server
        self._thread = thread
        host, port = str(server.server_address[0]), server.server_port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @classmethod
    def start(cls, registry: MetricsRegistry, host: str, port: int) -> MetricsEndpoint:
        from prometheus_client import make_wsgi_app

        from ctsd.ops import metrics_http

        if registry.backend is None:
            raise ValueError("a null metrics registry has nothing to export")
        try:
            server, thread = metrics_http.serve(make_wsgi_app(registry.backend), host, port)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        return cls(server, thread)

    async def close(self) -> None:
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
