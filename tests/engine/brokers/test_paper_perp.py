"""PAPER perpetuals on their own: margin, reduce-only, hedge legs, tier caps, funding,
liquidation, and a restart that replays fills and funding. The same numbers against the
simulator's venue model are in tests/wiring/test_paper_perp_parity.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ctsd.engine.brokers.paper_perp import PaperPerpBroker
from ctsd.engine.config import PaperSettings
from ctsd.engine.orders import OrderRequest, OrderStatus
from ctsd.engine.perpetual import (
    AccountModes,
    FundingRate,
    LeverageTier,
    MarginMode,
    ladder,
)
from ctsd.strategies.model import (
    Funding,
    MarketInfo,
    MarketKind,
    MarketSnapshot,
    OrderType,
    PositionSide,
    Side,
    SymbolMarket,
    Ticker,
)
from tests.support.virtual_clock import VirtualClock

SYMBOL = "BTC/USDT:USDT"
D = Decimal
FUNDING_MS = 1_700_006_400_000
MAJORS = ladder([(D(0), D(50_000), D(125), D("0.004")),
                 (D(50_000), D(600_000), D(100), D("0.005")),
                 (D(600_000), D(3_000_000), D(75), D("0.0065"))])


class Tiers:
    """`PerpetualMarketData` with one ladder and no history."""

    async def tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        return MAJORS

    async def funding(self, symbol: str) -> Funding:
        raise AssertionError("the engine reads funding terms, not the broker")

    async def funding_rates(self, symbol: str, since_ms: int) -> tuple[FundingRate, ...]:
        return ()


def market(price: str, rate: str = "0.0001", next_ms: int = FUNDING_MS) -> MarketSnapshot:
    info = MarketInfo(SYMBOL, "BTC", "USDT", D("0.0005"), D("0.0002"), MarketKind.PERPETUAL,
                      D("0.001"))
    ticker = Ticker(SYMBOL, D(price), D(price), D(price), 0)
    return MarketSnapshot(0, (SymbolMarket(info, ticker, (), Funding(D(rate), next_ms)),))


def order(side: Side, amount: str, cid: str, *, reduce_only: bool = False,
          leg: PositionSide = PositionSide.BOTH, price: str | None = None) -> OrderRequest:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return OrderRequest(cid, SYMBOL, side, kind, D(amount), None if price is None else D(price),
                        "t", 1, reduce_only=reduce_only, position_side=leg)


async def broker(mode: MarginMode = MarginMode.CROSS, hedge: bool = False, leverage: int = 10,
                 wallet: str = "10000") -> PaperPerpBroker:
    paper = PaperPerpBroker(PaperSettings((("USDT", D(wallet)),), D(0)), VirtualClock(),
                            AccountModes(mode, hedge), {SYMBOL: leverage}, Tiers(), (SYMBOL,))
    await paper.reconcile((), ())
    await paper.poll(market("60000"))
    return paper


@pytest.mark.asyncio
async def test_a_position_holds_initial_margin_by_leverage_and_pays_the_taker_fee() -> None:
    paper = await broker()
    done = await paper.place(order(Side.BUY, "0.5", "c1"))
    assert done.order.status is OrderStatus.FILLED
    [fill] = done.fills
    assert (fill.price, fill.fee, fill.fee_asset) == (D(60000), D(15), "USDT")
    [position] = paper.positions()
    assert (position.amount, position.entry_price, position.margin) == (
        D("0.5"), D(60000), D(3000))
    [usdt] = paper.balances()
    assert usdt.total == D(9985) and usdt.free == D(9985) - D(3000)
    short = await paper.place(order(Side.SELL, "2", "c2"))  # flips: closes 0.5, opens 1.5
    assert short.order.status is OrderStatus.FILLED
    [position] = paper.positions()
    assert (position.amount, position.entry_price) == (D("-1.5"), D(60000))


@pytest.mark.asyncio
async def test_what_the_venue_refuses_is_refused_and_nothing_moves() -> None:
    paper = await broker(leverage=125)
    refused = await paper.place(order(Side.BUY, "0.1", "c1", reduce_only=True))
    assert refused.order.reason == "reduce only: the order would open or grow a position"
    capped = await paper.place(order(Side.BUY, "1", "c2"))  # 60,000 > the 125x tier's 50,000
    assert capped.order.reason.startswith("position limit: 60000.00 notional is above the 125x")
    poor = await broker(wallet="100")
    broke = await poor.place(order(Side.BUY, "0.5", "c3"))
    assert broke.order.reason.startswith("insufficient margin: need 3015.0")
    tiny = await paper.place(order(Side.BUY, "0.0004", "c4"))
    assert tiny.order.reason == "amount below the venue's lot size"
    assert paper.positions() == () and poor.positions() == ()
    assert all(e.order.status is OrderStatus.REJECTED for e in (refused, capped, broke, tiny))


@pytest.mark.asyncio
async def test_hedge_legs_are_apart_and_a_close_never_passes_its_leg() -> None:
    paper = await broker(hedge=True)
    await paper.place(order(Side.BUY, "0.3", "c1", leg=PositionSide.LONG))
    await paper.place(order(Side.SELL, "0.2", "c2", leg=PositionSide.SHORT))
    assert {p.side: p.amount for p in paper.positions()} == {
        PositionSide.LONG: D("0.3"), PositionSide.SHORT: D("-0.2")}
    too_much = await paper.place(order(Side.SELL, "0.4", "c3", leg=PositionSide.LONG))
    assert too_much.order.reason == "reduce only: closes more than the long leg holds"
    await paper.place(order(Side.SELL, "0.3", "c4", leg=PositionSide.LONG))
    assert {p.side for p in paper.positions()} == {PositionSide.SHORT}


@pytest.mark.asyncio
async def test_funding_is_paid_once_at_the_announced_rate_when_the_time_passes() -> None:
    paper = await broker()
    await paper.place(order(Side.BUY, "0.5", "c1"))
    await paper.poll(market("60000", rate="0.001"))
    assert paper.take_funding() == ()  # announced, not yet due
    later = FUNDING_MS + 8 * 3_600_000
    await paper.poll(market("61000", rate="0.0002", next_ms=later))  # the time passed
    [paid] = paper.take_funding()
    assert (paid.funding_id, paid.amount, paid.timestamp_ms) == (
        f"paper:{SYMBOL}:{FUNDING_MS}", D("-30.5"), FUNDING_MS)  # -0.5 * 61,000 * 0.001
    await paper.poll(market("61000", rate="0.0002", next_ms=later))
    assert paper.take_funding() == ()
    [usdt] = paper.balances()
    assert usdt.total == D(10000) - D(15) - D("30.5")


@pytest.mark.asyncio
async def test_an_isolated_position_is_liquidated_at_its_price_losing_its_margin() -> None:
    paper = await broker(MarginMode.ISOLATED, leverage=50)
    await paper.place(order(Side.BUY, "0.5", "c1"))
    [position] = paper.positions()
    assert position.margin == D(600) and position.liquidation_price is not None
    # Binance's formula: (qty*E - M) / (qty*(1 - mmr)) = (30,000 - 600) / 0.498
    assert position.liquidation_price == pytest.approx(D(29400) / D("0.498"), abs=D("1e-6"))
    above = str(position.liquidation_price + 1)
    assert await paper.poll(market(above)) == ()
    [liquidated] = await paper.poll(market(str(position.liquidation_price - 1)))
    assert (liquidated.order.tag, liquidated.order.reduce_only) == ("liquidation", True)
    assert liquidated.order.client_order_id.startswith("autoclose-")
    assert paper.positions() == () and paper.liquidations == 1
    [usdt] = paper.balances()
    assert usdt.total == D(10000) - D(15) - D(600)  # the entry fee and exactly the margin


@pytest.mark.asyncio
async def test_a_restart_replays_fills_and_funding_into_the_same_account() -> None:
    paper = await broker(MarginMode.ISOLATED)
    fills = list((await paper.place(order(Side.BUY, "0.5", "c1"))).fills)
    fills += (await paper.place(order(Side.SELL, "0.2", "c2"))).fills
    await paper.poll(market("60000", next_ms=FUNDING_MS + 8 * 3_600_000))
    funding = paper.take_funding()
    before = (paper.positions(), paper.balances())
    again = await broker(MarginMode.ISOLATED)
    await again.reconcile((), fills, funding)
    await again.poll(market("60000", next_ms=FUNDING_MS + 8 * 3_600_000))
    assert (again.positions(), again.balances()) == before
    assert again.take_funding() == ()  # the replayed payment is not paid twice
