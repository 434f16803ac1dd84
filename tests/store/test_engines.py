"""SqlEngineStore on a real SQLite file: records survive reopening, orders upsert by client
order id, fills deduplicate by trade id, and the config round-trips exactly."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from ctsd.engine.config import EngineConfig, PaperSettings, RiskLimits, TradingMode
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import FundingPayment, MismatchPolicy
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.store.database import Database
from ctsd.store.engines import SqlEngineStore, config_from_json, config_to_json
from ctsd.strategies.model import OrderType, PositionSide, Side

D = Decimal
CONFIG = EngineConfig(
    "sma_cross", ("BTC/USDT", "ETH/USDT"), {"fast": "5", "slow": "20"}, TradingMode.LIVE, 2.5,
    RiskLimits(max_order_notional=D("100.5"), max_open_orders=None, daily_loss_limit=D(50)),
    PaperSettings(balances=(("USDT", D("1000.25")), ("BTC", D("0.1"))), slippage_bps=D(3)))


def order(cid: str, status: OrderStatus, filled: str = "0") -> Order:
    return Order(cid, "BTC/USDT", Side.BUY, OrderType.LIMIT, D("0.5"), D("100.1"), "t", 3,
                 status, D(filled), D("100.1") if filled != "0" else None, D("0.01"),
                 "x-1", "", 10, 20)


def fill(trade_id: str, cid: str) -> Fill:
    return Fill(trade_id, cid, "BTC/USDT", Side.BUY, D("0.25"), D("100.1"), D("0.005"),
                "USDT", 15, maker=True)


def test_config_round_trips_exactly() -> None:
    assert config_from_json(config_to_json(CONFIG)) == CONFIG
    assert config_from_json(config_to_json(EngineConfig("grid", ("X/Y",)))) == EngineConfig(
        "grid", ("X/Y",))


@pytest.mark.asyncio
async def test_records_survive_reopening(tmp_path: Path) -> None:
    db = await Database.open(tmp_path)
    store = SqlEngineStore(db)
    await store.create_engine(EngineRecord("a", "e1", CONFIG, DesiredState.RUNNING))
    await store.save_cycle("a", 7)
    await store.save_cycle("a", 5)  # a late writer never moves the cycle back
    await store.set_desired("a", DesiredState.STOPPED, "boom")
    await db.close()
    db = await Database.open(tmp_path)
    try:
        records = await SqlEngineStore(db).load_engines()
    finally:
        await db.close()
    assert records == [EngineRecord("a", "e1", CONFIG, DesiredState.STOPPED, 7, "boom")]


@pytest.mark.asyncio
async def test_an_explicit_start_replaces_the_record(db: Database) -> None:
    store = SqlEngineStore(db)
    await store.create_engine(EngineRecord("a", "e1", CONFIG, DesiredState.STOPPED, 9, "x"))
    await store.create_engine(EngineRecord("a", "e2", CONFIG, DesiredState.RUNNING))
    await store.create_engine(EngineRecord("b", "e3", CONFIG, DesiredState.STOPPED))
    assert await store.load_engines() == [EngineRecord("a", "e2", CONFIG, DesiredState.RUNNING),
                                          EngineRecord("b", "e3", CONFIG, DesiredState.STOPPED)]
    # one connection's record alone (what a start reads)
    assert await store.load_engine("a") == EngineRecord("a", "e2", CONFIG, DesiredState.RUNNING)
    assert await store.load_engine("c") is None


@pytest.mark.asyncio
async def test_orders_upsert_by_client_order_id_and_fills_deduplicate(db: Database) -> None:
    store = SqlEngineStore(db)
    await store.save_execution("a", Execution(order("c1", OrderStatus.PENDING)))
    await store.save_execution("a", Execution(order("c2", OrderStatus.OPEN)))
    partly = Execution(order("c1", OrderStatus.OPEN, "0.25"), (fill("c1-1", "c1"),))
    await store.save_execution("a", partly)
    await store.save_execution("a", partly)  # a retried write changes nothing
    await store.save_execution("b", Execution(order("c1", OrderStatus.OPEN)))
    orders = await store.list_orders("a")
    assert [o.client_order_id for o in orders] == ["c1", "c2"]  # oldest first, kept on update
    assert orders[0] == order("c1", OrderStatus.OPEN, "0.25")
    assert await store.list_fills("a") == [fill("c1-1", "c1")]
    await store.save_execution("a", Execution(order("c2", OrderStatus.FILLED, "0.5")))
    open_orders = await store.list_orders("a", open_only=True)
    assert [o.client_order_id for o in open_orders] == ["c1"]
    assert len(await store.list_orders("b")) == 1


@pytest.mark.asyncio
async def test_orders_are_counted_by_client_order_id_prefix(db: Database) -> None:
    """What `ctsd.engine.rounds` asks after a crash: how many of one round's orders the
    store holds (one connection; ids of other rounds and engines not counted)."""
    store = SqlEngineStore(db)
    for cid in ("ctse1e1c1i0", "ctse1e1c1i1", "ctse1e1c10i0", "ctse2e2c1i0"):
        await store.save_execution("a", Execution(order(cid, OrderStatus.PENDING)))
    await store.save_execution("b", Execution(order("ctse1e1c1i2", OrderStatus.OPEN)))
    assert await store.count_orders("a", "ctse1e1c1i") == 2
    assert await store.count_orders("a", "ctse1e1c2i") == 0
    with pytest.raises(ValueError):
        await store.count_orders("a", "ctse1e1c1_%")


@pytest.mark.asyncio
async def test_an_execution_is_written_all_or_nothing(db: Database) -> None:
    store = SqlEngineStore(db)
    broken = replace(fill("t2", "c1"), fee_asset=None)  # type: ignore[arg-type]  # NOT NULL
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        await store.save_execution(
            "a", Execution(order("c1", OrderStatus.OPEN), (fill("t1", "c1"), broken)))
    assert await store.list_orders("a") == []
    assert await store.list_fills("a") == []


@pytest.mark.asyncio
async def test_a_pending_order_stores_its_cycle_with_it(tmp_path: Path) -> None:
    """The write ahead of a placement also raises the engine's cycle (never lowers it):
    one transaction makes both durable before the order is sent."""
    db = await Database.open(tmp_path)
    try:
        store = SqlEngineStore(db)
        await store.create_engine(EngineRecord("a", "e1", CONFIG, DesiredState.RUNNING, cycle=1))
        await store.save_execution("a", Execution(order("c1", OrderStatus.PENDING)))  # cycle 3
        assert [r.cycle for r in await store.load_engines()] == [3]
        lower = replace(order("c0", OrderStatus.PENDING), cycle=2)
        await store.save_execution("a", Execution(lower))
        await store.save_execution("a", Execution(replace(order("c1", OrderStatus.OPEN),
                                                          cycle=9)))  # not pending: no change
        assert [r.cycle for r in await store.load_engines()] == [3]
    finally:
        await db.close()


def test_a_perpetuals_config_round_trips_and_an_older_one_reads_with_defaults() -> None:
    perps = replace(CONFIG, symbols=("BTC/USDT:USDT",), leverage={"BTC/USDT:USDT": 7},
                    on_position_mismatch=MismatchPolicy.ADOPT)
    assert config_from_json(config_to_json(perps)) == perps
    older = json.loads(config_to_json(CONFIG))
    del older["leverage"], older["on_position_mismatch"]  # stored before perpetuals
    assert config_from_json(json.dumps(older)) == CONFIG


@pytest.mark.asyncio
async def test_hedge_legs_and_funding_payments_are_stored_once(tmp_path: Path) -> None:
    db = await Database.open(tmp_path)
    try:
        store = SqlEngineStore(db)
        short = replace(order("c1", OrderStatus.FILLED, "0.5"), side=Side.SELL,
                        reduce_only=True, position_side=PositionSide.SHORT)
        leg = replace(fill("t1", "c1"), side=Side.SELL, position_side=PositionSide.SHORT)
        await store.save_execution("a", Execution(short, (leg,)))
        assert await store.list_orders("a") == [short]
        assert await store.list_fills("a") == [leg]
        paid = FundingPayment("f-1", "BTC/USDT:USDT", D("-0.125"), "USDT", 1_000)
        await store.save_funding("a", (paid,))
        await store.save_funding("a", (paid, replace(paid, funding_id="f-2", amount=D(1))))
        assert [p.funding_id for p in await store.list_funding("a")] == ["f-1", "f-2"]
        assert (await store.list_funding("a"))[0] == paid
        assert await store.list_funding("b") == []
    finally:
        await db.close()
