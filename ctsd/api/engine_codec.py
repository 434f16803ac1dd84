"""EngineService messages <-> engine domain values.

Why money travels as decimal strings: the engine computes in `Decimal`, and a
float on the wire would make a client's view of an order differ from the
engine's by rounding. Decoding collects every malformed field into one
InvalidArgument, so a client fixes its request in one round trip; semantic
checks (ranges, strategy parameters) stay in `ctsd.engine.config`, and
`proto_field_paths` renames the few domain paths that differ from the proto.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, TypeVar

from cts.v1 import engine_service_pb2 as pb
from ctsd.api.names import connection_id_from_name
from ctsd.api.wellknown import duration, timestamp
from ctsd.engine.config import (
    EngineConfig,
    PaperSettings,
    RiskLimits,
    TradingMode,
    validate_config,
)
from ctsd.engine.manager_status import CoordinatorHealth
from ctsd.engine.orders import Fill, Order, OrderStatus
from ctsd.engine.perpetual import MarginMode, MismatchPolicy
from ctsd.engine.status import DataSource, EngineState, EngineStatus, FailureCode, PositionStatus
from ctsd.engine.watch import Heartbeat
from ctsd.errors import FieldViolation, InvalidArgument
from ctsd.strategies.model import CancelIntent, OrderIntent, OrderType, PositionSide, Side
from ctsd.strategies.params import bounded_decimal
from ctsd.strategies.registry import StrategyRegistry

if TYPE_CHECKING:  # the dry run is imported by the first TestEngine (`EngineManager.test`)
    from ctsd.engine.market import DryRun

ENGINE_SUFFIX = "/engine"
DEFAULT_INTERVAL_S = EngineConfig("", ()).interval_s
DEFAULT_RISK = RiskLimits()
DEFAULT_PAPER = PaperSettings()

_MODES = {TradingMode.PAPER: pb.TRADING_MODE_PAPER, TradingMode.LIVE: pb.TRADING_MODE_LIVE}
_STATES = {
    EngineState.STOPPED: pb.ENGINE_STATE_STOPPED, EngineState.STARTING: pb.ENGINE_STATE_STARTING,
    EngineState.RUNNING: pb.ENGINE_STATE_RUNNING, EngineState.STOPPING: pb.ENGINE_STATE_STOPPING,
    EngineState.FAILED: pb.ENGINE_STATE_FAILED,
}
_FAILURES = {
    FailureCode.RISK_LIMIT: pb.ENGINE_FAILURE_CODE_RISK_LIMIT,
    FailureCode.RECONCILIATION_FAILED: pb.ENGINE_FAILURE_CODE_RECONCILIATION_FAILED,
    FailureCode.CYCLE_ERROR: pb.ENGINE_FAILURE_CODE_CYCLE_ERROR,
    FailureCode.RESTART_LIMIT: pb.ENGINE_FAILURE_CODE_RESTART_LIMIT,
    FailureCode.START_FAILED: pb.ENGINE_FAILURE_CODE_START_FAILED,
    FailureCode.EXCHANGE_UNAVAILABLE: pb.ENGINE_FAILURE_CODE_EXCHANGE_UNAVAILABLE,
    FailureCode.POSITION_MISMATCH: pb.ENGINE_FAILURE_CODE_POSITION_MISMATCH,
    FailureCode.LEASE_OVERDUE: pb.ENGINE_FAILURE_CODE_LEASE_OVERDUE,
}
_POSITION_SIDES = {PositionSide.BOTH: pb.POSITION_SIDE_BOTH,
                   PositionSide.LONG: pb.POSITION_SIDE_LONG,
                   PositionSide.SHORT: pb.POSITION_SIDE_SHORT}
_MARGIN_MODES = {MarginMode.CROSS: pb.POSITION_MARGIN_MODE_CROSS,
                 MarginMode.ISOLATED: pb.POSITION_MARGIN_MODE_ISOLATED}
_MISMATCH = {pb.POSITION_MISMATCH_POLICY_UNSPECIFIED: MismatchPolicy.STOP,
             pb.POSITION_MISMATCH_POLICY_STOP: MismatchPolicy.STOP,
             pb.POSITION_MISMATCH_POLICY_ADOPT: MismatchPolicy.ADOPT}
_SIDES = {Side.BUY: pb.ORDER_SIDE_BUY, Side.SELL: pb.ORDER_SIDE_SELL}
_TYPES = {OrderType.MARKET: pb.ORDER_TYPE_MARKET, OrderType.LIMIT: pb.ORDER_TYPE_LIMIT}
_ORDER_STATUSES = {
    OrderStatus.PENDING: pb.ORDER_STATUS_PENDING, OrderStatus.OPEN: pb.ORDER_STATUS_OPEN,
    OrderStatus.FILLED: pb.ORDER_STATUS_FILLED, OrderStatus.CANCELED: pb.ORDER_STATUS_CANCELED,
    OrderStatus.REJECTED: pb.ORDER_STATUS_REJECTED,
}
_DOMAIN_TO_PROTO_PATHS = {"config.interval_s": "config.interval"}

T = TypeVar("T")


# --- names -----------------------------------------------------------------------------

def connection_id_from_engine_name(name: str, field: str = "name") -> str:
    """`connections/{connection}/engine` -> the connection id."""
    if not name.endswith(ENGINE_SUFFIX):
        raise InvalidArgument.field(field, "must be connections/{connection}/engine")
    return connection_id_from_name(name[: -len(ENGINE_SUFFIX)], field)


def engine_name(connection_id: str) -> str:
    return f"connections/{connection_id}{ENGINE_SUFFIX}"


# --- decoding ----------------------------------------------------------------------------

def _decimal(text: str, path: str, found: list[FieldViolation]) -> Decimal | None:
    """Empty means unset; anything else must be a decimal within `bounded_decimal`'s bounds."""
    if not text:
        return None
    try:
        return bounded_decimal(text)
    except ValueError as exc:
        found.append(FieldViolation(path, f"{text[:64]!r} {exc}"))
        return None


