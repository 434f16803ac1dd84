"""`ctsd_asyncio_tasks`: the daemon loop's live tasks, counted from the scraping thread; and
the collectors of loop-owned state, which must read it on the loop's thread."""

from __future__ import annotations

import asyncio
import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ctsd.engine.status import EngineStatus
from ctsd.ops.metrics import EngineCollector, MetricsRegistry, RateLimitCollector
from ctsd.ops.runtime_metrics import AsyncioTaskCollector
from ctsd.ratelimit.model import ScopeUsage


def _samples(backend: CollectorRegistry, name: str) -> dict[str, float]:
    """Scrapes like the endpoint does: the exposition text, rendered off the loop's thread."""
    text = generate_latest(backend).decode()
    return {
        s.labels.get("coroutine", ""): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _tasks_gauge(backend: CollectorRegistry) -> float:
    values = _samples(backend, "ctsd_asyncio_tasks")
    assert list(values) == [""], values
    return values[""]


@pytest.mark.asyncio
async def test_the_gauge_follows_tasks_as_they_start_and_finish() -> None:
    backend = CollectorRegistry()
    AsyncioTaskCollector.register_for_running_loop(backend)
    before = await asyncio.to_thread(_tasks_gauge, backend)
    assert before >= 1  # this test's own task at least
    release = asyncio.Event()
    parked = [asyncio.create_task(release.wait()) for _ in range(5)]
    await asyncio.sleep(0)
    assert await asyncio.to_thread(_tasks_gauge, backend) == before + 5
    by_coroutine = await asyncio.to_thread(_samples, backend, "ctsd_asyncio_tasks_by_coroutine")
    assert by_coroutine["asyncio.locks.Event.wait"] == 5
    assert sum(by_coroutine.values()) == before + 5
    release.set()
    await asyncio.gather(*parked)
    assert await asyncio.to_thread(_tasks_gauge, backend) == before


@pytest.mark.asyncio
async def test_the_exporting_registry_carries_it() -> None:
    registry = MetricsRegistry.exporting()
    assert registry.backend is not None
    assert await asyncio.to_thread(_tasks_gauge, registry.backend) >= 1


def test_without_a_running_loop_there_is_nothing_to_register() -> None:
    backend = CollectorRegistry()
    AsyncioTaskCollector.register_for_running_loop(backend)
    assert "ctsd_asyncio_tasks" not in generate_latest(backend).decode()


def test_a_closed_loop_counts_zero() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    backend = CollectorRegistry()
    backend.register(AsyncioTaskCollector(loop))
    assert _tasks_gauge(backend) == 0


@pytest.mark.asyncio
async def test_collectors_of_loop_owned_state_read_it_on_the_loop() -> None:
    """Scrapes run on the exporter's thread; the limiter's and engines' dicts change on the loop's.

    Read from the scraping thread they failed now and then with "dictionary
    changed size during iteration" (an HTTP 500 from /metrics in the soak).
    """
    loop_thread = threading.get_ident()
    readers: list[int] = []

    def engines() -> list[EngineStatus]:
        readers.append(threading.get_ident())
        return []

    def usage() -> list[ScopeUsage]:
        readers.append(threading.get_ident())
        return []

    backend = CollectorRegistry()
    backend.register(EngineCollector(engines))
    backend.register(RateLimitCollector(usage))
    await asyncio.to_thread(generate_latest, backend)
    assert readers == [loop_thread, loop_thread]
