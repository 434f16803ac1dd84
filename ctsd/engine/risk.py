"""Pre-trade risk checks: every intent passes here before any broker sees it.

The gate is deliberately conservative: an order it accepts counts against the
per-minute budget and the open-order and position limits at once, whether or
not the venue later fills or rejects it, so a burst of failing orders cannot
exceed a limit either. Each rejection carries a sentence for the log and the
engine's status. The daily loss check reads realized PnL since UTC midnight plus
all open PnL now (positions carried over midnight count in full: the check
errs towards stopping), and its breach stops the engine with reason RISK_LIMIT.

Notionals are full position notionals (amount times price), whatever leverage
a perpetual trades at: a limit on leveraged notional, not on margin. An option
contract's premium is not its exposure: a buy counts each contract at the larger of
its premium (what a long can lose) and the underlying's price the venue quotes with
it (the notional the contract moves with: contracts of one underlying unit on
Binance and Bybit), so `max_position_notional` caps the contracts held at that
underlying notional; a sell only takes contracts back (options engines do not
write) and counts its premium. Before the
limits, each intent is checked against what its market can do
(`ctsd.engine.intents`): a short on spot or a hedge leg on a one-way account is
refused there, naming the field.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.config import RiskLimits
from ctsd.engine.intents import refusal, resolved
from ctsd.engine.ledger import PnL
from ctsd.strategies.model import (
    MarketKind,
    MarketSnapshot,
    OrderIntent,
    OrderType,
    Portfolio,
    PositionSide,
    Side,
)

WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    intent: OrderIntent
    accepted: bool
    reason: str = ""


def _signed(side: Side, amount: Decimal) -> Decimal:
    return amount if side is Side.BUY else -amount


def _exposure_price(intent: OrderIntent, market: MarketSnapshot,
                    premium: Decimal) -> tuple[Decimal, str]:
    """What one unit of the intent is exposed to, and how a refusal names it: an option
    buy's contract at the larger of its premium and the quoted underlying price."""
    found = market.get(intent.symbol)
    if found is None or found.info.kind is not MarketKind.OPTION or intent.side is Side.SELL:
        return premium, ""
    underlying = found.ticker.underlying
    if underlying is None or underlying <= premium:
        return premium, " (premium)"
    return underlying, f" (underlying at {underlying})"


class RiskGate:
    """Checks for one engine; holds only the timestamps of its recent orders."""

    def __init__(self, limits: RiskLimits, clock: Clock, *, hedge: bool = False) -> None:
        self._limits = limits
        self._clock = clock
        self._hedge = hedge
        self._placed: deque[float] = deque()
        self.refused_all = False
        """The last review had intents and accepted none of them."""

    def review(
        self, intents: Sequence[OrderIntent], market: MarketSnapshot, portfolio: Portfolio
    ) -> list[RiskVerdict]:
        """A verdict per intent, in order; accepted ones count against later ones."""
        resting = len(portfolio.open_orders)
        exposure: dict[tuple[str, PositionSide], Decimal] = {
            (p.symbol, p.side): p.amount for p in portfolio.positions}
        selling: dict[str, Decimal] = {}
        for order in portfolio.open_orders:
            key = (order.symbol, order.position_side)
            exposure[key] = exposure.get(key, Decimal(0)) + _signed(order.side, order.remaining)
            if order.side is Side.SELL:
                selling[order.symbol] = selling.get(order.symbol, Decimal(0)) + order.remaining
        verdicts = []
        for intent in intents:
            reason = self._refusal(intent, market, portfolio, selling)
            leg = resolved(intent, self._hedge)
            key = (intent.symbol, leg.position_side or PositionSide.BOTH)
            if reason is None:
                reason = self._reason(intent, market, resting, exposure.get(key, Decimal(0)))
            verdicts.append(RiskVerdict(intent, reason is None, reason or ""))
            if reason is None:
                self._placed.append(self._clock.monotonic())
                resting += intent.type is OrderType.LIMIT
                exposure[key] = exposure.get(key, Decimal(0)) + _signed(
                    intent.side, intent.amount)
                if intent.side is Side.SELL:
                    selling[intent.symbol] = selling.get(intent.symbol, Decimal(0)) + (
                        intent.amount)
        self.refused_all = bool(verdicts) and not any(v.accepted for v in verdicts)
        return verdicts

    def retry_at(self) -> float:
        """When (monotonic) the per-minute budget next frees a place; inf if it never
        binds. Until then a refused limit order is refused again: nothing but a fill, a
        cancel or this moment can lift the other limits' refusals of limit orders (their
        notional is at their own price), which lets an event-driven engine sleep through
        a decision the gate refuses (`ctsd.engine.wakes`)."""
        if self._limits.max_orders_per_minute is None:
            return math.inf
        cutoff = self._clock.monotonic() - WINDOW_S
        while self._placed and self._placed[0] <= cutoff:
            self._placed.popleft()
        return self._placed[0] + WINDOW_S if self._placed else math.inf

    def _refusal(self, intent: OrderIntent, market: MarketSnapshot, portfolio: Portfolio,
                 selling: dict[str, Decimal]) -> str | None:
        symbol_market = market.get(intent.symbol)
        if symbol_market is None:
            return None  # `_reason` says there is no price
        held = portfolio.position(intent.symbol).amount
        return refusal(intent, symbol_market.info, self._hedge, held,
                       selling.get(intent.symbol, Decimal(0)))

    def _reason(
        self, intent: OrderIntent, market: MarketSnapshot, resting: int, exposure: Decimal
    ) -> str | None:
        limits = self._limits
        price = self._price(intent, market)
        if price is None:
            return f"no price for {intent.symbol}"
        price, what = _exposure_price(intent, market, price)
        notional = intent.amount * price
        if limits.max_order_notional is not None and notional > limits.max_order_notional:
            return (f"order notional {notional:.2f}{what} exceeds max_order_notional "
                    f"{limits.max_order_notional}")
        after = exposure + _signed(intent.side, intent.amount)
        if (limits.max_position_notional is not None and abs(after) > abs(exposure)
                and abs(after) * price > limits.max_position_notional):
            return (f"position notional {abs(after) * price:.2f}{what} in {intent.symbol} would "
                    f"exceed max_position_notional {limits.max_position_notional}")
        if (limits.max_open_orders is not None and intent.type is OrderType.LIMIT
                and resting >= limits.max_open_orders):
            return f"{resting} open orders: max_open_orders {limits.max_open_orders} reached"
        if limits.max_orders_per_minute is not None:
            cutoff = self._clock.monotonic() - WINDOW_S
            while self._placed and self._placed[0] <= cutoff:
                self._placed.popleft()
            if len(self._placed) >= limits.max_orders_per_minute:
                return f"max_orders_per_minute {limits.max_orders_per_minute} reached"
        return None

    @staticmethod
    def _price(intent: OrderIntent, market: MarketSnapshot) -> Decimal | None:
        if intent.type is OrderType.LIMIT and intent.price is not None:
            return intent.price
        symbol_market = market.get(intent.symbol)
        if symbol_market is None:
            return None
        ticker = symbol_market.ticker
        return ticker.ask if intent.side is Side.BUY else ticker.bid

    def daily_loss_breach(self, pnl: PnL) -> str | None:
        """The reason to stop the engine, when today's loss has reached the limit."""
        limit = self._limits.daily_loss_limit
        if limit is not None and -pnl.today >= limit:
            return f"daily loss {-pnl.today:.2f} reached daily_loss_limit {limit}"
        return None