def _decode_risk(risk: pb.RiskLimits, found: list[FieldViolation]) -> RiskLimits:
    prefix = "config.risk."

    def count(field: str, default: int | None) -> int | None:
        if not risk.HasField(field):  # type: ignore[arg-type]
            return default
        value: int = getattr(risk, field)
        return None if value == 0 else value  # 0 switches the limit off

    return RiskLimits(
        max_order_notional=_decimal(risk.max_order_notional, prefix + "max_order_notional",
                                    found),
        max_position_notional=_decimal(risk.max_position_notional,
                                       prefix + "max_position_notional", found),
        max_open_orders=count("max_open_orders", DEFAULT_RISK.max_open_orders),
        max_orders_per_minute=count("max_orders_per_minute", DEFAULT_RISK.max_orders_per_minute),
        daily_loss_limit=_decimal(risk.daily_loss_limit, prefix + "daily_loss_limit", found),
    )


def _decode_paper(paper: pb.PaperSettings, found: list[FieldViolation]) -> PaperSettings:
    balances = DEFAULT_PAPER.balances
    if paper.balances:
        parsed = [(asset, _decimal(text, f"config.paper.balances[{asset}]", found))
                  for asset, text in sorted(paper.balances.items())]
        balances = tuple((a, v if v is not None else Decimal(0)) for a, v in parsed)
    slippage = _decimal(paper.slippage_bps, "config.paper.slippage_bps", found)
    return PaperSettings(balances, DEFAULT_PAPER.slippage_bps if slippage is None else slippage)


