"""Perpetual-futures state of one simulated account: settings, positions, income ledger.

Plain data on purpose: no market, no venue. `ctsd.sim.derivatives` changes it
(orders, fills, settings), `ctsd.sim.funding` books funding into it and
`ctsd.sim.liquidation` closes what the mark price has liquidated; the venue
modules only read it to render their own answers.

Positions are keyed by (symbol, position side, margin mode) because that is what
the venues key them by: one-way mode holds one `BOTH` position per symbol, hedge
mode a `LONG` and a `SHORT`, and OKX can hold a cross and an isolated position in
the same instrument side by side (its margin mode is chosen per order).

The settings are the account's, each venue writing them with its own semantics
(Binance: margin type per symbol, position mode per account; Bybit: margin mode
per account, position mode per symbol or per settle coin; OKX: position mode per
account, margin mode per order). Accounts are shared by the venues of one
simulator, as balances already are; a test uses one venue per account.

The modules that change this state announce each change on the simulator's
event bus (`ctsd.sim.events`): fills through the order updates, funding as
`FUNDING_FEE`, liquidations as `LIQUIDATION`, settings as `LEVERAGE` and
`MARGIN_TYPE` account updates.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

_ZERO = Decimal(0)


class MarginMode(StrEnum):
    CROSS = "cross"
    ISOLATED = "isolated"


class PositionSide(StrEnum):
    """Which position an order trades: the one-way `BOTH`, or a hedge-mode side."""

    BOTH = "both"
    LONG = "long"
    SHORT = "short"


PositionKey = tuple[str, PositionSide, MarginMode]
LeverageKey = tuple[str, MarginMode | None, PositionSide | None]
"""(symbol, margin mode or any, hedge side or any): most specific key wins."""


@dataclass(slots=True)
class Position:
    """One open perpetual position; `qty` is signed (long > 0, short < 0)."""

    symbol: str
    side: PositionSide
    margin_mode: MarginMode
    leverage: Decimal
    id: int
    settle: str
    qty: Decimal = _ZERO
    entry_price: Decimal = _ZERO
    isolated_margin: Decimal = _ZERO
    """Isolated positions only: the part of the wallet that margins this position
    (initial margin at entry, plus funding received, minus funding paid)."""
    closed_pnl: Decimal = _ZERO
    """Trading PnL of the closing fills so far, fees excluded (OKX `pnl`)."""
    fees: Decimal = _ZERO
    """Trading fees paid so far (positive: paid)."""
    funding: Decimal = _ZERO
    """Funding so far (positive: received)."""
    funded_index: int = 0
    """The last funding time (as an index of funding intervals) that no longer
    applies to this position: each later one is settled exactly once."""
    taker_fee: Decimal = _ZERO
    """The taker rate of the venue the position was opened on (its liquidation pays it)."""
    created_ms: int = 0
    updated_ms: int = 0
    last_trade_id: int = 0

    @property
    def key(self) -> PositionKey:
        return self.symbol, self.side, self.margin_mode

    @property
    def size(self) -> Decimal:
        return abs(self.qty)

    @property
    def direction(self) -> int:
        """+1 long, -1 short (0 when flat)."""
        return (self.qty > 0) - (self.qty < 0)

    @property
    def realized_pnl(self) -> Decimal:
        """Closing PnL net of fees and funding (Bybit `curRealisedPnl`, OKX `realizedPnl`)."""
        return self.closed_pnl - self.fees + self.funding

    def snapshot(self) -> Position:
        return dataclasses.replace(self)


@dataclass
class PerpSettings:
    """Position mode, margin mode and leverage, with per-symbol overrides."""

    default_leverage: Decimal
    hedge: bool = False
    hedge_by_symbol: dict[str, bool] = field(default_factory=dict)
    margin_mode: MarginMode = MarginMode.CROSS
    margin_by_symbol: dict[str, MarginMode] = field(default_factory=dict)
    leverage: dict[LeverageKey, Decimal] = field(default_factory=dict)

    def is_hedge(self, symbol: str) -> bool:
        return self.hedge_by_symbol.get(symbol, self.hedge)

    def margin_for(self, symbol: str) -> MarginMode:
        return self.margin_by_symbol.get(symbol, self.margin_mode)

    def leverage_for(
        self, symbol: str, mode: MarginMode | None = None, side: PositionSide | None = None,
    ) -> Decimal:
        """The most specific setting: (symbol, mode, side), then coarser, then the default."""
        for key in ((symbol, mode, side), (symbol, mode, None), (symbol, None, side),
                    (symbol, None, None)):
            found = self.leverage.get(key)
            if found is not None:
                return found
        return self.default_leverage

    def set_leverage(
        self, symbol: str, value: Decimal, mode: MarginMode | None = None,
        side: PositionSide | None = None,
    ) -> None:
        """Set one key; a coarser key overrides every finer one for the symbol."""
        for key in [k for k in self.leverage if k[0] == symbol]:
            finer_mode = mode is None or key[1] == mode
            finer_side = side is None or key[2] == side
            if finer_mode and finer_side:
                del self.leverage[key]
        self.leverage[(symbol, mode, side)] = value


class LedgerKind(StrEnum):
    """Why the derivatives wallet changed; venues render each in their own history."""

    TRADE = "trade"
    FUNDING = "funding"
    LIQUIDATION = "liquidation"
    """The liquidation order's fill (its PnL and fee)."""
    LIQUIDATION_FEE = "liquidation_fee"
    """What the liquidation took beyond the fill (negative), or the insurance fund
    gave back so an isolated loss stops at the position's margin (positive)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One change of the derivatives wallet, with what every venue's history reports."""

    id: int
    time_ms: int
    kind: LedgerKind
    asset: str
    symbol: str
    amount: Decimal
    """Net change of the wallet: pnl - fee + funding (or the liquidation fee)."""
    balance_after: Decimal
    pnl: Decimal = _ZERO
    fee: Decimal = _ZERO
    funding: Decimal = _ZERO
    rate: Decimal | None = None
    """Funding rate, or the fee rate of a trade."""
    qty: Decimal = _ZERO
    """Traded quantity, or the position size funding was paid on (always positive)."""
    price: Decimal = _ZERO
    """Fill price, or the mark price of a funding payment."""
    side: str = ""
    """`buy`/`sell` of the trade; for funding, the side of the position (`buy`: long)."""
    position_side: PositionSide = PositionSide.BOTH
    margin_mode: MarginMode = MarginMode.CROSS
    position_after: Decimal = _ZERO
    """Signed position size after the change."""
    opens: bool = False
    """A trade that opened or increased its position (OKX's open/close bill subtypes)."""
    order_id: int | None = None
    client_id: str = ""
    trade_id: int | None = None
    maker: bool = False


