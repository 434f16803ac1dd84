"""Paper and live book one market buy alike on every venue: the fee in the asset the
venue charges it in (a spot buy's in the base asset on Binance, Bybit and OKX), and
the ledger holding what the wallet holds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.clock import SystemClock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.brokers.paper import PaperBroker
from ctsd.engine.config import PaperSettings
from ctsd.engine.ledger import Ledger
from ctsd.engine.orders import Fill, OrderRequest, OrderStatus, client_order_id
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane
from ctsd.sim.server import SimulatorServer
from ctsd.strategies.model import MarketSnapshot, OrderType, Side, SymbolMarket
from ctsd.wiring.engine_exchange import ExchangeMarketData
from ctsd.wiring.engine_orders import ExchangeOrders
from tests.support.exchange_clients import MARKETS, ClientMaker, Market

pytestmark = pytest.mark.asyncio
SPOT = [m for m in MARKETS if m.api_type is ApiType.SPOT]


@pytest.mark.parametrize("market", SPOT, ids=[m.id for m in SPOT])
async def test_paper_and_live_book_a_market_buy_alike(
    server: SimulatorServer, make_client: ClientMaker, market: Market,
) -> None:
    amount = Decimal(market.amount)
    data = ExchangeMarketData(await make_client(market.exchange, market.api_type))
    info = await data.market(market.symbol)
    assert info.buy_fee_in_base is (market.exchange != "kraken")
    live = LiveBroker(ExchangeOrders(await make_client(market.exchange, market.api_type,
                                                       lane=Lane.ORDER)),
                      [market.symbol], SystemClock())
    placed = await live.place(OrderRequest(client_order_id("feee", 1, 0), market.symbol,
                                           Side.BUY, OrderType.MARKET, amount, None, "t", 1))
    live_fills: list[Fill] = list(placed.fills)
    if placed.order.status is not OrderStatus.FILLED:  # acknowledged with the id alone
        live_fills += (await live.fetch_order(placed.order)).fills
    paper = PaperBroker(PaperSettings(balances=(("USDT", Decimal(100_000)),)), SystemClock())
    ticker = await data.ticker(market.symbol)
    await paper.poll(MarketSnapshot(0, (SymbolMarket(info, ticker),)))
    paper_fills = (await paper.place(OrderRequest(
        client_order_id("feee", 2, 0), market.symbol, Side.BUY, OrderType.MARKET, amount,
        None, "t", 2))).fills
    fee_asset = "BTC" if info.buy_fee_in_base else "USDT"
    assert {f.fee_asset for f in live_fills} == {f.fee_asset for f in paper_fills} == {fee_asset}
    # each ledger holds what its wallet holds: the amount, less a fee paid in it (the rates
    # may differ: paper charges the market's published rate, the venue the account's)
    for fills in (live_fills, paper_fills):
        held = amount - (sum((f.fee for f in fills), Decimal(0)) if info.buy_fee_in_base else 0)
        assert Ledger(fills).position(market.symbol).amount == held
    if info.buy_fee_in_base:
        paper_btc = next(b for b in paper.balances() if b.asset == "BTC").total
        assert paper_btc == Ledger(paper_fills).position(market.symbol).amount < amount
