"""Real daemons on one PostgreSQL database (Deliver 3): failover and fencing, checked at
the simulator.

- SIGKILL the owner of four LIVE grids: every engine resumes on a survivor within 15 s
  of the kill, reconciled, and the venue holds exactly the orders the fleet knows, no
  client order id twice, no grid level held twice.
- SIGSTOP an owner at a random instant of its cycles, past its lease, then SIGCONT it:
  the survivor adopted and reconciled meanwhile, and the resumed daemon places nothing
  (the venue's orders are all known to the owner) and ends its engines untouched.

Quick form: one round each; `CTS_SOAK_ROUNDS=N` (`make soak`) repeats the pause N times.
"""

from __future__ import annotations

import random
import signal
import time

import pytest

from tests.fleet.daemons import Fleet, fleet_on_postgres, swinging, wait_for
from tests.robustness.tally import soak_rounds
from tests.robustness.test_engine_crash_durability import venue_counts
from tests.support.sim_fixtures import sim  # noqa: F401
from tests.support.simulator import SimulatorThread

SEED = 16
FAILOVER_LIMIT_S = 15.0
PAUSE_TTL_S = 4.0


def traded(fleet: Fleet) -> bool:
    """Every account has orders at the venue: the engines are placing."""
    return all(venue_counts(fleet.sim, w.conn)[0] > 0 for w in fleet.workers)


def test_a_killed_owners_engines_resume_on_survivors_within_15_s(
        postgres_url: str, sim: SimulatorThread) -> None:  # noqa: F811
    with fleet_on_postgres(postgres_url, sim) as fleet:
        first = fleet.add()
        fleet.connections(4, "failover")
        survivors = [fleet.add(), fleet.add()]
        names = {w.name for w in fleet.workers}
        fleet.start_engines(first)
        wait_for(lambda: fleet.running_on(first, 2) == names, 60, "four engines on the first")
        with swinging(sim, fleet.workers, SEED):
            wait_for(lambda: traded(fleet), 30, "orders at the venue")
            first.kill()
            took = wait_for(lambda: set().union(*(fleet.running_on(d) for d in survivors))
                            == names, 60, "every engine running on a survivor")
        spread = [len(fleet.running_on(d, 0)) for d in survivors]
        print(f"failover {took:.1f} s; engines per survivor {spread}")
        assert took <= FAILOVER_LIMIT_S
        assert fleet.check_venue() == []


@pytest.mark.parametrize("round_", range(max(1, soak_rounds(1))))
def test_a_paused_owner_places_nothing_after_losing_its_leases(
        postgres_url: str, sim: SimulatorThread, round_: int) -> None:  # noqa: F811
    rng = random.Random(SEED * 100 + round_)
    with fleet_on_postgres(postgres_url, sim, ttl_s=PAUSE_TTL_S) as fleet:
        owner = fleet.add()
        fleet.connections(2, f"pause{round_}")
        other = fleet.add()
        names = {w.name for w in fleet.workers}
        fleet.start_engines(owner)
        wait_for(lambda: fleet.running_on(owner, 2) == names, 60, "engines on the owner")
        with swinging(sim, fleet.workers, SEED + round_):
            wait_for(lambda: traded(fleet), 30, "orders at the venue")
            time.sleep(rng.uniform(0, 1.5))  # the pause lands at a random instant: no event
            owner.send(signal.SIGSTOP)
            wait_for(lambda: fleet.running_on(other) == names, 60, "adopted by the other")
            owner.send(signal.SIGCONT)
            wait_for(lambda: not fleet.running_on(owner, 0), 30,
                     "the resumed owner ends its engines")
            wait_for(lambda: fleet.running_on(other, 4) == names, 30, "the other trades on")
        assert fleet.check_venue() == []
        assert "engine lease lost" in owner.logs()
