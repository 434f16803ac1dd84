"""The engine's order client on every venue, by client order id, over real ccxt and the simulator.

What LIVE trading rests on: an order placed under a client id is found by that
id, a retried placement under the same id never makes a second order, a
restarted broker reconciles what is open, and a refusal is a ClientError.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.clock import SystemClock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.orders import Order, OrderRequest, OrderStatus, client_order_id
from ctsd.errors import (
    ClientError,
    NotFound,
)
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.model import OrderType, Side
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.support.exchange_clients import MARKETS, ClientMaker, Market

pytestmark = pytest.mark.asyncio
BY_MARKET = pytest.mark.parametrize("market", MARKETS, ids=[m.id for m in MARKETS])


async def orders_for(make_client: ClientMaker, market: Market) -> ExchangeOrders:
    return ExchangeOrders(await make_client(market.exchange, market.api_type, lane=Lane.ORDER))


async def below_market(make_client: ClientMaker, market: Market) -> Decimal:
    """A limit price 10 % under the last trade: the order rests open."""
    client = await make_client(market.exchange, market.api_type, credentials=None)
    last = (await client.fetch_ticker(market.symbol)).last
    return client.price_to_precision(market.symbol, last * Decimal("0.9"))


@BY_MARKET
async def test_an_order_placed_under_a_client_id_is_found_and_canceled_by_it(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    orders = await orders_for(make_client, market)
    price, amount, cid = await below_market(make_client, market), Decimal(market.amount), (
        client_order_id("abcd", 1, 0))
    placed = await orders.create_order(market.symbol, OrderType.LIMIT, Side.BUY, amount,
                                       price, cid)
    assert (placed.client_order_id, placed.status) == (cid, OrderStatus.OPEN)
    found = await orders.fetch_order(market.symbol, cid)
    assert found is not None
    assert (found.exchange_order_id, found.status, found.side, found.type) == (
        placed.exchange_order_id, OrderStatus.OPEN, Side.BUY, OrderType.LIMIT)
    assert (found.amount, found.price, found.filled) == (amount, price, Decimal(0))
    assert [o.client_order_id for o in await orders.fetch_open_orders(market.symbol)] == [cid]
    canceled = await orders.cancel_order(market.symbol, cid)
    assert (canceled.client_order_id, canceled.exchange_order_id, canceled.status) == (
        cid, placed.exchange_order_id, OrderStatus.CANCELED)
    assert (canceled.amount, canceled.filled, canceled.side) == (amount, Decimal(0), Side.BUY)
    with pytest.raises(NotFound):
        await orders.cancel_order(market.symbol, cid)
    assert await orders.fetch_order(market.symbol, client_order_id("abcd", 1, 9)) is None
    assert await orders.fetch_open_orders(market.symbol) == ()


@BY_MARKET
async def test_a_retried_placement_under_the_same_client_id_places_nothing_more(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    orders = await orders_for(make_client, market)
    price, amount, cid = await below_market(make_client, market), Decimal(market.amount), (
        client_order_id("abcd", 2, 0))
    first = await orders.create_order(market.symbol, OrderType.LIMIT, Side.BUY, amount,
                                      price, cid)
    again = await orders.create_order(market.symbol, OrderType.LIMIT, Side.BUY, amount,
                                      price, cid)
    assert again.exchange_order_id == first.exchange_order_id
    assert again.status is OrderStatus.OPEN
    assert len(await orders.fetch_open_orders(market.symbol)) == 1


@BY_MARKET
async def test_a_filled_order_reports_its_cumulative_fill_and_fee(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    orders = await orders_for(make_client, market)
    cid, amount = client_order_id("abcd", 3, 0), Decimal(market.amount)
    await orders.create_order(market.symbol, OrderType.MARKET, Side.BUY, amount, None, cid)
    filled = await orders.fetch_order(market.symbol, cid)
    assert filled is not None
    assert (filled.status, filled.filled) == (OrderStatus.FILLED, amount)
    assert filled.average is not None and filled.average > 0
    # Binance's order query carries no commission: it comes from the order's own fills.
    # Binance, Bybit and OKX charge a spot buy's fee in the base asset; Kraken and swaps USDT.
    base_fee = market.api_type is ApiType.SPOT and market.exchange != "kraken"
    assert filled.fee > 0 and filled.fee_asset == ("BTC" if base_fee else "USDT")
    assert await orders.fetch_open_orders(market.symbol) == ()
    balances = {b.asset: b for b in await orders.fetch_balance()}
    assert balances["USDT"].total > 0


@BY_MARKET
async def test_insufficient_funds_is_a_client_error_and_places_nothing(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    orders = await orders_for(make_client, market)
    cid = client_order_id("abcd", 4, 0)
    with pytest.raises(ClientError) as refused:
        await orders.create_order(market.symbol, OrderType.MARKET, Side.BUY,
                                  Decimal(market.amount) * 100_000, None, cid)
    assert not isinstance(refused.value, NotFound)
    assert refused.value.message.startswith("insufficient funds: ")
    assert await orders.fetch_order(market.symbol, cid) is None


CREATE_PATHS = {
    "binance-spot": "/api/v3/order", "binance-perpetual_futures": "/fapi/v1/order",
    "bybit-spot": "/v5/order/create", "bybit-perpetual_futures": "/v5/order/create",
    "okx-spot": "/api/v5/trade/batch-orders",
    "okx-perpetual_futures": "/api/v5/trade/batch-orders", "kraken-spot": "/0/private/AddOrder",
}


@BY_MARKET
async def test_a_placement_whose_answer_is_lost_is_adopted_not_repeated(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    """The venue takes the order but its answer arrives cut in half: the broker may not know
    whether it landed, so it asks by the client id before sending again, and adopts it."""
    price, amount = await below_market(make_client, market), Decimal(market.amount)
    orders = await orders_for(make_client, market)
    broker = LiveBroker(orders, [market.symbol], SystemClock(), check_before_place=False)
    server.sim.add_fault(FaultSpec(FaultKind.TRUNCATED_JSON, venue=market.exchange,
                                   path_prefix=CREATE_PATHS[market.id]))
    request = OrderRequest(client_order_id("abcd", 6, 0), market.symbol, Side.BUY,
                           OrderType.LIMIT, amount, price, "grid", 6)
    placed = await broker.place(request)
    assert placed.order.status is OrderStatus.OPEN and placed.order.exchange_order_id
    assert not server.sim.faults.pending()  # the fault did hit the placement
    listed = await orders.fetch_open_orders(market.symbol)
    assert [o.client_order_id for o in listed] == [request.client_order_id]


@BY_MARKET
async def test_a_restarted_broker_reconciles_the_open_orders_it_placed(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    """The daemon died after sending two orders: one it recorded as PENDING, one it never
    recorded. A new broker, on a new client, resolves the first and adopts the second."""
    price, amount = await below_market(make_client, market), Decimal(market.amount)
    before = LiveBroker(await orders_for(make_client, market), [market.symbol], SystemClock())
    requests = [OrderRequest(client_order_id("abcd", 5, i), market.symbol, Side.BUY,
                             OrderType.LIMIT, amount, price, "grid", 5) for i in range(2)]
    for request in requests:
        assert (await before.place(request)).order.status is OrderStatus.OPEN
    recorded = Order.pending(requests[0], 0)

    after = LiveBroker(await orders_for(make_client, market), [market.symbol], SystemClock())
    changed = await after.reconcile([recorded], [])
    assert {e.order.client_order_id: e.order.status for e in changed} == {
        r.client_order_id: OrderStatus.OPEN for r in requests}
    assert sorted(o.client_order_id for o in after.open_orders()) == [
        r.client_order_id for r in requests]
    assert all(o.exchange_order_id for o in after.open_orders())
    assert any(b.asset == "USDT" for b in after.balances())


@BY_MARKET
async def test_orders_kept_on_a_market_the_venue_no_longer_lists_stop_no_start(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    """A connection's stored orders, and the order its earlier engine may have sent ahead,
    can be on a market the venue has since delisted: ccxt and the venue answer a lookup
    there as a bad symbol (here for one never listed). Reconciliation finishes the stored
    ones naming why, and the recovery looks on the earlier engine's other symbols, where
    it finds its order: neither refuses, or no engine could start on the connection."""
    price, amount = await below_market(make_client, market), Decimal(market.amount)
    request = OrderRequest(client_order_id("abcd", 7, 0), market.symbol, Side.BUY,
                           OrderType.LIMIT, amount, price, "grid", 7)
    before = LiveBroker(await orders_for(make_client, market), [market.symbol], SystemClock())
    assert (await before.place(request)).order.status is OrderStatus.OPEN
    gone = [Order.pending(replace(request, client_order_id=client_order_id("abcd", 6, i),
                                  symbol="GONE/USDT", cycle=6), 0) for i in range(2)]
    stored = [gone[0], replace(gone[1], status=OrderStatus.OPEN)]

    recovering = LiveBroker(await orders_for(make_client, market), [market.symbol],
                            SystemClock())
    found = await recovering.recover(request.client_order_id, 7, ("GONE/USDT", market.symbol))
    assert [(e.order.client_order_id, e.order.status) for e in found] == [
        (request.client_order_id, OrderStatus.OPEN),
        (request.client_order_id, OrderStatus.CANCELED)]  # its intent died with the engine

    after = LiveBroker(await orders_for(make_client, market), [market.symbol], SystemClock())
    changed = await after.reconcile(stored, [])
    assert {e.order.client_order_id: (e.order.status, e.order.reason) for e in changed} == {
        gone[0].client_order_id: (OrderStatus.REJECTED,
                                  "GONE/USDT is no longer listed by the venue"),
        gone[1].client_order_id: (OrderStatus.CANCELED,
                                  "GONE/USDT is no longer listed by the venue")}
    assert after.open_orders() == ()
