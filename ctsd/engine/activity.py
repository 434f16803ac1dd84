"""Which connections run an engine, for `Connection.active` and status counts.

A read-only view of the engine manager for the connection side (a
connection's answer says whether an engine runs on it; deleting one under a
running engine is refused) and for health. The composition root builds the
engine manager first (it needs no connection use case, only the store), so
this view is complete from the start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ctsd.engine.status import EngineState, EngineStatus

ACTIVE_STATES = frozenset({EngineState.STARTING, EngineState.RUNNING, EngineState.STOPPING})

StatusSource = Callable[[], tuple[EngineStatus, ...]]


class EngineActivity:
    def __init__(self, statuses: StatusSource = tuple,
                 engaged: Callable[[], set[str]] | None = None) -> None:
        """`statuses`: every engine's status now (`EngineManager.list`); by default none.
        `engaged`: connections an engine may still trade on (`EngineManager.engaged`)."""
        self._statuses = statuses
        self._engaged = engaged

    def active_connections(self) -> set[str]:
        """Connections that must keep their key and stay enabled: an engine runs, starts,
        or waits to restart on them."""
        active = {s.connection_id for s in self._statuses() if s.state in ACTIVE_STATES}
        return active | (self._engaged() if self._engaged is not None else set())

    def by_state(self) -> dict[str, int]:
        counts = Counter(s.state.value for s in self._statuses())
        return dict(sorted(counts.items()))
