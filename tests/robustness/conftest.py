"""Stubs on the shared simulator daemon for the tests that ask for them; and every robustness
test's tried/survived/lost row printed at the end of the session.

Under pytest-xdist the rows are reported in the worker processes; each worker
hands its rows to the controller when it finishes (`workeroutput`), so the
table at the end is the same with or without `-n`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.robustness.tally import REPORTED
from tests.support.sim_fixtures import connections, engines

__all__ = ["connections", "engines"]

_WORKER_KEY = "robustness_rows"


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput: dict[str, Any] | None = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints
        workeroutput[_WORKER_KEY] = list(REPORTED)


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller hook: a worker finished; keep its rows."""
    REPORTED.extend(getattr(node, "workeroutput", {}).get(_WORKER_KEY, ()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("robustness: tried / survived / lost")
        for row in REPORTED:
            terminalreporter.write_line(row)
