"""Which connections run an engine, for `Connection.active` and status counts.

Connections are wired before engines (an engine needs a connection), yet a
connection's answer says whether an engine runs on it. This view is handed
to the connection side at wiring time and attached to the engine manager
once that exists; until then no engine runs, and it says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from ctsd.engine.status import EngineState, EngineStatus

ACTIVE_STATES = frozenset({EngineState.STARTING, EngineState.RUNNING, EngineState.STOPPING})

StatusSource = Callable[[], tuple[EngineStatus, ...]]


class EngineActivity:
    def __init__(self) -> None:
        self._statuses: StatusSource = tuple
        self._engaged: Callable[[], set[str]] | None = None

    def attach(self, statuses: StatusSource,
               engaged: Callable[[], set[str]] | None = None) -> None:
        """`engaged`: connections an engine may still trade on (`EngineManager.engaged`)."""
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
