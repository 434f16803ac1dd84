from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.engine.brokers.paper import PaperBroker
from ctsd.engine.config import PaperSettings
from ctsd.engine.orders import Order, OrderRequest, OrderStatus
from ctsd.strategies.model import Balance, MarketSnapshot, OrderType, Side, SymbolMarket, Ticker
from tests.engine.fakes import info
from tests.support.virtual_clock import VirtualClock

SYMBOL = "BTC/USDT"
D = Decimal


def market(bid: str, ask: str) -> MarketSnapshot:
    ticker = Ticker(SYMBOL, D(bid), D(ask), (D(bid) + D(ask)) / 2, 0)
    return MarketSnapshot(0, (SymbolMarket(info(SYMBOL, taker="0.001", maker="0.0005"), ticker),))


def request(side: Side, amount: str, price: str | None = None, cid: str = "c1") -> OrderRequest:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderRequest(cid, SYMBOL, side, kind, D(amount), None if price is None else D(price),
                        "tag", 1)


async def broker(usdt: str = "1000", btc: str = "0") -> PaperBroker:
    settings = PaperSettings(balances=(("USDT", D(usdt)), ("BTC", D(btc))), slippage_bps=D(10))
    paper = PaperBroker(settings, VirtualClock())
    await paper.poll(market("99", "101"))
    return paper


def balance(paper: PaperBroker, asset: str) -> Balance:
    return next(b for b in paper.balances() if b.asset == asset)


@pytest.mark.asyncio
async def test_a_market_buy_fills_at_the_ask_plus_slippage_and_pays_the_taker_fee() -> None:
    paper = await broker()
    execution = await paper.place(request(Side.BUY, "1"))
    assert execution.order.status is OrderStatus.FILLED
    [fill] = execution.fills
    assert (fill.price, fill.fee, fill.fee_asset, fill.maker) == (
        D("101.101"), D("0.101101"), "USDT", False)
    assert balance(paper, "USDT").free == D("898.797899")
    assert balance(paper, "BTC").free == D(1)


@pytest.mark.asyncio
async def test_a_buy_pays_its_fee_in_the_base_asset_where_the_venue_charges_it_so() -> None:
    """Binance, Bybit and OKX spot take a buy's fee from the base it receives; a restart
    (reconcile from the persisted fills) rebuilds the same balances."""
    settings = PaperSettings(balances=(("USDT", D(1000)),), slippage_bps=D(10))
    paper = PaperBroker(settings, VirtualClock())
    base_fee = replace(info(SYMBOL, taker="0.001", maker="0.0005"), buy_fee_in_base=True)
    ticker = Ticker(SYMBOL, D(99), D(101), D(100), 0)
    await paper.poll(MarketSnapshot(0, (SymbolMarket(base_fee, ticker),)))
    [fill] = (await paper.place(request(Side.BUY, "1"))).fills
    assert (fill.fee, fill.fee_asset) == (D("0.001"), "BTC")
    assert balance(paper, "BTC").free == D("0.999")
    assert balance(paper, "USDT").free == D(1000) - D("101.101")  # no fee in the quote
    restarted = PaperBroker(settings, VirtualClock())
    await restarted.reconcile([], [fill])
    assert restarted.balances() == paper.balances()


@pytest.mark.asyncio
async def test_a_market_sell_fills_at_the_bid_minus_slippage() -> None:
    paper = await broker(btc="2")
    [fill] = (await paper.place(request(Side.SELL, "1"))).fills
    assert fill.price == D("98.901")
    assert balance(paper, "USDT").free == D(1000) + D("98.901") - D("0.098901")


@pytest.mark.asyncio
async def test_orders_the_paper_account_cannot_pay_for_are_rejected() -> None:
    paper = await broker(usdt="50")
    too_big = await paper.place(request(Side.BUY, "1"))
    assert too_big.order.status is OrderStatus.REJECTED
    assert too_big.order.reason.startswith("insufficient USDT")
    no_base = await paper.place(request(Side.SELL, "1", cid="c2"))
    assert no_base.order.reason.startswith("insufficient BTC")
    assert paper.open_orders() == ()


@pytest.mark.asyncio
async def test_without_market_data_nothing_fills() -> None:
    paper = PaperBroker(PaperSettings(), VirtualClock())
    execution = await paper.place(request(Side.BUY, "1"))
    assert (execution.order.status, execution.order.reason) == (
        OrderStatus.REJECTED, "no market data yet")


@pytest.mark.asyncio
async def test_a_limit_order_rests_with_funds_reserved_and_fills_as_maker_when_crossed() -> None:
    paper = await broker()
    placed = await paper.place(request(Side.BUY, "1", "95"))
    assert placed.order.status is OrderStatus.OPEN
    assert balance(paper, "USDT") == Balance("USDT", D("904.9525"), D(1000))  # price + maker fee
    assert await paper.poll(market("95.5", "96")) == ()
    [filled] = await paper.poll(market("94", "95"))
    assert filled.order.status is OrderStatus.FILLED
    assert (filled.fills[0].price, filled.fills[0].fee, filled.fills[0].maker) == (
        D(95), D("0.0475"), True)
    assert balance(paper, "USDT") == Balance("USDT", D("904.9525"), D("904.9525"))
    assert paper.open_orders() == ()


@pytest.mark.asyncio
async def test_a_marketable_limit_fills_at_once_never_worse_than_its_price() -> None:
    paper = await broker()
    [fill] = (await paper.place(request(Side.BUY, "1", "101.05"))).fills
    assert fill.price == D("101.05") and not fill.maker


@pytest.mark.asyncio
async def test_cancel_releases_the_reservation_and_placing_an_id_twice_is_a_no_op() -> None:
    paper = await broker()
    first = await paper.place(request(Side.BUY, "1", "95"))
    again = await paper.place(request(Side.BUY, "1", "95"))
    assert again.order == first.order
    assert balance(paper, "USDT").free == D("904.9525")
    cancelled = await paper.cancel(first.order)
    assert cancelled.order.status is OrderStatus.CANCELED
    assert balance(paper, "USDT") == Balance("USDT", D(1000), D(1000))


@pytest.mark.asyncio
async def test_reconcile_rebuilds_the_account_from_fills_and_stored_orders() -> None:
    paper = await broker()
    bought = await paper.place(request(Side.BUY, "1"))
    resting = (await paper.place(request(Side.BUY, "1", "90", cid="c2"))).order
    pending = Order.pending(request(Side.BUY, "1", "80", cid="c3"), 0)
    expected = paper.balances()

    restarted = await broker()
    changed = await restarted.reconcile([resting, pending], bought.fills)
    assert restarted.balances() == expected
    assert restarted.open_orders() == (resting,)
    assert [(e.order.client_order_id, e.order.status) for e in changed] == [
        ("c3", OrderStatus.REJECTED)]
