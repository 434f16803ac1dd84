"""The engine status document other members read: every field kind survives the trip."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from ctsd.engine.config import TradingMode
from ctsd.engine.perpetual import MarginMode
from ctsd.engine.status import EngineState, EngineStatus, Failure, FailureCode, PositionStatus
from ctsd.engine.watch import Changed
from ctsd.fleet.statuses import FleetHub
from ctsd.store.database import Database
from ctsd.store.engine_statuses import SqlStatusStore, status_from_json, status_to_json
from ctsd.strategies.model import PositionSide


def test_a_status_reads_back_equal() -> None:
    status = EngineStatus(
        "c1", "e1", EngineState.FAILED, TradingMode.LIVE, "grid", ("BTC/USDT", "ETH/USDT"),
        failure=Failure(FailureCode.LEASE_OVERDUE, "renewal overdue"), cycles=7,
        last_cycle_ms=1_700_000_000_123, last_cycle_duration_s=0.25, last_cycle_lag_s=1.5,
        positions=(PositionStatus("BTC/USDT:USDT", Decimal("0.010"), Decimal("100.5"),
                                  Decimal("-1.25"), PositionSide.LONG, Decimal("101"),
                                  Decimal("5"), MarginMode.ISOLATED, None, Decimal("80")),),
        realized_pnl=Decimal("1E-8"), fees=Decimal("0.00100"), last_error="x", version=12)
    assert status_from_json(status_to_json(status)) == status
    bare = EngineStatus("c2", "e2", EngineState.STOPPED, TradingMode.PAPER, "sma", ())
    assert status_from_json(status_to_json(bare)) == bare


@pytest.mark.asyncio
async def test_every_member_sees_every_engine_and_versions_grow_across_owners(
        tmp_path: Path) -> None:
    dbs = [await Database.open(tmp_path) for _ in range(2)]
    tokens: dict[str, dict[str, int]] = {"a": {"c1": 3}, "b": {}}
    hubs = {name: FleetHub(SqlStatusStore(db), name) for name, db in zip("ab", dbs, strict=True)}
    for name, hub in hubs.items():
        hub.open(tokens[name].get)
    watcher = hubs["b"].subscribe()
    try:
        await watcher.next_event()  # the (empty) snapshot

        async def seen_on_b() -> EngineStatus:
            event = await asyncio.wait_for(watcher.next_event(), 10)
            assert isinstance(event, Changed)
            return event.status

        running = EngineStatus("c1", "e1", EngineState.RUNNING, TradingMode.LIVE, "grid", ())
        hubs["a"].publish(replace(running, cycles=9, version=5))
        first = await seen_on_b()
        assert (first.owner, first.cycles, first.version) == ("a", 9, (3 << 32) + 5)
        tokens["a"].clear()  # a lost it; b adopted it under the next token
        tokens["b"]["c1"] = 4
        hubs["b"].publish(replace(running, version=1))
        adopted = await seen_on_b()
        assert adopted.owner == "b" and adopted.version > first.version
        hubs["a"].publish(replace(running, state=EngineState.STOPPED, version=6))
        assert hubs["b"].get("c1") == adopted  # a's word on an engine it lost goes nowhere
        for hub in hubs.values():
            await hub.close()  # what is queued is written
        assert [owner for owner, _ in await SqlStatusStore(dbs[0]).load()] == ["b"]
    finally:
        watcher.close()
        for hub in hubs.values():
            await hub.close()
        for db in dbs:
            await db.close()
