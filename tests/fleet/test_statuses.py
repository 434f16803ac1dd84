"""The engine status document other members read: every field kind survives the trip."""

from __future__ import annotations

from decimal import Decimal

from ctsd.engine.config import TradingMode
from ctsd.engine.perpetual import MarginMode
from ctsd.engine.status import EngineState, EngineStatus, Failure, FailureCode, PositionStatus
from ctsd.store.engine_statuses import status_from_json, status_to_json
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
