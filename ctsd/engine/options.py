"""Option contracts as the engine sees them (`ctsd.engine.option_session` trades them)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OptionTerms:
    """One contract: settled in cash in `settle` at expiry, paying its intrinsic value
    per unit of the underlying."""

    symbol: str
    underlying: str
    settle: str
    expiry_ms: int
    strike: Decimal
    call: bool

    def intrinsic(self, price: Decimal) -> Decimal:
        return max(price - self.strike, ZERO) if self.call else max(self.strike - price, ZERO)
