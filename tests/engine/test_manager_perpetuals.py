"""EngineManager with perpetuals on fakes: what a start refuses, and how a venue position
that differs from the ledger stops (or is adopted by) a LIVE engine for good."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from ctsd.engine.backend import EngineResources
from ctsd.engine.config import TradingMode
from ctsd.engine.perpetual import (
    AccountModes,
    AppliedSetting,
    FundingPayment,
    FundingRate,
    LeverageTier,
    MarginMode,
    MismatchPolicy,
    SettingOutcome,
    SymbolSettings,
    VenuePosition,
    VenueTrade,
    ladder,
)
from ctsd.engine.status import EngineState, FailureCode
from ctsd.engine.store_ports import DesiredState
from ctsd.errors import FailedPrecondition
from ctsd.strategies.model import Balance, Funding, MarketKind, PositionSide
from tests.engine.fakes import FakeExchange
from tests.engine.world import SMA_CLOSES, SYMBOL, World, sma

D = Decimal
TIERS = ladder([(D(0), D(50_000), D(125), D("0.004"))])


class FakePerpetuals:
    """`PerpetualMarketData` and `PerpetualAccount` at once: what a test sets is what the
    venue holds; every settings call is recorded."""

    def __init__(self) -> None:
        self.held: tuple[VenuePosition, ...] = ()
        self.applied: list[SymbolSettings] = []
        self.refuse: FailedPrecondition | None = None

    async def tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        return TIERS

    async def funding(self, symbol: str) -> Funding:
        return Funding(D("0.0001"), 1_700_006_400_000)

    async def funding_rates(self, symbol: str, since_ms: int) -> tuple[FundingRate, ...]:
        return ()

    async def apply(self, settings: SymbolSettings) -> tuple[AppliedSetting, ...]:
        if self.refuse is not None:
            raise self.refuse
        self.applied.append(settings)
        return (AppliedSetting(settings.symbol, "leverage", str(settings.leverage),
                               SettingOutcome.CHANGED),)

    async def positions(self, symbols: tuple[str, ...]) -> tuple[VenuePosition, ...]:
        return self.held

    async def funding_payments(self, symbol: str, since_ms: int,
                               ) -> tuple[FundingPayment, ...]:
        return ()

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        return ()

    async def liquidations(self, symbol: str, since_ms: int) -> int:
        return 0


def perpetual_world(perps: FakePerpetuals) -> World:
    exchange = FakeExchange(balances=(Balance("USDT", D(1000), D(1000)),))
    w = World({"a": SMA_CLOSES}, exchanges={"a": exchange})
    opened = w.backend.open

    async def open_perpetual(connection_id: str, mode: TradingMode) -> EngineResources:
        spot = await opened(connection_id, mode)
        return replace(spot, kind=MarketKind.PERPETUAL,
                       modes=AccountModes(MarginMode.CROSS, hedge=False),
                       perp_market=perps, perp_account=perps)

    w.backend.open = open_perpetual  # type: ignore[method-assign]
    return w


def held(amount: str) -> VenuePosition:
    return VenuePosition(SYMBOL, PositionSide.BOTH, D(amount), D(10), D(10), D(5),
                         MarginMode.CROSS, D(2), None, D(0))


@pytest.mark.asyncio
async def test_a_start_applies_the_settings_and_a_refusal_stores_nothing() -> None:
    perps = FakePerpetuals()
    w = perpetual_world(perps)
    async with w.manager:
        perps.refuse = FailedPrecondition("binance refused position mode hedge: -4068")
        with pytest.raises(FailedPrecondition, match="-4068"):
            await w.manager.start("a", sma(mode=TradingMode.LIVE, leverage={SYMBOL: 5}))
        assert w.store.engines == {} and w.backend.closed == ["a"]
        perps.refuse = None
        await w.manager.start("a", sma(mode=TradingMode.LIVE, leverage={SYMBOL: 5}))
        assert [s.leverage for s in perps.applied] == [5]
        await w.clock.advance(1)
        assert w.manager.get("a").state is EngineState.RUNNING
        assert len(perps.applied) == 1  # a session does not apply them twice


@pytest.mark.asyncio
async def test_a_venue_position_the_ledger_does_not_know_stops_the_engine_for_good() -> None:
    perps = FakePerpetuals()
    w = perpetual_world(perps)
    async with w.manager:
        await w.manager.start("a", sma(mode=TradingMode.LIVE))
        await w.clock.advance(61)
        assert w.manager.get("a").state is EngineState.RUNNING
        perps.held = (held("0.5"),)  # traded by hand on the same account
        await w.clock.advance(60)
        status = w.manager.get("a")
        assert status.state is EngineState.FAILED and status.failure is not None
        assert status.failure.code is FailureCode.POSITION_MISMATCH
        assert status.failure.message == (
            f"{SYMBOL}: ledger 0, venue 0.5 (not in the venue's fill history: "
            "auto-deleveraging?)")
        assert status.position_differences == 1
        assert w.store.engines["a"].desired is DesiredState.STOPPED  # not resumed by a restart
        await w.clock.advance(3600)
        assert w.manager.get("a").restarts == 0


@pytest.mark.asyncio
async def test_an_adopted_difference_is_booked_and_the_engine_trades_on() -> None:
    perps = FakePerpetuals()
    w = perpetual_world(perps)
    async with w.manager:
        perps.held = (held("0.5"),)
        await w.manager.start("a", sma(mode=TradingMode.LIVE,
                                       on_position_mismatch=MismatchPolicy.ADOPT))
        await w.clock.advance(61)
        status = w.manager.get("a")
        assert status.state is EngineState.RUNNING and status.position_differences == 1
        [position] = status.positions
        assert (position.amount, position.leverage) == (D("0.5"), D(5))
        [adjusted] = w.store.orders["a"].values()
        assert adjusted.tag == "adjusted" and adjusted.filled == D("0.5")
