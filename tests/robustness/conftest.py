"""Prints every robustness test's tried/survived/lost row at the end of the session."""

from __future__ import annotations

import pytest

from tests.robustness.tally import REPORTED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED:
        terminalreporter.section("robustness: tried / survived / lost")
        for row in REPORTED:
            terminalreporter.write_line(row)
