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
import logging
from typing import TYPE_CHECKING, Any, Protocol

from ctsd.errors import ConfigurationError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

log = logging.getLogger("ctsd.ops")

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
        """A real registry, with the process (CPU, memory, fds) and GC collectors."""
        from prometheus_client import CollectorRegistry, GCCollector, ProcessCollector

        backend = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=backend)
        GCCollector(registry=backend)
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


def split_method(method: str) -> tuple[str, str]:
    """'/cts.v1.ConnectionService/GetConnection' -> (service, 'GetConnection')."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class MetricsEndpoint:
    """prometheus_client's HTTP exporter on its own thread; `close()` stops it."""

    def __init__(self, server: WSGIServer, thread: Any) -> None:
        self._server = server
        self._thread = thread
        host, port = str(server.server_address[0]), server.server_port
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @classmethod
    def start(cls, registry: MetricsRegistry, host: str, port: int) -> MetricsEndpoint:
        from prometheus_client import start_http_server

        if registry.backend is None:
            raise ValueError("a null metrics registry has nothing to export")
        try:
            server, thread = start_http_server(port, host, registry.backend)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        return cls(server, thread)

    async def close(self) -> None:
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
