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
from ctsd.strategies.model import MarketInfo, MarketKind, OrderIntent, PositionSide, Side


def resolved(intent: OrderIntent, hedge: bool) -> OrderIntent:
    """The intent with the position side it trades (BOTH unless on a hedge-mode account)."""
    if not hedge:
        return intent
    if intent.position_side in (None, PositionSide.BOTH):
        return replace(intent, position_side=hedge_side(intent.side, intent.reduce_only))
    return intent


def closes_position(intent: OrderIntent, held: Decimal) -> bool:
    """Whether `intent` is reduce-only and exactly the whole of the position `held`
    (signed): the order then closes it, which a venue may do its own way
    (`OrderRequest.closes`)."""
    whole = -held if intent.side is Side.BUY else held
    return intent.reduce_only and held != 0 and intent.amount == whole


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
    if info.kind is MarketKind.MARGIN:
        return _margin_refusal(intent, info, held)
    if not hedge and side not in (None, PositionSide.BOTH):
        return (f"position_side: {side.value} needs a hedge-mode account; this one is "
                "one-way")
    if hedge and side is PositionSide.BOTH:
        return "position_side: a hedge-mode account trades the long or the short leg"
    return None


def _margin_refusal(intent: OrderIntent, info: MarketInfo, held: Decimal) -> str | None:
    """Spot margin has one net position per symbol (no legs), and a reduce-only intent
    may only bring it towards zero (the venues' margin orders take no reduce-only flag:
    the engine holds it to it)."""
    side = intent.position_side
    if side not in (None, PositionSide.BOTH):
        return f"position_side: spot margin has no {side.value} leg"
    if intent.reduce_only:
        closable = -held if intent.side is Side.BUY else held
        if intent.amount > max(closable, Decimal(0)):
            return (f"reduce_only: {intent.side.value} {intent.amount} {info.base} would open "
                    f"or grow a position of {held}")
    return None
