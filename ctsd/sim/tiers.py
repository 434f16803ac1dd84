"""Leverage tiers: how much a perpetual position may weigh at a leverage, and its
maintenance margin.

Every venue publishes the same idea under its own name — Binance notional
brackets (`/fapi/v1/leverageBracket`), Bybit risk limits (`/v5/market/risk-limit`),
OKX position tiers (`/api/v5/public/position-tiers`): a ladder of notional caps,
each with the highest leverage allowed up to it and a maintenance margin rate.
Maintenance margin is `notional * mmr - deduction`, the deduction (Binance `cum`,
Bybit `mmDeduction`) making it continuous across tiers. The simulator uses one
ladder per instrument class for every venue: BTC and ETH get the majors' ladder
(Binance's BTCUSDT brackets), every other pair a standard one topping at 50x.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from ctsd.sim.market import Instrument

MAJORS = frozenset({"BTC", "ETH"})
_MAJOR_LADDER: tuple[tuple[int, int, str], ...] = (
    (50_000, 125, "0.004"), (600_000, 100, "0.005"), (3_000_000, 75, "0.0065"),
    (12_000_000, 50, "0.01"), (70_000_000, 25, "0.02"), (100_000_000, 20, "0.025"),
    (230_000_000, 10, "0.05"), (480_000_000, 5, "0.1"), (600_000_000, 4, "0.125"),
    (800_000_000, 3, "0.15"), (1_200_000_000, 2, "0.25"), (1_800_000_000, 1, "0.5"),
)
"""(notional cap in USDT, max leverage, maintenance margin rate), lowest tier first."""
_STANDARD_LADDER: tuple[tuple[int, int, str], ...] = (
    (5_000, 50, "0.01"), (25_000, 25, "0.02"), (100_000, 20, "0.025"),
    (250_000, 10, "0.05"), (1_000_000, 5, "0.1"), (5_000_000, 4, "0.125"),
    (10_000_000, 3, "0.15"), (20_000_000, 2, "0.25"), (50_000_000, 1, "0.5"),
)


@dataclass(frozen=True, slots=True)
class Tier:
    number: int
    """1-based, lowest notional first."""
    floor: Decimal
    cap: Decimal
    max_leverage: Decimal
    mmr: Decimal
    deduction: Decimal

    @property
    def imr(self) -> Decimal:
        """Initial margin rate at the tier's maximum leverage (8 decimals)."""
        return (1 / self.max_leverage).quantize(Decimal("0.00000001")).normalize()

    def maintenance(self, notional: Decimal) -> Decimal:
        return max(notional * self.mmr - self.deduction, Decimal(0))


@cache
def _ladder(major: bool) -> tuple[Tier, ...]:
    rows = _MAJOR_LADDER if major else _STANDARD_LADDER
    tiers: list[Tier] = []
    floor = deduction = previous_mmr = Decimal(0)
    for number, (cap, leverage, mmr_text) in enumerate(rows, start=1):
        mmr = Decimal(mmr_text)
        deduction += floor * (mmr - previous_mmr)
        tiers.append(Tier(number, floor, Decimal(cap), Decimal(leverage), mmr, deduction))
        floor, previous_mmr = Decimal(cap), mmr
    return tuple(tiers)


def tiers(inst: Instrument) -> tuple[Tier, ...]:
    """The instrument's ladder (the same for every venue)."""
    return _ladder(inst.base in MAJORS)


def tier_for(inst: Instrument, notional: Decimal) -> Tier:
    """The tier a position of `notional` falls in (floor <= notional < cap)."""
    ladder = tiers(inst)
    for tier in ladder:
        if notional < tier.cap:
            return tier
    return ladder[-1]


def max_leverage(inst: Instrument) -> Decimal:
    return tiers(inst)[0].max_leverage


def max_notional(inst: Instrument, leverage: Decimal) -> Decimal:
    """The largest position notional allowed at `leverage` (0 above the maximum)."""
    allowed = [t.cap for t in tiers(inst) if t.max_leverage >= leverage]
    return allowed[-1] if allowed else Decimal(0)


def maintenance_margin(inst: Instrument, notional: Decimal) -> Decimal:
    return tier_for(inst, notional).maintenance(notional)
