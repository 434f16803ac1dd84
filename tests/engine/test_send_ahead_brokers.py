"""Orders sent ahead of their record (`ctsd.engine.sending`) on every LIVE broker: each
fill, each trade's fee and each position change counted exactly once.

Every LIVE broker sends ahead (spot, margin and perpetuals; options use the spot
broker). An order sent ahead reaches the engine's books by one of three paths: the
venue's answer, the private stream (ccxt.pro's cache, which after a resubscribe
holds only the newest trades), and, after a crash inside the send-ahead window, the
session start's recovery by its id (`ctsd.engine.rounds`). Trades carry their own
fee as Binance reports them (`ExchangeOrder.trades`). Whatever the path: the store
holds each trade once, the ledger's fees are the venue's, the perpetuals position
check finds the ledger equal to the venue's position without a second look, and a
margin account's own trades are never taken for outside ones.
In memory, one cycle at a time; the simulator runs the same paths in
`tests/marketdata/test_partial_fill_fees.py` and `tests/robustness/test_order_ahead_crash.py`.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.engine.brokers.base import Broker
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.brokers.live_margin import LiveMarginBroker
from ctsd.engine.brokers.live_perp import LivePerpBroker
from ctsd.engine.config import EngineConfig, TradingMode, validate_config
from ctsd.engine.engine import Engine
from ctsd.engine.margin import InterestCharge
from ctsd.engine.order_ports import ExchangeOrder, OrderTrade
from ctsd.engine.orders import OrderStatus, client_order_id
from ctsd.engine.perp_session import PerpSession
from ctsd.engine.perpetual import AccountModes, AppliedSetting, MarginMode, VenueTrade
from ctsd.engine.store_ports import DesiredState, EngineRecord
from ctsd.strategies.model import Balance, OrderType, PositionSide, Side
from tests.engine.fakes import FakeExchange, MemoryStore, ScriptedMarket
from tests.engine.test_position_check_stream import LaggingStream, PerpVenue
from tests.engine.world import REGISTRY, SYMBOL, grid, sma
from tests.support.virtual_clock import VirtualClock

D = Decimal
KINDS = ("spot", "margin", "perp")
BALANCES = (Balance("USDT", D(10_000), D(10_000)), Balance("BTC", D(100), D(100)))
LOST = client_order_id("e1e1", 3, 0)
"""Round 3 reserved, none of its orders recorded: the one a crash can have lost."""


class TradingVenue(FakeExchange):
    """Fills in numbered trades, each with its own fee (Binance): an order carries every
    trade so far; `stream` gets what ccxt.pro's cache would (only the newest trade, as
    after a resubscribe, and the fee they sum to). With `take_half`, an order arriving
    fills half at once."""

    def __init__(self, store: MemoryStore, take_half: bool = False) -> None:
        super().__init__(balances=BALANCES)
        self.store = store
        self.take_half = take_half
        self.stream = LaggingStream()
        self.recorded_before_sent: list[bool] = []
        self.fees = D(0)

    async def create_order(self, symbol: str, type: OrderType, side: Side, amount: Decimal,
                           price: Decimal | None, client_order_id: str, *,
                           reduce_only: bool = False,
                           position_side: PositionSide = PositionSide.BOTH) -> ExchangeOrder:
        self.recorded_before_sent.append(client_order_id in self.store.orders.get("c1", {}))
        await super().create_order(symbol, type, side, amount, price, client_order_id,
                                   reduce_only=reduce_only, position_side=position_side)
        if self.take_half:
            self.trade(client_order_id, amount / 2, streamed=False)
        self.stream.send(self.orders[client_order_id])  # its echo, with its trades so far
        return self.orders[client_order_id]

    def trade(self, cid: str, amount: Decimal, *, streamed: bool = True) -> None:
        order = self.orders[cid]
        known = order.trades or ()
        fee = D("0.01") * (len(known) + 1)
        self.fill(cid, amount, order.price or D(10), fee)
        new = OrderTrade(f"{order.exchange_order_id}-{len(known) + 1}", amount, fee, "USDT")
        self.orders[cid] = replace(self.orders[cid], trades=(*known, new))
        self.fees += fee
        if streamed:
            self.stream.send(replace(self.orders[cid], trades=(new,), fee=fee))

    def own_trades(self, at_ms: int) -> tuple[VenueTrade, ...]:
        return tuple(VenueTrade(f"{o.exchange_order_id}-{i}", o.exchange_order_id, o.symbol,
                                o.side, t.amount, o.price or D(10), t.fee, "USDT", at_ms)
                     for o in self.orders.values() for i, t in enumerate(o.trades or (), 1))


class MarginAccount:
    """The margin account's fill history: the venue's trades of the engine's own orders,
    stamped as the venue does, after the session began (so the broker reads them)."""

    def __init__(self, venue: TradingVenue, clock: VirtualClock) -> None:
        self.venue, self.clock = venue, clock

    async def prepare(self, symbols: tuple[str, ...], leverage: object,
                      ) -> tuple[AppliedSetting, ...]:
        return ()

    async def interest(self, symbols: tuple[str, ...], since_ms: int,
                       ) -> tuple[InterestCharge, ...]:
        return ()

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        return self.venue.own_trades(self.clock.now_ms() + 1)

    async def liquidation_orders(self, symbol: str, since_ms: int) -> frozenset[str] | None:
        return frozenset()

    async def close_short(self, symbol: str, client_order_id: str) -> bool:
        return False


class Rig:
    def __init__(self, kind: str, config: EngineConfig, cycle: int = 0,
                 take_half: bool = False) -> None:
        self.kind = kind
        self.clock = VirtualClock()
        self.store = MemoryStore()
        self.venue = TradingVenue(self.store, take_half)
        self.perp = PerpVenue(self.venue)
        record = EngineRecord("c1", "e1e1", config, DesiredState.RUNNING, cycle=cycle)
        self.store.engines["c1"] = record
        symbols, stream = config.symbols, self.venue.stream
        session = None
        broker: Broker
        if kind == "perp":
            session = PerpSession(config, AccountModes(MarginMode.CROSS, hedge=False),
                                  self.perp, self.perp, "c1")
            broker = LivePerpBroker(self.venue, self.perp, symbols, self.clock,
                                    check_before_place=False, updates=stream)
        elif kind == "margin":
            broker = LiveMarginBroker(self.venue, MarginAccount(self.venue, self.clock),
                                      symbols, self.clock, poll_s=0, check_before_place=False,
                                      updates=stream)
        else:
            broker = LiveBroker(self.venue, symbols, self.clock, check_before_place=False,
                                updates=stream)
        self.broker = broker
        self.engine = Engine(record, validate_config(config, REGISTRY), broker,
                             ScriptedMarket(self.clock, {SYMBOL: [D("10.2")] * 40}),
                             self.store, self.clock, lambda status: None, perp=session)

    async def cycles(self, count: int) -> None:
        """Each after the stream delivered what the venue sent, within the broker's wait
        for an order's echo (`LiveBroker` echo_s)."""
        for _ in range(count):
            self.venue.stream.deliver()
            await self.engine.run_cycle()
            await self.clock.advance(4)

    def check_counted_once(self) -> None:
        """Every trade in the store once, the ledger's fees the venue's, the position the
        venue's and no difference found on the way."""
        fills = list(self.store.fills["c1"].values())
        for cid, order in self.venue.orders.items():
            assert sum(f.amount for f in fills if f.client_order_id == cid) == order.filled
            assert self.store.orders["c1"][cid].status is order.status, cid
        status = self.engine.status
        assert status.fees == sum(f.fee for f in fills) == self.venue.fees
        assert status.position_differences == 0
        if self.kind == "perp":
            assert [p.amount for p in status.positions] == [self.perp.net()]


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
async def test_orders_sent_ahead_are_booked_once_by_answer_and_stream(kind: str) -> None:
    """The grid's orders fill half on arrival (the answer carries that trade) and the
    rest later, reported by the stream's fresh cache alone, then read again over REST."""
    rig = Rig(kind, grid(mode=TradingMode.LIVE), take_half=True)
    await rig.engine.reconcile()
    for _ in range(3):  # the buys fill, then the sells the inventory allows, and so on
        await rig.cycles(1)
        for cid, order in rig.venue.orders.items():
            if order.status is OrderStatus.OPEN:
                rig.venue.trade(cid, order.amount - order.filled)
        await rig.cycles(6)  # the stream's updates, and past 60 s a REST reconciliation
    sent = rig.venue.recorded_before_sent
    assert len(sent) >= 4 and not any(sent)  # every order left before its record
    assert rig.perp.reads <= 1 + 21  # one positions read a cycle: never a second look
    assert isinstance(rig.broker, LiveBroker) and rig.broker.reconciliations == 1
    rig.check_counted_once()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("outcome", ["filled", "partly filled"])
async def test_the_order_a_crash_left_unrecorded_is_counted_once(kind: str,
                                                                 outcome: str) -> None:
    """The daemon died as `LOST` reached the venue, which then filled it (in full, or in
    part and it rests); a new session finds it by its id; the stream's cache later
    repeats its trades."""
    rig = Rig(kind, sma(mode=TradingMode.LIVE), cycle=3)
    await FakeExchange.create_order(rig.venue, SYMBOL, OrderType.LIMIT, Side.BUY, D(6),
                                    D(10), LOST)
    rig.venue.trade(LOST, D(2), streamed=False)
    rig.venue.trade(LOST, D(4) if outcome == "filled" else D(1), streamed=False)
    await rig.engine.reconcile()
    lost = rig.venue.orders[LOST]
    assert lost.status is (OrderStatus.FILLED if outcome == "filled" else OrderStatus.CANCELED)
    rig.venue.stream.send(lost)  # ccxt.pro's cache, whole, after the restart
    await rig.cycles(16)  # past 60 s: a REST reconciliation (margin: the account's fills)
    assert isinstance(rig.broker, LiveBroker) and rig.broker.reconciliations == 1
    assert rig.store.engines["c1"].cycle >= 4  # the session's own round
    rig.check_counted_once()
