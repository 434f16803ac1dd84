"""Perpetual futures as the engine sees them: account modes, leverage tiers, the venue's
positions, funding payments and rates, and the venue's own fills.

Plain frozen values, venue-neutral: the exchange layer fills them from each
venue's answers (`ctsd.wiring.engine_perpetual`), the paper account computes
them itself (`ctsd.engine.brokers.paper_perp`). Quantities are base units and
signed like `Position.amount` (positive long, negative short); money is in the
settle asset (USDT for the linear perpetuals the daemon trades).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ctsd.strategies.model import PositionSide, Side

ZERO = Decimal(0)
MAX_LEVERAGE = 125
"""No venue the daemon trades allows more (Binance, Bybit and OKX majors top at 125x)."""


class MarginMode(enum.Enum):
    CROSS = "cross"
    ISOLATED = "isolated"


class MismatchPolicy(enum.Enum):
    """What a LIVE engine does when the venue's position differs from its ledger."""

    STOP = "stop"
    """Fail closed: stop with a reason naming the difference (a human decides)."""
    ADOPT = "adopt"
    """Book the venue's own fills that explain it (and adjust the rest) and trade on."""


@dataclass(frozen=True, slots=True)
class AccountModes:
    """How the connection's account is to be run: its margin mode and position mode."""

    margin_mode: MarginMode = MarginMode.CROSS
    hedge: bool = False


@dataclass(frozen=True, slots=True)
class LeverageTier:
    """One rung of a venue's ladder: positions up to `cap` notional may use at most
    `max_leverage`, and keep `notional * mmr - deduction` as maintenance margin."""

    floor: Decimal
    cap: Decimal
    max_leverage: Decimal
    mmr: Decimal
    deduction: Decimal = ZERO

    def maintenance(self, notional: Decimal) -> Decimal:
        return max(notional * self.mmr - self.deduction, ZERO)


def ladder(rows: Sequence[tuple[Decimal, Decimal, Decimal, Decimal]]) -> tuple[LeverageTier, ...]:
    """Tiers from (floor, cap, max leverage, mmr) rows, lowest first, with each tier's
    deduction derived as the venues define it (Binance `cum`, Bybit `mmDeduction`):
    the one that keeps maintenance margin continuous across tier boundaries."""
    tiers: list[LeverageTier] = []
    deduction = previous_mmr = ZERO
    for floor, cap, leverage, mmr in sorted(rows):
        deduction += floor * (mmr - previous_mmr)
        tiers.append(LeverageTier(floor, cap, leverage, mmr, deduction))
        previous_mmr = mmr
    return tuple(tiers)


def tier_for(tiers: Sequence[LeverageTier], notional: Decimal) -> LeverageTier:
    """The tier a position of `notional` falls in (floor <= notional < cap)."""
    for tier in tiers:
        if notional < tier.cap:
            return tier
    return tiers[-1]


def max_leverage(tiers: Sequence[LeverageTier], notional: Decimal = ZERO) -> Decimal:
    """The highest leverage a position of `notional` may use."""
    return tier_for(tiers, notional).max_leverage if tiers else Decimal(MAX_LEVERAGE)


@dataclass(frozen=True, slots=True)
class VenuePosition:
    """One open position as its holder values it at the mark price."""

    symbol: str
    side: PositionSide
    amount: Decimal
    entry_price: Decimal
    mark_price: Decimal
    leverage: Decimal | None
    """None where the venue's answer does not carry it (Binance positionRisk v3)."""
    margin_mode: MarginMode
    margin: Decimal
    """What the position holds as margin: isolated its own, cross its initial margin."""
    liquidation_price: Decimal | None
    unrealized_pnl: Decimal

    @property
    def key(self) -> tuple[str, PositionSide]:
        return self.symbol, self.side


class PaymentKind(enum.Enum):
    """What a booked payment is: perpetual funding, or interest on a margin loan."""

    FUNDING = "funding"
    INTEREST = "interest"


@dataclass(frozen=True, slots=True)
class FundingPayment:
    """One funding payment the account made (negative) or received (positive); on spot
    margin, one interest charge on what is borrowed (`kind` INTEREST, negative)."""

    funding_id: str
    """Unique per engine: the venue's id (LIVE) or `paper:<symbol>:<funding time>`."""
    symbol: str
    amount: Decimal
    asset: str
    timestamp_ms: int
    kind: PaymentKind = PaymentKind.FUNDING


@dataclass(frozen=True, slots=True)
class FundingRate:
    """The rate a perpetual paid at one funding time."""

    symbol: str
    rate: Decimal
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class VenueTrade:
    """One fill of the account as the venue's fill history lists it (any order's)."""

    trade_id: str
    order_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    timestamp_ms: int
    maker: bool = False


@dataclass(frozen=True, slots=True)
class SymbolSettings:
    """What an engine start makes true on the venue for one symbol."""

    symbol: str
    modes: AccountModes
    leverage: int | None
    """None leaves the venue's leverage as it is."""


class SettingOutcome(enum.Enum):
    CHANGED = "changed"
    ALREADY_SET = "already set"
    PER_ORDER = "sent with every order"
    """The venue takes it per order (OKX `tdMode`): nothing to set in advance."""


@dataclass(frozen=True, slots=True)
class AppliedSetting:
    """One setting an engine start applied, for its log line."""

    symbol: str
    name: str
    value: str
    outcome: SettingOutcome

    def __str__(self) -> str:
        return f"{self.symbol} {self.name} {self.value}: {self.outcome.value}"


def hedge_side(side: Side, reduce_only: bool) -> PositionSide:
    """The hedge-mode leg an order trades when its intent does not say: a buy opens LONG
    and a reduce-only buy closes SHORT; a sell opens SHORT and a reduce-only sell closes
    LONG (the rule ccxt applies for Bybit's `hedged` orders)."""
    if side is Side.BUY:
        return PositionSide.SHORT if reduce_only else PositionSide.LONG
    return PositionSide.LONG if reduce_only else PositionSide.SHORT
