"""A LIVE engine's account beyond its orders: perpetual, spot-margin and option
accounts as the venue keeps them.

Why apart from `order_ports`: only LIVE engines of those market kinds read them,
to set the account up (modes, leverage) and to check the engine's own books against
the venue's (positions, funding, interest, fills, liquidations). Errors as every
engine port raises them (`ctsd.engine`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from ctsd.engine.margin import InterestCharge
from ctsd.engine.perpetual import (
    AppliedSetting,
    FundingPayment,
    SymbolSettings,
    VenuePosition,
    VenueTrade,
)


class PositionUpdates(Protocol):
    """A LIVE perpetuals connection's private positions stream, as the broker reads it.

    `drain_positions` hands over each leg's updates since the last call, oldest first
    (a flat leg has amount 0), and whether the stream had a gap meanwhile: then the
    broker reads the positions over REST, since updates may have been missed."""

    def drain_positions(self) -> tuple[list[VenuePosition], bool]: ...

    @property
    def positions_gap(self) -> bool: ...

    @property
    def live(self) -> bool: ...


class PerpetualAccount(Protocol):
    """A LIVE perpetuals account: its settings, positions and histories."""

    async def apply(self, settings: SymbolSettings) -> tuple[AppliedSetting, ...]:
        """Make position mode, margin mode and leverage of one symbol what `settings` say,
        treating the venue's "already set" as success. Raises FailedPrecondition with the
        venue's reason when it refuses (e.g. a position is open)."""
        ...

    async def positions(self, symbols: tuple[str, ...]) -> tuple[VenuePosition, ...]:
        """The open positions of `symbols` (none of them empty)."""
        ...

    async def funding_payments(self, symbol: str, since_ms: int,
                               ) -> tuple[FundingPayment, ...]:
        """Funding the account paid or received on `symbol` from `since_ms` on."""
        ...

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        """Every fill of the account on `symbol` from `since_ms` on, any order's."""
        ...

    async def liquidations(self, symbol: str, since_ms: int) -> int:
        """How many liquidations of `symbol` the venue records from `since_ms` on."""
        ...


class MarginAccount(Protocol):
    """A LIVE spot-margin account: its settings, interest charges and own fills."""

    async def prepare(self, symbols: tuple[str, ...], leverage: Mapping[str, int],
                      ) -> tuple[AppliedSetting, ...]:
        """What the venue needs before a margin engine trades (Bybit's spot-margin switch,
        the configured leverage). Raises FailedPrecondition with the venue's reason when
        it refuses, InvalidArgument naming `config.leverage` when out of its range."""
        ...

    async def interest(self, symbols: tuple[str, ...], since_ms: int,
                       ) -> tuple[InterestCharge, ...]:
        """Interest charged on the account's loans in the symbols' assets from `since_ms`."""
        ...

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        """Every fill of the account on `symbol` from `since_ms` on, any order's."""
        ...

    async def liquidation_orders(self, symbol: str, since_ms: int) -> frozenset[str] | None:
        """Venue order ids of the liquidations of `symbol` from `since_ms` on; None where
        the venue keeps no such record."""
        ...

    async def close_short(self, symbol: str, client_order_id: str) -> bool:
        """The venue's own close of the whole short of `symbol`, one market order under
        `client_order_id` that repays all the short owes, interest included (OKX
        `close-position`): True once the venue took it (the order is then read by its
        id); False where the venue has none, and an order for the short's size closes it."""
        ...


class OptionAccount(Protocol):
    """A LIVE options account: what it holds of each contract, to check the ledger."""

    async def positions(self, symbols: tuple[str, ...]) -> Mapping[str, Decimal]:
        """Contracts held per symbol of `symbols` (negative: written), none for the rest."""
        ...
