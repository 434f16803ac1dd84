"""`SqlEngineStore`: the engine's desired state, orders and fills in the database.

Why these shapes:
- The config is one JSON column: it is only ever read back whole, at resume,
  and a schema change of `EngineConfig` must not need a migration.
- Money is stored as decimal text, never REAL, so an order read back after a
  restart compares equal to the one written.
- Orders are upserted by (connection, client order id) and fills inserted with
  ON CONFLICT DO NOTHING on (connection, trade id) -- not OR IGNORE, which would
  also swallow a NOT NULL violation -- in one transaction per execution: a
  broker that records the same execution twice (a retry after a crash) leaves
  exactly one order row and no duplicate fill.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

from ctsd.engine.config import EngineConfig, PaperSettings, RiskLimits, TradingMode
from ctsd.engine.lease_ports import Fence
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import FundingPayment, MismatchPolicy, PaymentKind
from ctsd.engine.store_ports import DesiredState, EngineRecord, Page
from ctsd.store.database import Database, Row, Transaction
from ctsd.store.fleet import SqlFleetStore
from ctsd.strategies.model import OrderType, PositionSide, Side

T = TypeVar("T")

_ORDER_COLUMNS = (
    "client_order_id, symbol, side, type, amount, price, tag, cycle, status, filled, "
    "average_price, fee, exchange_order_id, reason, created_ms, updated_ms, reduce_only, "
    "position_side"
)
_FILL_COLUMNS = (
    "trade_id, client_order_id, symbol, side, amount, price, fee, fee_asset, timestamp_ms, maker, "
    "position_side"
)
_FUNDING_COLUMNS = "funding_id, symbol, amount, asset, timestamp_ms, kind"
_UPDATED_ON_CONFLICT = ", ".join(
    f"{c} = excluded.{c}" for c in
    ("status", "filled", "average_price", "fee", "exchange_order_id", "reason", "updated_ms")
)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _opt_dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def config_to_json(config: EngineConfig) -> str:
    risk = config.risk
    return json.dumps({
        "strategy": config.strategy,
        "symbols": list(config.symbols),
        "params": dict(config.params),
        "mode": config.mode.value,
        "interval_s": config.interval_s,
        "risk": {
            "max_order_notional": _dec(risk.max_order_notional),
            "max_position_notional": _dec(risk.max_position_notional),
            "max_open_orders": risk.max_open_orders,
            "max_orders_per_minute": risk.max_orders_per_minute,
            "daily_loss_limit": _dec(risk.daily_loss_limit),
        },
        "paper": {
            "balances": [[asset, str(amount)] for asset, amount in config.paper.balances],
            "slippage_bps": str(config.paper.slippage_bps),
        },
        "leverage": dict(config.leverage),
        "on_position_mismatch": config.on_position_mismatch.value,
    }, separators=(",", ":"), sort_keys=True)


def config_from_json(text: str) -> EngineConfig:
    raw = json.loads(text)
    risk, paper = raw["risk"], raw["paper"]
    return EngineConfig(
        strategy=str(raw["strategy"]),
        symbols=tuple(str(s) for s in raw["symbols"]),
        params={str(k): str(v) for k, v in raw["params"].items()},
        mode=TradingMode(raw["mode"]),
        interval_s=float(raw["interval_s"]),
        risk=RiskLimits(
            max_order_notional=_opt_dec(risk["max_order_notional"]),
            max_position_notional=_opt_dec(risk["max_position_notional"]),
            max_open_orders=risk["max_open_orders"],
            max_orders_per_minute=risk["max_orders_per_minute"],
            daily_loss_limit=_opt_dec(risk["daily_loss_limit"]),
        ),
        paper=PaperSettings(
            balances=tuple((str(a), Decimal(v)) for a, v in paper["balances"]),
            slippage_bps=Decimal(paper["slippage_bps"]),
        ),
        # configs stored before perpetuals had neither key
        leverage={str(k): int(v) for k, v in raw.get("leverage", {}).items()},
        on_position_mismatch=MismatchPolicy(raw.get("on_position_mismatch", "stop")),
    )


def _order_params(connection_id: str, o: Order) -> tuple[Any, ...]:
    return (connection_id, o.client_order_id, o.symbol, o.side.value, o.type.value,
            str(o.amount), _dec(o.price), o.tag, o.cycle, o.status.value, str(o.filled),
            _dec(o.average_price), str(o.fee), o.exchange_order_id, o.reason,
            o.created_ms, o.updated_ms, int(o.reduce_only), o.position_side.value)


def _order(row: Row) -> Order:
    return Order(
        client_order_id=row[0], symbol=row[1], side=Side(row[2]), type=OrderType(row[3]),
        amount=Decimal(row[4]), price=_opt_dec(row[5]), tag=row[6], cycle=int(row[7]),
        status=OrderStatus(row[8]), filled=Decimal(row[9]), average_price=_opt_dec(row[10]),
        fee=Decimal(row[11]), exchange_order_id=row[12], reason=row[13],
        created_ms=int(row[14]), updated_ms=int(row[15]), reduce_only=bool(row[16]),
        position_side=PositionSide(row[17]))


def _fill(row: Row) -> Fill:
    return Fill(row[0], row[1], row[2], Side(row[3]), Decimal(row[4]), Decimal(row[5]),
                Decimal(row[6]), row[7], int(row[8]), bool(row[9]), PositionSide(row[10]))


def _funding(row: Row) -> FundingPayment:
    return FundingPayment(row[0], row[1], Decimal(row[2]), row[3], int(row[4]),
                          PaymentKind(row[5]))


class SqlEngineStore:
    """Implements `ctsd.engine.store_ports.EngineStore` on the daemon's `Database`."""

    def __init__(self, db: Database, fleet: SqlFleetStore | None = None) -> None:
        self._db = db
        self._fleet = fleet or SqlFleetStore(db)

    def _fenced(self, tx: Transaction, connection_id: str, fence: Fence | None) -> None:
        """In a unit, before its statements: `LeaseLost` unless the fence holds."""
        if fence is not None:
            self._fleet.fence(tx, connection_id, fence)

    async def load_engines(self) -> list[EngineRecord]:
        return await self._records("", ())

    async def load_engine(self, connection_id: str) -> EngineRecord | None:
        found = await self._records("WHERE connection_id = ? ", (connection_id,))
        return found[0] if found else None

    async def _records(self, where: str, params: tuple[str, ...]) -> list[EngineRecord]:
        rows = await self._db.fetch_all(
            "SELECT connection_id, engine_id, config, desired, cycle, last_error "
            f"FROM engines {where}ORDER BY connection_id", params)
        return self._db.quarantine.decoded("engines", rows, lambda r: EngineRecord(
            str(r[0]), str(r[1]), config_from_json(r[2]), DesiredState(r[3]), int(r[4]),
            str(r[5])))

    async def create_engine(self, record: EngineRecord) -> None:
        params = (record.connection_id, record.engine_id, config_to_json(record.config),
                  record.desired.value, record.cycle, record.last_error, _now_us())
        await self._db.write(lambda tx: tx.execute(
            "INSERT INTO engines (connection_id, engine_id, config, desired, "
            "cycle, last_error, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (connection_id) DO UPDATE SET engine_id = excluded.engine_id, "
            "config = excluded.config, desired = excluded.desired, cycle = excluded.cycle, "
            "last_error = excluded.last_error, updated_us = excluded.updated_us", params))

    async def set_desired(
        self, connection_id: str, desired: DesiredState, last_error: str,
        fence: Fence | None = None,
    ) -> None:
        params = (desired.value, last_error, _now_us(), connection_id)

        def unit(tx: Transaction) -> None:
            self._fenced(tx, connection_id, fence)
            tx.execute("UPDATE engines SET desired = ?, last_error = ?, updated_us = ? "
                       "WHERE connection_id = ?", params)

        await self._db.write(unit)

    async def save_cycle(self, connection_id: str, cycle: int,
                         fence: Fence | None = None) -> None:
        """The larger of the two keeps the cycle monotonic even if a late writer lands after
        a newer one."""
        params = (cycle, cycle, _now_us(), connection_id)

        def unit(tx: Transaction) -> None:
            self._fenced(tx, connection_id, fence)
            tx.execute("UPDATE engines SET cycle = CASE WHEN cycle > ? THEN cycle ELSE ? END, "
                       "updated_us = ? WHERE connection_id = ?", params)

        await self._db.write(unit)

    async def save_execution(self, connection_id: str, execution: Execution,
                             fence: Fence | None = None) -> None:
        await self.save_executions(connection_id, (execution,), fence)

    async def save_executions(self, connection_id: str, executions: Sequence[Execution],
                              fence: Fence | None = None) -> None:
        token = fence.token if fence is not None else 0
        steps = [((*_order_params(connection_id, e.order), token),
                  e.order.cycle if e.order.status is OrderStatus.PENDING else None,
                  [(connection_id, f.trade_id, f.client_order_id, f.symbol, f.side.value,
                    str(f.amount), str(f.price), str(f.fee), f.fee_asset, f.timestamp_ms,
                    int(f.maker), f.position_side.value) for f in e.fills])
                 for e in executions]

        def unit(tx: Transaction) -> None:
            self._fenced(tx, connection_id, fence)
            for order, cycle, fills in steps:
                tx.execute(
                    f"INSERT INTO engine_orders (connection_id, {_ORDER_COLUMNS}, fence) "
                    f"VALUES ({', '.join('?' * 20)}) "
                    f"ON CONFLICT (connection_id, client_order_id) DO UPDATE SET "
                    f"{_UPDATED_ON_CONFLICT}", order)
                if cycle is not None:  # the cycle in its client order id, durable with it
                    tx.execute("UPDATE engines SET cycle = CASE WHEN cycle > ? THEN cycle "
                               "ELSE ? END WHERE connection_id = ?",
                               (cycle, cycle, connection_id))
                if fills:
                    tx.executemany(
                        f"INSERT INTO engine_fills (connection_id, {_FILL_COLUMNS}) "
                        f"VALUES ({', '.join('?' * 12)}) "
                        "ON CONFLICT (connection_id, trade_id) DO NOTHING", fills)

        await self._db.write(unit)

    async def save_funding(self, connection_id: str, payments: tuple[FundingPayment, ...],
                           fence: Fence | None = None) -> None:
        rows = [(connection_id, p.funding_id, p.symbol, str(p.amount), p.asset, p.timestamp_ms,
                 p.kind.value) for p in payments]

        def unit(tx: Transaction) -> None:
            self._fenced(tx, connection_id, fence)
            tx.executemany(
                f"INSERT INTO engine_funding (connection_id, {_FUNDING_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (connection_id, funding_id) DO NOTHING", rows)

        await self._db.write(unit)

    async def list_funding(self, connection_id: str) -> list[FundingPayment]:
        rows = await self._db.fetch_all(
            f"SELECT seq, {_FUNDING_COLUMNS} FROM engine_funding WHERE connection_id = ? "
            "ORDER BY seq", (connection_id,))
        # Strict like fills: the ledger rebuilt without a payment would misstate the PnL.
        return self._db.quarantine.decoded("engine_funding", rows, lambda r: _funding(r[1:]),
                                           key=_seq, strict=True)

    async def list_orders(
        self, connection_id: str, *, open_only: bool = False
    ) -> list[Order]:
        where = "connection_id = ?"
        params: list[Any] = [connection_id]
        if open_only:
            where += " AND status IN (?, ?)"
            params += [OrderStatus.PENDING.value, OrderStatus.OPEN.value]
        rows = await self._db.fetch_all(
            f"SELECT seq, {_ORDER_COLUMNS} FROM engine_orders WHERE {where} ORDER BY seq",
            params)
        # Strict: an engine must not reconcile against a picture with a row missing.
        return self._db.quarantine.decoded("engine_orders", rows, lambda r: _order(r[1:]),
                                           key=_seq, strict=True)

    async def page_orders(self, connection_id: str, *, open_only: bool, after: int,
                          limit: int) -> Page[Order]:
        where, params = "connection_id = ? AND seq > ?", [connection_id, after]
        if open_only:
            where += " AND status IN (?, ?)"
            params += [OrderStatus.PENDING.value, OrderStatus.OPEN.value]
        rows = await self._db.fetch_all(
            f"SELECT seq, {_ORDER_COLUMNS} FROM engine_orders WHERE {where} "
            "ORDER BY seq LIMIT ?", [*params, limit + 1])
        return self._page("engine_orders", rows, _order, limit)

    async def page_fills(self, connection_id: str, *, after: int, limit: int) -> Page[Fill]:
        rows = await self._db.fetch_all(
            f"SELECT seq, {_FILL_COLUMNS} FROM engine_fills "
            "WHERE connection_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (connection_id, after, limit + 1))
        return self._page("engine_fills", rows, _fill, limit)

    async def count_orders(self, connection_id: str, id_prefix: str) -> int:
        if not id_prefix.isalnum():  # the LIKE pattern below takes it literally
            raise ValueError(f"not an order id prefix: {id_prefix!r}")
        rows = await self._db.fetch_all(
            "SELECT COUNT(*) FROM engine_orders WHERE connection_id = ? "
            "AND client_order_id LIKE ?", (connection_id, f"{id_prefix}%"))
        return int(rows[0][0])

    async def list_fills(self, connection_id: str) -> list[Fill]:
        rows = await self._db.fetch_all(
            f"SELECT seq, {_FILL_COLUMNS} FROM engine_fills WHERE connection_id = ? "
            "ORDER BY seq", (connection_id,))
        return self._db.quarantine.decoded("engine_fills", rows, lambda r: _fill(r[1:]),
                                           key=_seq, strict=True)

    def _page(self, table: str, rows: list[Row], decode: Callable[[Row], T],
              limit: int) -> Page[T]:
        """`limit + 1` rows were asked for: one more than the page says there is a next
        one. Positions come from the rows as stored, so a damaged row (quarantined, not
        shown) neither ends the paging early nor shifts it."""
        shown = rows[:limit]
        next_after = int(shown[-1][0]) if len(rows) > limit else None
        items = self._db.quarantine.decoded(table, shown, lambda r: decode(r[1:]), key=_seq)
        return Page(tuple(items), next_after)


def _seq(row: Row) -> str:
    return f"seq {row[0]}"


def _now_us() -> int:
    return time.time_ns() // 1000


async def audit_engine_rows(db: Database) -> None:
    """Every engine, order, fill and payment row decoded once more, so a damaged one is
    quarantined (VerifyStartup) before an engine trips over it."""
    await SqlEngineStore(db).load_engines()
    orders = await db.fetch_all(f"SELECT seq, {_ORDER_COLUMNS} FROM engine_orders")
    await db.quarantine.audit("engine_orders", orders, lambda r: _order(r[1:]), key=_seq)
    fills = await db.fetch_all(f"SELECT seq, {_FILL_COLUMNS} FROM engine_fills")
    await db.quarantine.audit("engine_fills", fills, lambda r: _fill(r[1:]), key=_seq)
    payments = await db.fetch_all(f"SELECT seq, {_FUNDING_COLUMNS} FROM engine_funding")
    await db.quarantine.audit("engine_funding", payments, lambda r: _funding(r[1:]), key=_seq)
