"""The engine lifecycle and the status snapshot watchers receive.

    STOPPED -> STARTING -> RUNNING -> STOPPING -> STOPPED
                  |           |          |
                  +---------> FAILED <---+      FAILED -> STARTING (restart)
                                                FAILED -> STOPPING (stop asked)

Transitions are checked, so a bug that would, say, mark a stopping engine as
running raises instead of publishing a state that never happened.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal

from ctsd.engine.config import TradingMode
from ctsd.engine.perpetual import MarginMode
from ctsd.strategies.model import PositionSide


class EngineState(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"


ALLOWED_TRANSITIONS: dict[EngineState, frozenset[EngineState]] = {
    EngineState.STOPPED: frozenset({EngineState.STARTING}),
    EngineState.STARTING: frozenset({EngineState.RUNNING, EngineState.FAILED,
                                     EngineState.STOPPING}),
    EngineState.RUNNING: frozenset({EngineState.STOPPING, EngineState.FAILED}),
    EngineState.STOPPING: frozenset({EngineState.STOPPED, EngineState.FAILED}),
    EngineState.FAILED: frozenset({EngineState.STARTING, EngineState.STOPPING}),
}


class IllegalTransition(RuntimeError):
    """A bug: the engine tried a state change the lifecycle does not allow."""


def check_transition(current: EngineState, target: EngineState) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"{current.name} -> {target.name}")


class DataSource(enum.Enum):
    """Where an engine's market data comes from (a WebSocket engine falls back to REST)."""

    NONE = "none"
    REST = "rest"
    STREAM = "stream"
    REST_FALLBACK = "rest_fallback"


class FailureCode(enum.Enum):
    RISK_LIMIT = "RISK_LIMIT"
    """A risk limit (the daily loss limit) stopped the engine; it is not restarted."""
    RECONCILIATION_FAILED = "RECONCILIATION_FAILED"
    """Open orders could not be aligned with the venue; fail closed, no restart."""
    CYCLE_ERROR = "CYCLE_ERROR"
    """A cycle raised; the engine is restarted with backoff."""
    EXCHANGE_UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
    """The exchange did not answer usefully (down, maintenance, rate limited): restarted
    with backoff for as long as it lasts, never counted against the restart limit."""
    RESTART_LIMIT = "RESTART_LIMIT"
    """Cycles kept failing; restarts gave up."""
    START_FAILED = "START_FAILED"
    """The connection's clients could not be opened (e.g. on resume after a restart)."""
    POSITION_MISMATCH = "POSITION_MISMATCH"
    """A LIVE perpetuals engine found the venue's position differing from its ledger (an
    outside trade, a liquidation, auto-deleveraging) and fails closed; no restart."""
    LEASE_OVERDUE = "LEASE_OVERDUE"
    """Fleet: the lease's renewal was overdue mid-session; trading stopped before the lease
    could expire, and the engine reconciles again once it is renewed."""


@dataclass(frozen=True, slots=True)
class Failure:
    code: FailureCode
    message: str

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"


@dataclass(frozen=True, slots=True)
class PositionStatus:
    """One position as the engine shows it. Spot fills only the first four fields;
    perpetuals all (LIVE from the venue's own figures, PAPER from the paper account)."""

    symbol: str
    amount: Decimal
    avg_price: Decimal
    unrealized_pnl: Decimal
    side: PositionSide = PositionSide.BOTH
    mark_price: Decimal | None = None
    leverage: Decimal | None = None
    margin_mode: MarginMode | None = None
    margin: Decimal | None = None
    liquidation_price: Decimal | None = None


@dataclass(frozen=True)
class EngineStatus:
    """One engine at one moment; a new object on every change, so watchers get snapshots."""

    connection_id: str
    engine_id: str
    state: EngineState
    mode: TradingMode
    strategy: str
    symbols: tuple[str, ...]
    failure: Failure | None = None
    cycles: int = 0
    last_cycle_ms: int = 0
    last_cycle_duration_s: float = 0.0
    last_cycle_lag_s: float = 0.0
    """How late the last cycle started after its scheduled tick."""
    skipped_ticks: int = 0
    """Ticks skipped because a cycle overran its interval (never run late in a burst)."""
    quiet_events: int = 0
    """WebSocket ticker changes that woke no cycle: inside the engine's quiet bands
    (`ctsd.engine.wakes`); published with the next cycle."""
    heartbeat_ms: int = 0
    """When the engine last finished a cycle: a RUNNING engine whose heartbeat lags far
    behind its interval is stuck (see `CoordinatorHealth.stalled`)."""
    open_orders: int = 0
    positions: tuple[PositionStatus, ...] = field(default=())
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    orders_placed: int = 0
    orders_filled: int = 0
    orders_rejected: int = 0
    fees: Decimal = Decimal(0)
    """Fees paid, in the quote asset (already in realized_pnl)."""
    funding_pnl: Decimal = Decimal(0)
    interest_pnl: Decimal = Decimal(0)
    """Spot margin: interest charged on loans (negative; already in realized PnL)."""
    """Funding received minus paid (already in realized_pnl)."""
    position_differences: int = 0
    """How often the venue's positions were found differing from the ledger."""
    last_position_difference: str = ""
    """The latest such difference, named: symbol, side, ledger and venue amounts, cause."""
    liquidations: int = 0
    """Positions the venue (or the paper account) liquidated."""
    last_error: str = ""
    restarts: int = 0
    owner: str = ""
    """Fleet: the member that published this status (`ctsd.fleet.statuses`)."""
    version: int = 0
    """Increases with every change: lets a watcher drop stale or duplicate events."""
    data_source: DataSource = DataSource.NONE
    data_problem: str = ""
    """Why a stream is not live while on the REST fallback."""
    data_fallbacks: int = 0
