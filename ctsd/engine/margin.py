"""Spot margin as the engine sees it: the venue's lending terms and its interest charges.

Plain values, venue-neutral: the exchange layer fills them from each venue's
answers (`ctsd.wiring.engine_margin`), the paper account computes with them
(`ctsd.engine.brokers.paper_margin`). A margin engine trades cross margin: an
order borrows what it lacks (a sell of more than is held borrows the base: a short)
and what an order brings in repays the asset's loan first, interest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_UP, Decimal

ZERO = Decimal(0)
AMOUNT_STEP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class LendingTerms:
    """How the venue lends (`ctsd.exchanges.model.LendingTerms`, in the engine's terms)."""

    max_leverage: Decimal
    liquidation_level: Decimal
    period_rates: tuple[tuple[str, Decimal], ...]
    period_ms: int = 3_600_000
    charge_on_borrow: bool = False
    liquidation_margin: Decimal | None = None
    margin_per_order: bool = False
    """Each position posts its own margin (OKX, Kraken): 1/leverage of its cost whichever
    its side (Kraken's used margin; OKX: a short's initial margin is its amount over its
    leverage times its price)."""
    order_leverage: Decimal | None = None
    """What each order posts its margin at, where it is not `max_leverage` (Kraken: the
    order's `leverage`, 2x unless configured, while the pair's maximum, 5x, bounds what
    the position may borrow)."""
    close_in_quote: bool = False
    """A position taken back to flat pays what it still owes in the base out of its
    quote (Kraken; `ctsd.exchanges.model.LendingTerms.close_in_quote` says why)."""
    close_by_liability: bool = False
    """A short the engine closes whole is bought back by what it owes, interest included,
    grossed up by the taker fee where a buy's fee is taken in the base: the venue's own
    close (OKX `close-position`), which leaves the position owing nothing; a buy of its
    size left the fee and the interest owed in the base, and the position open."""

    @property
    def initial_level(self) -> Decimal:
        """The margin level a borrow may not go below: 1.5 at 3x."""
        return self.max_leverage / (self.max_leverage - 1)

    def opening_level(self, short: bool) -> Decimal:
        """The level a borrow may take its wallet to: a position's short posting
        cost/leverage opens at 1 + 1/leverage (margin and proceeds over the base owed)."""
        if short and self.margin_per_order:
            return 1 + 1 / self.max_leverage
        return self.initial_level

    def rate(self, asset: str) -> Decimal:
        return next((r for a, r in self.period_rates if a == asset), ZERO)

    def charge(self, borrowed: Decimal, asset: str) -> Decimal:
        """One period's interest on `borrowed`, rounded up as the venues charge it."""
        return (borrowed * self.rate(asset)).quantize(AMOUNT_STEP, ROUND_UP)


@dataclass(frozen=True, slots=True)
class InterestCharge:
    """One interest charge in the borrowed asset, under the venue's (or paper's) id."""

    charge_id: str
    asset: str
    amount: Decimal
    timestamp_ms: int
