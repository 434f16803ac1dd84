"""The simulator and a daemon pointed at it, for the connection-test and health APIs."""

from tests.support.sim_fixtures import sim, sim_channel, sim_daemon

__all__ = ["sim", "sim_channel", "sim_daemon"]
