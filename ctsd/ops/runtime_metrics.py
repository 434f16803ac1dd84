"""The event loop's own health: how many asyncio tasks are alive, read at scrape time.

A task that is created per request or per stream and never awaited or
cancelled shows up as `ctsd_asyncio_tasks` that keeps growing after the
load is gone; the soak test (tests/robustness/test_load_soak.py) reads it
to prove there is no such leak. `ctsd_asyncio_tasks_by_coroutine` splits
the count by the coroutine a task runs (`module.qualname`, so the label set
is bounded by the code, not by the traffic): the kind that grows is the
place to look.

Scrapes arrive on the metrics endpoint's own thread, so the collector holds
the loop it was created on and counts that loop's tasks from there:
`asyncio.all_tasks(loop)` copies the task set with retries for exactly
this case (a set changed by the loop's thread while another thread reads
it) and only reads the tasks' `done()` flags and their coroutines' names.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric


class AsyncioTaskCollector:
    """`ctsd_asyncio_tasks`: tasks of one event loop that have not finished yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @classmethod
    def register_for_running_loop(cls, backend: CollectorRegistry) -> None:
        """Register for the calling coroutine's loop; without a running loop, nothing to count."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        backend.register(cls(loop))

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only, like the other ctsd collectors

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        tasks = set() if self._loop.is_closed() else asyncio.all_tasks(self._loop)
        yield GaugeMetricFamily(
            "ctsd_asyncio_tasks", "Asyncio tasks of the daemon's event loop not yet done.",
            len(tasks),
        )
        by_coroutine = GaugeMetricFamily(
            "ctsd_asyncio_tasks_by_coroutine",
            "The same tasks by the coroutine they run: which kind grows when tasks leak.",
            labels=("coroutine",),
        )
        for name, count in sorted(Counter(_coroutine_name(t) for t in tasks).items()):
            by_coroutine.add_metric([name], count)
        yield by_coroutine


def _coroutine_name(task: asyncio.Task[object]) -> str:
    """`module.qualname` of the task's coroutine: bounded by the code, unlike task names."""
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    name = getattr(coro, "__qualname__", None) or type(coro).__name__
    return f"{module}.{name}" if module else str(name)
