"""The simulator, a daemon pointed at it, and stubs on it, for the connection-test, health
and engine APIs."""

from tests.support.sim_fixtures import connections, engines, sim, sim_channel, sim_daemon

__all__ = ["connections", "engines", "sim", "sim_channel", "sim_daemon"]
