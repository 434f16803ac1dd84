"""What an account owes in its margin wallets: the terms of each wallet and the loan ledger.

Plain data, like `ctsd.sim.positions`: `ctsd.sim.lending` changes it (borrow, repay,
interest, liquidation) and the venue modules render it (Binance interest history
and force-liquidation records, Bybit borrow history, OKX interest-accrued, Kraken
rollovers). What is owed itself lives on each wallet's `Holding` (`borrowed`,
`interest`), next to what is held, so a wallet's worth is read in one place.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

HOUR_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class MarginTerms:
    """How a venue lends in one kind of margin wallet.

    `level` below is the wallet's margin level, assets over liabilities (both valued
    in the quote asset): Binance's `marginLevel`, from which Bybit's and OKX's ratios
    and Kraken's margin level are derived (`ctsd.sim.lending`).
    """

    max_leverage: Decimal
    """A borrow (or an order that borrows) may not take the level below
    `max_leverage / (max_leverage - 1)`: 3x on Binance cross margin is 1.5."""
    liquidation_level: Decimal
    """At or below this level the wallet is liquidated (Binance 1.1)."""
    period_ms: int = HOUR_MS
    """Interest is charged once a period on what is borrowed (Kraken: 4 hours)."""
    charge_on_borrow: bool = False
    """A borrow pays its first period at once (Binance `ON_BORROW`, Kraken's opening fee)."""
    period_rate: Decimal | None = None
    """A flat rate per period for every asset (Kraken's rollover); else the asset's."""
    position: bool = False
    """A position wallet (OKX margin, Kraken): funded from the spot wallet per order,
    emptied back into it when flat. Its position posts 1/leverage of its cost as margin
    whichever its side (Kraken's used margin: a $10,000 short at 5x uses $2,000; OKX's
    isolated margin: a short's initial margin is its amount over its leverage times
    its price)."""
    liquidation_margin: Decimal | None = None
    """Liquidate instead when the wallet's equity is at or below this share of the
    margin posted into it (Kraken's `margin_stop`, 40 %)."""
    close_in_quote: bool = False
    """A position its fills take back to flat is closed whatever it still owes in the
    base (a short's opening fee and rollovers, charged in the borrowed asset): that is
    paid out of its quote at the closing price and the wallet empties back into spot
    (Kraken: an opposing order for the position's volume closes it, and "any remaining
    profit (or loss) is added to (or taken from) your account balances, in an amount
    denominated in the quote currency"). Else the wallet keeps what the position left
    next to that debt (OKX: a MARGIN position's liability includes its interest, and
    only the position's assets close it)."""

    @property
    def initial_level(self) -> Decimal:
        return self.max_leverage / (self.max_leverage - 1)

    def opening_level(self, short: bool) -> Decimal:
        """The level a borrow may take its wallet to: the initial level, but a position
        wallet's short, posting cost/leverage, holds its margin and the sale's proceeds
        over the base it owes, 1 + 1/leverage, below a long's at the same leverage."""
        if short and self.position:
            return 1 + 1 / self.max_leverage
        return self.initial_level


class LoanKind(StrEnum):
    BORROW = "borrow"
    REPAY = "repay"
    INTEREST = "interest"
    LIQUIDATION = "liquidation"
    """What a liquidation wrote off (the venue's insurance fund covers it)."""
    TRANSFER = "transfer"
    """Funds moved between the spot wallet and a wallet (position wallets' margin)."""


@dataclass(frozen=True, slots=True)
class LoanEntry:
    id: int
    time_ms: int
    wallet: str
    asset: str
    kind: LoanKind
    amount: Decimal
    """Borrowed, repaid (interest first), charged, written off or moved (positive)."""
    principal: Decimal
    """What is borrowed in the asset after this entry."""
    rate: Decimal = Decimal(0)
    """Interest: the rate of the period charged."""
    on_borrow: bool = False
    """Interest charged when the loan was taken (Binance `ON_BORROW`), not periodic."""
    interest_part: Decimal = Decimal(0)
    """Repayments: the share that paid interest."""


class LoanBook:
    """An account's margin terms per wallet and its loan ledger (oldest first)."""

    def __init__(self) -> None:
        self.terms: dict[str, MarginTerms] = {}
        self.ledger: list[LoanEntry] = []
        self.posted: dict[str, Decimal] = {}
        """Margin posted into each position wallet since it was last flat or settled:
        its position's and its open orders' (`ctsd.sim.lending.posted_margin`)."""
        self._ids = itertools.count(200_000_001)

    def next_id(self) -> int:
        return next(self._ids)

    def history(self, wallet: str | None = None, asset: str | None = None,
                kinds: frozenset[LoanKind] | None = None) -> list[LoanEntry]:
        return [e for e in self.ledger if wallet in (None, e.wallet) and asset in (None, e.asset)
                and (kinds is None or e.kind in kinds)]
