"""A perpetual position as the streams render it, read in one place.

Every venue's position message needs the same few numbers (size, entry, mark,
leverage, unrealised PnL, margin); reading them here keeps the venues' renderers
to their own field names, and is the one place to change when the account's
position model changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ctsd.sim.accounts import Account
from ctsd.sim.market import Instrument, Market

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class PositionState:
    inst: Instrument
    qty: Decimal
    """Signed: positive long, negative short, zero flat."""
    entry: Decimal
    mark: Decimal
    leverage: Decimal
    updated_ms: int

    @property
    def upnl(self) -> Decimal:
        return self.qty * (self.mark - self.entry)

    @property
    def value(self) -> Decimal:
        return abs(self.qty) * self.entry

    @property
    def margin(self) -> Decimal:
        return self.value / self.leverage


def position_state(account: Account, market: Market, symbol: str, now_ms: int) -> PositionState:
    """The account's one-way position in `symbol` now (flat if it has none)."""
    pos = account.perp.position(symbol)
    return PositionState(
        inst=market.catalog.instruments[symbol], qty=pos.qty if pos else _ZERO,
        entry=pos.entry_price if pos else _ZERO, mark=market.price(symbol),
        leverage=pos.leverage if pos else account.perp.settings.leverage_for(symbol),
        updated_ms=pos.updated_ms if pos else now_ms)


def open_positions(account: Account) -> list[str]:
    """Symbols of the account's open positions, sorted."""
    return sorted({pos.symbol for pos in account.perp.open_positions()})
