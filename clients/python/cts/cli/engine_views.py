"""How engines, their orders and trades, dry cycles and watch events look.

Kept apart from the handlers (`engines.py`) so the look can be tested without
a daemon and changed without touching request logic. Amounts and prices are
the daemon's decimal strings, printed as they came: what the engine computed
is what the user reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from cts.cli import enums
from cts.cli.output import (
    age,
    duration,
    message_to_json,
    money,
    or_unset,
    render_fields,
    render_table,
    timestamp,
    yes_no,
)
from cts.cli.views import short_id
from cts.v1 import engine_service_pb2 as pb

ENGINE_SUFFIX = "/engine"

ENGINE_HEADERS = (
    "NAME",
    "STATE",
    "MODE",
    "STRATEGY",
    "SYMBOLS",
    "CYCLES",
    "LAST CYCLE",
    "OPEN",
    "PLACED",
    "FILLED",
    "REJECTED",
    "REALIZED",
    "UNREALIZED",
    "RESTARTS",
)
ORDER_HEADERS = (
    "CLIENT ORDER ID",
    "SYMBOL",
    "SIDE",
    "TYPE",
    "AMOUNT",
    "PRICE",
    "STATUS",
    "FILLED",
    "AVG PRICE",
    "FEE",
    "TAG",
    "CYCLE",
    "CREATED",
    "REASON",
)
TRADE_HEADERS = (
    "TRADE ID",
    "CLIENT ORDER ID",
    "SYMBOL",
    "SIDE",
    "AMOUNT",
    "PRICE",
    "FEE",
    "FEE ASSET",
    "MAKER",
    "TIME",
)
TICKER_HEADERS = ("SYMBOL", "BID", "ASK", "LAST")
INTENT_HEADERS = ("SYMBOL", "SIDE", "TYPE", "AMOUNT", "PRICE", "TAG", "RISK", "REASON")
CANCEL_HEADERS = ("CLIENT ORDER ID", "SYMBOL", "TAG")

CLEAR_SCREEN = "\x1b[2J\x1b[H"
"""ANSI: erase the display, then move the cursor home; each redraw starts on a blank screen."""


def engine_name(id_or_name: str) -> str:
    """`connections/ID/engine` from `ID`, `connections/ID` or the full engine name."""
    if id_or_name.endswith(ENGINE_SUFFIX):
        return id_or_name
    name = id_or_name if "/" in id_or_name else "connections/" + id_or_name
    return name + ENGINE_SUFFIX


def engine_id(name: str) -> str:
    """The id people type: `connections/main/engine` → `main`."""
    return short_id(name.removesuffix(ENGINE_SUFFIX))


def state_word(engine: pb.Engine) -> str:
    return enums.label(pb.EngineState, engine.state)


def _failure_text(failure: pb.EngineFailure) -> str:
    code = enums.label(pb.EngineFailureCode, failure.code)
    return f"{code}: {failure.message}" if failure.message else code


def engine_row(engine: pb.Engine, now: datetime | None = None) -> list[str]:
    return [
        engine_id(engine.name),
        state_word(engine),
        enums.label(pb.TradingMode, engine.mode),
        or_unset(engine.strategy),
        ",".join(engine.symbols) or enums.UNSET,
        str(engine.cycles),
        age(engine.last_cycle_time, now),
        str(engine.open_orders),
        str(engine.orders_placed),
        str(engine.orders_filled),
        str(engine.orders_rejected),
        money(engine.realized_pnl),
        money(engine.unrealized_pnl),
        str(engine.restarts),
    ]


def engines_table(engines: Iterable[pb.Engine], now: datetime | None = None) -> str:
    return render_table(ENGINE_HEADERS, [engine_row(e, now) for e in engines])


def _position_text(position: pb.Position) -> str:
    text = f"{position.amount} @ {or_unset(position.average_price)}"
    details = []
    if position.mark_price:
        details.append(f"mark {position.mark_price}")
    if position.unrealized_pnl:
        details.append(f"unrealized {money(position.unrealized_pnl)}")
    if position.leverage:
        details.append(f"{position.leverage}x")
    if position.margin_mode:
        details.append(enums.label(pb.PositionMarginMode, position.margin_mode))
    if position.margin:
        details.append(f"margin {money(position.margin)}")
    if position.liquidation_price:
        details.append(f"liquidation {position.liquidation_price}")
    return f"{text} ({', '.join(details)})" if details else text


def _position_label(position: pb.Position) -> str:
    side = position.side
    if side in (pb.POSITION_SIDE_LONG, pb.POSITION_SIDE_SHORT):
        return f"Position {position.symbol} {enums.label(pb.PositionSide, side)}"
    return f"Position {position.symbol}"


def engine_detail(engine: pb.Engine) -> str:
    """Every field of one engine, one per line: the view of `status`, `start` and `stop`."""
    fields: list[tuple[str, str]] = [
        ("Name", engine.name),
        ("Engine id", or_unset(engine.engine_id)),
        ("State", state_word(engine)),
    ]
    if engine.HasField("failure") and engine.failure.code:
        fields.append(("Failure", _failure_text(engine.failure)))
    fields += [
        ("Mode", enums.label(pb.TradingMode, engine.mode)),
        ("Strategy", or_unset(engine.strategy)),
        ("Symbols", ", ".join(engine.symbols) or enums.UNSET),
        ("Cycles", str(engine.cycles)),
        ("Last cycle", _last_cycle_text(engine)),
        ("Heartbeat", timestamp(engine.heartbeat_time)),
        ("Open orders", str(engine.open_orders)),
        (
            "Orders",
            f"{engine.orders_placed} placed, {engine.orders_filled} filled, "
            f"{engine.orders_rejected} rejected",
        ),
        ("Realized PnL", money(engine.realized_pnl)),
        ("Unrealized PnL", money(engine.unrealized_pnl)),
        ("Fees", money(engine.fees)),
    ]
    if engine.funding_pnl or engine.liquidations or engine.position_differences:
        fields += [
            ("Funding", money(engine.funding_pnl)),
            ("Liquidations", str(engine.liquidations)),
            ("Position differences", str(engine.position_differences)),
        ]
    if engine.interest_pnl and engine.interest_pnl != "0":
        fields.append(("Interest", money(engine.interest_pnl)))
    if engine.last_position_difference:
        fields.append(("Last difference", engine.last_position_difference))
    fields += [(_position_label(p), _position_text(p)) for p in engine.positions]
    fields += [
        ("Restarts", str(engine.restarts)),
        ("Last error", or_unset(engine.last_error)),
        ("Version", str(engine.version)),
    ]
    return render_fields(fields)


def _last_cycle_text(engine: pb.Engine) -> str:
    when = timestamp(engine.last_cycle_time)
    if when == enums.UNSET:
        return when
    return f"{when} in {duration(engine.last_cycle_duration)}"


def order_row(order: pb.EngineOrder) -> list[str]:
    return [
        order.client_order_id,
        order.symbol,
        enums.label(pb.OrderSide, order.side),
        enums.label(pb.OrderType, order.type),
        order.amount,
        or_unset(order.price),
        enums.label(pb.OrderStatus, order.status),
        or_unset(order.filled),
        or_unset(order.average_price),
        or_unset(order.fee),
        or_unset(order.tag),
        str(order.cycle),
        timestamp(order.create_time),
        or_unset(order.reason),
    ]


def orders_table(orders: Sequence[pb.EngineOrder]) -> str:
    return render_table(ORDER_HEADERS, [order_row(o) for o in orders])


def trade_row(trade: pb.EngineTrade) -> list[str]:
    return [
        trade.trade_id,
        trade.client_order_id,
        trade.symbol,
        enums.label(pb.OrderSide, trade.side),
        trade.amount,
        trade.price,
        or_unset(trade.fee),
        or_unset(trade.fee_asset),
        yes_no(trade.maker),
        timestamp(trade.time),
    ]


def trades_table(trades: Sequence[pb.EngineTrade]) -> str:
    return render_table(TRADE_HEADERS, [trade_row(t) for t in trades])


def _intent_row(intent: pb.OrderIntent) -> list[str]:
    return [
        intent.symbol,
        enums.label(pb.OrderSide, intent.side),
        enums.label(pb.OrderType, intent.type),
        intent.amount,
        or_unset(intent.price),
        or_unset(intent.tag),
        "allowed" if intent.allowed else "refused",
        or_unset(intent.reason),
    ]


def dry_cycle(response: pb.TestEngineResponse) -> str:
    """What a dry cycle saw and decided: the market, then the orders and cancels."""
    tickers = [[t.symbol, t.bid, t.ask, t.last] for t in response.tickers]
    blocks = [
        f"Market at {timestamp(response.market_time)}",
        render_table(TICKER_HEADERS, tickers),
        "",
    ]
    if response.orders:
        blocks += [
            "Would place:",
            render_table(INTENT_HEADERS, [_intent_row(o) for o in response.orders]),
        ]
    else:
        blocks.append("Would place: nothing")
    if response.cancels:
        cancels = [[c.client_order_id, c.symbol, or_unset(c.tag)] for c in response.cancels]
        blocks += ["", "Would cancel:", render_table(CANCEL_HEADERS, cancels)]
    return "\n".join(blocks)


def engines_document(engines: Iterable[pb.Engine]) -> dict[str, object]:
    return {"engines": [message_to_json(e) for e in engines]}


def json_line(event: pb.WatchEnginesResponse) -> str:
    """One watch event as one compact JSON line (JSON Lines), for `jq -c` and log shippers."""
    return json.dumps(message_to_json(event), ensure_ascii=False)


def watch_screen(engines: Iterable[pb.Engine], note: str, now: datetime | None = None) -> str:
    """One frame of `cts engine watch` on a terminal: clear, a status line, the table."""
    now = now or datetime.now(UTC)
    rows = list(engines)
    header = f"{now:%H:%M:%S}  {len(rows)} engine(s)  {note}  (Ctrl-C to stop)"
    body = engines_table(rows, now) if rows else "No engines."
    return f"{CLEAR_SCREEN}{header}\n\n{body}\n"