def decode_config(config: pb.EngineConfig, strategies: StrategyRegistry) -> EngineConfig:
    """The domain config; mode is LIVE only when the request says LIVE.

    When a field cannot even be parsed, the rest is still checked by the domain
    (`validate_config`), so one InvalidArgument lists every bad field at once.
    """
    found: list[FieldViolation] = []
    if config.mode not in (pb.TRADING_MODE_UNSPECIFIED, pb.TRADING_MODE_PAPER,
                           pb.TRADING_MODE_LIVE):
        found.append(FieldViolation("config.mode", f"unknown mode {config.mode}"))
    policy = _MISMATCH.get(config.on_position_mismatch)
    if policy is None:
        found.append(FieldViolation("config.on_position_mismatch",
                                    f"unknown policy {config.on_position_mismatch}"))
    # Not ToTimedelta(): it overflows on seconds the domain's range check should refuse.
    interval = (config.interval.seconds + config.interval.nanos / 1e9
                if config.HasField("interval") else DEFAULT_INTERVAL_S)
    decoded = EngineConfig(
        strategy=config.strategy,
        symbols=tuple(config.symbols),
        params=dict(config.params),
        mode=TradingMode.LIVE if config.mode == pb.TRADING_MODE_LIVE else TradingMode.PAPER,
        interval_s=interval,
        risk=_decode_risk(config.risk, found),
        paper=_decode_paper(config.paper, found),
        leverage=dict(config.leverage),
        on_position_mismatch=policy or MismatchPolicy.STOP,
    )
    if found:
        try:
            validate_config(decoded, strategies)
        except InvalidArgument as exc:
            found += [_proto_path(v) for v in exc.violations]
        raise InvalidArgument(_describe(found), found)
    return decoded


def _proto_path(violation: FieldViolation) -> FieldViolation:
    path = _DOMAIN_TO_PROTO_PATHS.get(violation.field, violation.field)
    return FieldViolation(path, violation.description)


def _describe(violations: list[FieldViolation]) -> str:
    return "; ".join(f"{v.field}: {v.description}" for v in violations)


@contextmanager
def proto_field_paths() -> Iterator[None]:
    """Re-raise the domain's InvalidArgument with field paths as the proto spells them."""
    try:
        yield
    except InvalidArgument as exc:
        if not any(v.field in _DOMAIN_TO_PROTO_PATHS for v in exc.violations):
            raise
        renamed = [_proto_path(v) for v in exc.violations]
        raise InvalidArgument(_describe(renamed), renamed) from exc


# --- encoding ----------------------------------------------------------------------------

def _text(value: Decimal | None) -> str:
    """Fixed-point text: `str(Decimal)` would write `1E+1` for some values."""
    return "" if value is None else format(value, "f")


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


_SOURCES = {
    DataSource.NONE: pb.MARKET_DATA_SOURCE_UNSPECIFIED,
    DataSource.REST: pb.MARKET_DATA_SOURCE_REST,
    DataSource.STREAM: pb.MARKET_DATA_SOURCE_STREAM,
    DataSource.REST_FALLBACK: pb.MARKET_DATA_SOURCE_REST_FALLBACK,
}


def encode_engine(status: EngineStatus) -> pb.Engine:
    engine = pb.Engine(
        name=engine_name(status.connection_id), engine_id=status.engine_id,
        state=_STATES[status.state], mode=_MODES[status.mode], strategy=status.strategy,
        symbols=status.symbols, cycles=status.cycles, open_orders=status.open_orders,
        positions=[_position(p) for p in status.positions],
        realized_pnl=_text(status.realized_pnl), unrealized_pnl=_text(status.unrealized_pnl),
        orders_placed=status.orders_placed, orders_filled=status.orders_filled,
        orders_rejected=status.orders_rejected, last_error=status.last_error,
        restarts=status.restarts, version=status.version,
        last_cycle_duration=duration(status.last_cycle_duration_s),
        last_cycle_lag=duration(status.last_cycle_lag_s), skipped_ticks=status.skipped_ticks,
        quiet_events=status.quiet_events,
        market_data_source=_SOURCES[status.data_source],
        market_data_problem=status.data_problem,
        market_data_fallbacks=status.data_fallbacks,
        fees=_text(status.fees), funding_pnl=_text(status.funding_pnl),
        interest_pnl=_text(status.interest_pnl),
        position_differences=status.position_differences,
        last_position_difference=status.last_position_difference,
        liquidations=status.liquidations, owner=status.owner,
    )
    if status.failure is not None:
        engine.failure.CopyFrom(pb.EngineFailure(code=_FAILURES[status.failure.code],
                                                 message=status.failure.message))
    if status.last_cycle_ms:
        engine.last_cycle_time.CopyFrom(timestamp(_time(status.last_cycle_ms)))
    if status.heartbeat_ms:
        engine.heartbeat_time.CopyFrom(timestamp(_time(status.heartbeat_ms)))
    return engine