class PerpAccount:
    """An account's perpetual positions, settings and ledger."""

    def __init__(self, default_leverage: Decimal) -> None:
        self.settings = PerpSettings(default_leverage=default_leverage)
        self.positions: dict[PositionKey, Position] = {}
        self.closed: dict[PositionKey, Position] = {}
        """The last position closed in each slot (qty 0), until one opens there again:
        what a stream reports when a close leaves the slot flat."""
        self.ledger: list[LedgerEntry] = []
        self.cum_realized: dict[str, Decimal] = {}
        """All-time realized PnL per symbol (Bybit `cumRealisedPnl`)."""
        self._ids = itertools.count(1_000_001)

    def next_id(self) -> int:
        """Position, ledger and liquidation-order numbers (unique per account)."""
        return next(self._ids)

    def open_positions(self, symbol: str | None = None) -> list[Position]:
        return [p for p in self.positions.values()
                if p.qty and (symbol is None or p.symbol == symbol)]

    def position(self, symbol: str, side: PositionSide = PositionSide.BOTH,
                 mode: MarginMode | None = None) -> Position | None:
        """The open position in that slot (any margin mode unless given)."""
        for pos in self.positions.values():
            if pos.symbol == symbol and pos.side is side and (mode is None
                                                              or pos.margin_mode is mode):
                return pos
        return None

    def net_qty(self, symbol: str) -> Decimal:
        """Signed sum of the symbol's positions (long minus short)."""
        return sum((p.qty for p in self.positions.values() if p.symbol == symbol), _ZERO)

    def record(self, entry: LedgerEntry) -> None:
        self.ledger.append(entry)

    def history(
        self, kinds: frozenset[LedgerKind] | None = None, *, symbol: str | None = None,
        start_ms: int | None = None, end_ms: int | None = None, limit: int = 100,
        newest_first: bool = False,
    ) -> list[LedgerEntry]:
        """Ledger entries in [start, end] by time: from `start` (oldest first) when it
        is given and not `newest_first`, else the newest `limit`."""
        found = sorted(
            (e for e in self.ledger if (kinds is None or e.kind in kinds)
             and symbol in (None, e.symbol)
             and (start_ms is None or e.time_ms >= start_ms)
             and (end_ms is None or e.time_ms <= end_ms)),
            key=lambda e: (e.time_ms, e.id))
        if start_ms is not None and not newest_first:
            return found[:limit]
        newest = found[-limit:] if limit else []
        return newest[::-1] if newest_first else newest
