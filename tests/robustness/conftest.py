"""Stubs on the shared simulator daemon for the tests that ask for them. (The table of
every robustness test's row is printed by tests/conftest.py: under xdist only the root
conftest is loaded by the controller, which prints it.)"""

from __future__ import annotations

from tests.support.sim_fixtures import connections, engines

__all__ = ["connections", "engines"]
