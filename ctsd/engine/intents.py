"""What an intent may ask for on its market, and which position it trades.

A strategy (any plugin) may ask for things its market cannot do: a short on
spot, a hedge-mode leg on a one-way account, reduce-only where there is no
position. Such an intent is refused before the risk limits or any broker see
it, with a reason naming the field, so nothing is placed and the log and
TestEngine say what to change. On a hedge-mode account an intent that names no
leg gets one (`ctsd.engine.perpetual.hedge_side`).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from ctsd.engine.perpetual import hedge_side
from ctsd.strategies.model import MarketInfo, OrderIntent, PositionSide, Side


def resolved(intent: OrderIntent, hedge: bool) -> OrderIntent:
    """The intent with the position side it trades (BOTH unless on a hedge-mode account)."""
    if not hedge:
        return intent
    if intent.position_side in (None, PositionSide.BOTH):
        return replace(intent, position_side=hedge_side(intent.side, intent.reduce_only))
    return intent


def refusal(intent: OrderIntent, info: MarketInfo, hedge: bool, held: Decimal,
            selling: Decimal) -> str | None:
    """Why `intent` cannot be placed on its market as asked, naming the field; None if it can.

    `held` is the base asset held of the symbol and `selling` what resting sells
    already commit of it (spot only)."""
    side = intent.position_side
    if not info.can_short:
        if intent.reduce_only:
            return "reduce_only: spot has no position to reduce"
        if side not in (None, PositionSide.BOTH):
            return f"position_side: spot has no {side.value} position"
        if intent.side is Side.SELL and intent.amount > held - selling:
            return (f"side: selling {intent.amount} {info.base} exceeds the "
                    f"{max(held - selling, Decimal(0))} held; spot cannot go short")
        return None
    if not hedge and side not in (None, PositionSide.BOTH):
        return (f"position_side: {side.value} needs a hedge-mode account; this one is "
                "one-way")
    if hedge and side is PositionSide.BOTH:
        return "position_side: a hedge-mode account trades the long or the short leg"
    return None
