"""Fencing: a member that lost its engine's lease never places, cancels or writes again.

The hunt freezes member A (as SIGSTOP would) at its k-th port call after its
engine traded for a while -- before or after any store write, renewal, market
read, placement or cancel -- lets virtual time run until member B adopted the
engine (lease expired, token raised, reconciled with the venue), then thaws A.
Whatever A was doing, from B's adoption on the venue acts on nothing of A's and
the store holds no row A wrote; no client order id is ever placed twice.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ctsd.engine.status import EngineState
from tests.fleet.rig import CID, CONFIG, Fleet, Member
from tests.robustness.tally import soak_rounds

QUICK_INSTANTS = 14
SEED = 16


def instants() -> list[int]:
    """Every instant of the first two cycles in the long form; a seeded sample of them,
    always including the first few, in the quick one."""
    everything = list(range(0, 64))
    if soak_rounds(0):
        return everything
    return sorted({0, 1, 2, 3, *random.Random(SEED).sample(everything, QUICK_INSTANTS)})


def cycles(member: Member) -> int:
    statuses = member.manager.list()
    return statuses[0].cycles if statuses else 0


async def hunt(path: Path, freeze_after: int) -> bool:
    """One pause; False when A made fewer calls than `freeze_after` in the window."""
    fleet = await Fleet.open(path)
    a, b = fleet.members
    try:
        await a.manager.start(CID, CONFIG)
        await fleet.until(lambda: a.running() and cycles(a) >= 2)
        a.gate.freeze_at(freeze_after)
        try:
            await fleet.until(a.gate.frozen.is_set, limit_s=2.5)
        except AssertionError:
            return False
        await fleet.until(b.running, limit_s=30)
        adopted_at = len(fleet.venue.log)
        token_b = b.manager.owned()[CID].fence.token
        before = set(await a.db.fetch_all("SELECT client_order_id, fence FROM engine_orders"))
        b_cycles = cycles(b)
        a.gate.thaw()
        await fleet.until(lambda: CID not in a.manager.owned()
                          and a.state() is not EngineState.RUNNING
                          and cycles(b) >= b_cycles + 3)
        late = [c for c in fleet.venue.log[adopted_at:] if c.member == "a" and c.acted]
        assert late == [], f"A acted after losing its lease (frozen at call {freeze_after})"
        placed = [c.client_order_id for c in fleet.venue.log
                  if c.method == "create_order" and c.acted]
        assert len(placed) == len(set(placed)), "a client order id was placed twice"
        assert placed, "nothing was placed: the hunt tested nothing"
        rows = await a.db.fetch_all(
            "SELECT client_order_id, fence FROM engine_orders WHERE fence <> ?", (token_b,))
        stale = set(rows) - before
        assert not stale, f"orders recorded under a stale token after the adoption: {stale}"
        assert b.state() is EngineState.RUNNING
        return True
    finally:
        await fleet.close()


@pytest.mark.asyncio
async def test_a_paused_member_acts_on_nothing_after_losing_its_lease(tmp_path: Path) -> None:
    tried = 0
    for k in instants():
        case = tmp_path / f"k{k}"
        case.mkdir()
        tried += await hunt(case, k)
    assert tried >= 10, f"only {tried} pause instants fell inside the window"