def _position(p: PositionStatus) -> pb.Position:
    return pb.Position(
        symbol=p.symbol, amount=_text(p.amount), average_price=_text(p.avg_price),
        unrealized_pnl=_text(p.unrealized_pnl), side=_POSITION_SIDES[p.side],
        mark_price=_text(p.mark_price), leverage=_text(p.leverage),
        margin_mode=_MARGIN_MODES[p.margin_mode] if p.margin_mode
        else pb.POSITION_MARGIN_MODE_UNSPECIFIED,
        margin=_text(p.margin), liquidation_price=_text(p.liquidation_price))


def encode_heartbeat(beat: Heartbeat) -> pb.EngineHeartbeat:
    return pb.EngineHeartbeat(time=timestamp(_time(beat.timestamp_ms)))


def encode_health(health: CoordinatorHealth) -> pb.CoordinatorHealth:
    return pb.CoordinatorHealth(
        engines=health.engines, running=health.running, failed=health.failed,
        stalled_engines=[engine_name(c) for c in health.stalled], watchers=health.watchers,
        restarts=health.restarts)


def encode_dry_run(dry: DryRun) -> pb.TestEngineResponse:
    verdicts = {id(v.intent): v for v in dry.verdicts}
    response = pb.TestEngineResponse(
        tickers=[pb.TestTicker(symbol=m.info.symbol, bid=_text(m.ticker.bid),
                               ask=_text(m.ticker.ask), last=_text(m.ticker.last))
                 for m in dry.market.symbols],
        market_time=timestamp(_time(dry.market.timestamp_ms)))
    for intent in dry.intents:
        if isinstance(intent, OrderIntent):
            verdict = verdicts.get(id(intent))
            response.orders.append(pb.OrderIntent(
                symbol=intent.symbol, side=_SIDES[intent.side], type=_TYPES[intent.type],
                amount=_text(intent.amount), price=_text(intent.price), tag=intent.tag,
                allowed=verdict is not None and verdict.accepted,
                reason=verdict.reason if verdict else "", reduce_only=intent.reduce_only,
                position_side=_POSITION_SIDES[intent.position_side] if intent.position_side
                else pb.POSITION_SIDE_UNSPECIFIED))
        elif isinstance(intent, CancelIntent):
            response.cancels.append(pb.CancelIntent(
                client_order_id=intent.client_order_id, symbol=intent.symbol, tag=intent.tag))
    return response


def encode_order(order: Order) -> pb.EngineOrder:
    return pb.EngineOrder(
        client_order_id=order.client_order_id, exchange_order_id=order.exchange_order_id,
        symbol=order.symbol, side=_SIDES[order.side], type=_TYPES[order.type],
        amount=_text(order.amount), price=_text(order.price),
        status=_ORDER_STATUSES[order.status], filled=_text(order.filled),
        average_price=_text(order.average_price), fee=_text(order.fee), tag=order.tag,
        cycle=order.cycle, reason=order.reason,
        create_time=timestamp(_time(order.created_ms)),
        update_time=timestamp(_time(order.updated_ms)), reduce_only=order.reduce_only,
        position_side=_POSITION_SIDES[order.position_side])


def encode_trade(fill: Fill) -> pb.EngineTrade:
    return pb.EngineTrade(
        trade_id=fill.trade_id, client_order_id=fill.client_order_id, symbol=fill.symbol,
        side=_SIDES[fill.side], amount=_text(fill.amount), price=_text(fill.price),
        fee=_text(fill.fee), fee_asset=fill.fee_asset,
        time=timestamp(_time(fill.timestamp_ms)), maker=fill.maker,
        position_side=_POSITION_SIDES[fill.position_side])
