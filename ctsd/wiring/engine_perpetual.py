"""The engine's perpetuals seams (`PerpetualMarketData`, `PerpetualAccount`) on the
exchange layer's `PerpetualClient`.

Why here: the engine knows neither ccxt nor the exchange layer's values; this
adapter turns them into the engine's (`ctsd.engine.perpetual`): positions
signed and keyed by hedge leg, tiers with their deductions, funding payments
under the venue's ids. Account-wide settings (Binance and OKX position mode,
Bybit margin mode) are applied once per engine, not once per symbol.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal

from ctsd.engine.perpetual import (
    AppliedSetting,
    FundingPayment,
    FundingRate,
    LeverageTier,
    MarginMode,
    SettingOutcome,
    SymbolSettings,
    VenuePosition,
    VenueTrade,
    ladder,
)
from ctsd.exchanges.model import Position
from ctsd.exchanges.perpetuals import PerpetualClient
from ctsd.strategies.model import Funding, PositionSide, Side

_OUTCOMES = {o.value: o for o in SettingOutcome}


class ExchangePerpetualMarketData:
    """`PerpetualMarketData` over one (public or authenticated) client."""

    def __init__(self, perpetuals: PerpetualClient) -> None:
        self._perpetuals = perpetuals

    async def tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        rows = await self._perpetuals.tiers(symbol)
        return ladder([(t.floor, t.cap, t.max_leverage, t.mmr) for t in rows])

    async def funding(self, symbol: str) -> Funding:
        terms = await self._perpetuals.funding(symbol)
        return Funding(terms.rate, terms.next_time_ms, terms.mark_price)

    async def funding_rates(self, symbol: str, since_ms: int) -> tuple[FundingRate, ...]:
        return tuple(FundingRate(symbol, r.rate or Decimal(0), r.timestamp_ms)
                     for r in await self._perpetuals.funding_rates(symbol, since_ms))


class ExchangePerpetualAccount:
    """`PerpetualAccount` over one connection's authenticated client."""

    def __init__(self, perpetuals: PerpetualClient, margin_mode: MarginMode) -> None:
        self._perpetuals = perpetuals
        self._margin_mode = margin_mode
        """What a position is margined in where the venue's answer does not say (Bybit)."""
        self._account_wide: dict[str, str] = {}
        """Account-wide settings this engine already applied: name → value."""

    async def apply(self, settings: SymbolSettings) -> tuple[AppliedSetting, ...]:
        venue, symbol, modes = self._perpetuals.venue, settings.symbol, settings.modes
        position_mode = "hedge" if modes.hedge else "one-way"
        applied = [await self._once(
            venue.position_mode_scope, symbol, "position mode", position_mode,
            lambda: self._perpetuals.set_position_mode(modes.hedge, symbol))]
        margin = modes.margin_mode.value
        applied.append(await self._once(
            venue.margin_mode_scope, symbol, "margin mode", margin,
            lambda: self._perpetuals.set_margin_mode(margin, symbol)))
        if settings.leverage is not None:
            outcome = await self._perpetuals.set_leverage(settings.leverage, symbol, margin,
                                                          modes.hedge)
            applied.append(AppliedSetting(symbol, "leverage", f"{settings.leverage}x",
                                          _OUTCOMES[outcome]))
        return tuple(applied)

    async def _once(self, scope: str, symbol: str, name: str, value: str,
                    apply: Callable[[], Awaitable[str]]) -> AppliedSetting:
        if scope == "account" and self._account_wide.get(name) == value:
            return AppliedSetting(symbol, name, value, SettingOutcome.ALREADY_SET)
        outcome = _OUTCOMES[await apply()]
        if scope == "account":
            self._account_wide[name] = value
        return AppliedSetting(symbol, name, value, outcome)

    async def positions(self, symbols: tuple[str, ...]) -> tuple[VenuePosition, ...]:
        return tuple(venue_position(p, self._margin_mode)
                     for p in await self._perpetuals.positions(symbols))

    async def funding_payments(self, symbol: str, since_ms: int,
                               ) -> tuple[FundingPayment, ...]:
        return tuple(FundingPayment(r.id, symbol, r.amount, r.asset, r.timestamp_ms)
                     for r in await self._perpetuals.funding_payments(symbol, since_ms))

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        return tuple(VenueTrade(t.id, t.order_id, symbol, Side(t.side), t.amount, t.price,
                                t.fee, t.fee_asset, t.timestamp_ms, t.maker)
                     for t in await self._perpetuals.trades(symbol, since_ms))

    async def liquidations(self, symbol: str, since_ms: int) -> int:
        return await self._perpetuals.liquidations(symbol, since_ms)


def streamed_position(p: Position, default_mode: MarginMode) -> VenuePosition:
    """A position from the private stream: as `venue_position`, but a mark price the
    stream does not carry (Binance's `ACCOUNT_UPDATE`) is 0, for the broker to keep the
    last one it knew (`with_known`) instead of taking the entry price for it."""
    return replace(venue_position(p, default_mode), mark_price=p.mark_price or Decimal(0))


def venue_position(p: Position, default_mode: MarginMode) -> VenuePosition:
    """The exchange layer's position as the engine's: signed, keyed by hedge leg (a flat
    leg from the private stream has amount 0)."""
    side = (PositionSide.LONG if p.side == "long" else PositionSide.SHORT) if p.hedged else (
        PositionSide.BOTH)
    signed = p.amount if p.side == "long" else -p.amount
    mark = p.mark_price or p.entry_price
    mode = MarginMode(p.margin_mode) if p.margin_mode in ("cross", "isolated") else (
        default_mode)
    upnl = p.unrealized_pnl if p.unrealized_pnl is not None else signed * (mark - p.entry_price)
    return VenuePosition(p.symbol, side, signed, p.entry_price, mark, p.leverage, mode,
                         p.margin or Decimal(0), p.liquidation_price, upnl)
