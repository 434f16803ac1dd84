"""A fleet member's duties, two members on one SQLite file (`tests.fleet.rig`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ctsd.engine.status import EngineState, EngineStatus, Failure, FailureCode
from ctsd.engine.watch import Changed
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


@pytest.mark.asyncio
async def test_a_dead_owners_engine_says_so_until_it_is_adopted(tmp_path: Path) -> None:
    fleet = await Fleet.open(tmp_path)
    a, b = fleet.members
    note = "owner a lost its lease; adoption pending"

    def seen_on_b() -> EngineStatus | None:
        return b.manager.list()[0] if b.manager.list() else None

    def pending_on_b() -> bool:
        status = seen_on_b()
        return status is not None and status.failure is not None and \
            status.failure.message == note

    watcher = b.manager.watch()
    try:
        await watcher.next_event()  # the (empty) snapshot: changes are queued from now on
        await a.manager.start(CID, CONFIG)
        await fleet.until(lambda: a.running() and a.manager.get(CID).cycles >= 2)
        await fleet.until(lambda: (s := seen_on_b()) is not None and s.owner == "a"
                          and s.state is EngineState.RUNNING)
        assert await b.member.drain("b")  # b adopts nothing: the engine stays orphaned
        a.gate.freeze_at(0)  # a is gone (thawed at close, after the checks)
        await fleet.until(pending_on_b, limit_s=SETTINGS.ttl_s + 3 * SETTINGS.scan_s)
        assert fleet.clock.now - a.member.renewed_at >= SETTINGS.ttl_s  # not before expiry
        pending = seen_on_b()
        assert pending is not None and pending.owner == "a"
        assert pending.state is EngineState.RUNNING  # its last word, marked as not holding
        assert pending.failure == Failure(FailureCode.LEASE_OVERDUE, note)
        for _ in range(100):  # b's watchers were told (a snapshot, then changes)
            event = await asyncio.wait_for(watcher.next_event(), 5)
            if isinstance(event, Changed) and event.status == pending:
                break
        else:
            raise AssertionError("b's watcher was not told the owner lost its lease")
        assert await b.member.drain("b", draining=False)
        await fleet.until(b.running, limit_s=30)
        adopted = seen_on_b()
        assert adopted is not None and adopted.owner == "b" and not pending_on_b()
        assert adopted.version > pending.version
    finally:
        watcher.close()
        await fleet.close()
