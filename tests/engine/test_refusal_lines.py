"""Warnings an engine repeats every cycle are paced (`ctsd.log_pacing`): a PAPER
grid at its orders-per-minute budget on seeded random paths writes at most one
risk-refusal line a minute, the first at once, each later one saying how many it held
back; the engine's status still counts every refusal."""

from __future__ import annotations

import logging

import pytest

from ctsd.engine.config import RiskLimits
from ctsd.strategies.model import Ticker
from tests.engine.test_quiet_bands import path, twin
from tests.support.virtual_clock import VirtualClock

REFUSED = "order rejected by risk check"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.asyncio
async def test_an_engine_at_its_order_budget_writes_a_refusal_line_a_minute(
    seed: int, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ctsd.engine")
    clock = VirtualClock()
    grid = twin(clock, "grid", banded=False,  # levels 1 % apart
                risk=RiskLimits(max_orders_per_minute=3))
    for step, t in enumerate(path(seed, 600)):
        await grid.tick(step, Ticker(t.symbol, t.bid, t.ask, t.last, clock.now_ms()))
        if grid.stopped_at is not None:
            break
        await clock.advance(1.0)
    lines = [r for r in caplog.records if r.getMessage() == REFUSED]
    rejected = grid.engine.status.orders_rejected
    assert lines and len(lines) <= clock.now / 60 + 1, (seed, len(lines), clock.now)
    assert rejected > len(lines) + sum(r.__dict__["held_back"] for r in lines) > len(lines)
