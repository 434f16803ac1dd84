"""A fleet member's duties, two members on one SQLite file (`tests.fleet.rig`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctsd.engine.status import EngineState
from tests.fleet.rig import CID, CONFIG, SETTINGS, Fleet


@pytest.mark.asyncio
async def test_a_drained_member_hands_its_engine_over(tmp_path: Path) -> None:
    fleet = await Fleet.open(tmp_path)
    a, b = fleet.members
    try:
        await a.manager.start(CID, CONFIG)
        await fleet.until(lambda: a.running() and a.manager.get(CID).cycles >= 2)
        assert await a.member.drain("a")
        await fleet.until(b.running, limit_s=SETTINGS.ttl_s / 2)  # released, no TTL to wait
        assert CID not in a.manager.owned() and a.state() is None  # b runs it now
        assert b.manager.owned()[CID].fence.token == 2
    finally:
        await fleet.close()


@pytest.mark.asyncio
async def test_an_overdue_renewal_pauses_trading_before_the_lease_can_expire(
        tmp_path: Path) -> None:
    fleet = await Fleet.open(tmp_path, names=("a",))
    (a,) = fleet.members
    try:
        await a.manager.start(CID, CONFIG)
        await fleet.until(lambda: a.running() and a.manager.get(CID).cycles >= 2)
        a.renewals.freeze_at(0)  # the database no longer answers a's renewals
        last_sent = a.member.renewed_at
        await fleet.until(lambda: fleet.clock.now - last_sent > SETTINGS.ttl_s + 1)
        deadline_ms = fleet.clock.now_ms() - int((fleet.clock.now - last_sent) * 1000) + int(
            SETTINGS.deadline_s * 1000)
        late = [c for c in fleet.venue.log if c.acted and c.at_ms >= deadline_ms]
        assert late == []  # nothing placed or cancelled from the renewal deadline on
        before = [c for c in fleet.venue.log if c.acted and deadline_ms - 3000 <= c.at_ms]
        assert before  # and it was trading up to then
        a.renewals.thaw()  # the renewal lands after the TTL: the lease expired meanwhile
        await fleet.until(lambda: a.manager.owned().get(CID) is not None
                          and a.manager.owned()[CID].fence.token == 2 and a.running()
                          and a.manager.get(CID).cycles >= 1, limit_s=30)
    finally:
        await fleet.close()


@pytest.mark.asyncio
async def test_an_engine_stopped_while_nobody_runs_it_has_its_orders_cancelled(
        tmp_path: Path) -> None:
    fleet = await Fleet.open(tmp_path)
    a, b = fleet.members
    try:
        await a.manager.start(CID, CONFIG)
        await fleet.until(lambda: a.running() and a.manager.get(CID).cycles >= 2)
        a.gate.freeze_at(0)  # a is gone (for good: it is closed thawed, after the checks)
        await fleet.until(lambda: bool(fleet.venue.book.orders))
        resting = [o for o in fleet.venue.book.orders.values() if o.status.value == "open"]
        assert resting
        await b.manager.stop(CID)  # b does not run it: it can only mark it stopped
        await fleet.until(lambda: not [o for o in fleet.venue.book.orders.values()
                                       if o.status.value == "open"], limit_s=30)
        assert b.state() is EngineState.STOPPED and CID not in b.manager.owned()
        cancelled_by_b = {c.client_order_id for c in fleet.venue.log
                          if c.member == "b" and c.acted and c.method == "cancel_order"}
        assert {o.client_order_id for o in resting} <= cancelled_by_b
    finally:
        await fleet.close()
