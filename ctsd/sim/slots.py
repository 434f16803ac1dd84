"""Which position slots a venue reports for a symbol, for REST lists and streams alike.

A venue lists a perpetual's position per side of its position mode: one `BOTH`
slot in one-way mode, a `LONG` and a `SHORT` slot in hedge mode, each with its
open position or empty. REST answers (Binance positionRisk and account, Bybit
position/list) and the streams that push a symbol's positions after a change
(Binance `ACCOUNT_UPDATE`, Bybit `position`) read the same slots here, so a
streamed position is the REST one of the same instant. OKX lists positions, not
slots: its stream pushes the open ones and, after a close, the closed one with
size 0 (`closed_now`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ctsd.sim import tiers
from ctsd.sim.accounts import Account
from ctsd.sim.derivatives import PositionView, views
from ctsd.sim.market import Instrument, Market
from ctsd.sim.positions import PositionSide

ONE_WAY = (PositionSide.BOTH,)
HEDGE = (PositionSide.LONG, PositionSide.SHORT)


@dataclass(frozen=True, slots=True)
class Slot:
    inst: Instrument
    side: PositionSide
    view: PositionView | None
    """The open position, valued now; None while the slot is flat."""


def sides(account: Account, inst: Instrument) -> tuple[PositionSide, ...]:
    return HEDGE if account.perp.settings.is_hedge(inst.symbol) else ONE_WAY


def symbol_slots(account: Account, market: Market, inst: Instrument,
                 open_views: list[PositionView] | None = None) -> list[Slot]:
    """Each slot of the symbol's position mode, with its open position (if any).

    `open_views` (all of the account's, from `derivatives.views`) saves valuing
    them again when a caller lists many symbols."""
    found = views(account, market, inst.symbol) if open_views is None else open_views
    by_side = {v.position.side: v for v in found if v.inst.symbol == inst.symbol}
    return [Slot(inst, side, by_side.get(side)) for side in sides(account, inst)]


def closed_now(account: Account, market: Market, symbol: str, at_ms: int) -> list[PositionView]:
    """Positions of `symbol` closed at `at_ms`, valued as flat (size 0) positions."""
    inst = market.catalog.instruments[symbol]
    mark = market.price(symbol)
    return [PositionView(pos, inst, mark, tiers.tiers(inst)[0], None)
            for pos in account.perp.closed.values()
            if pos.symbol == symbol and pos.updated_ms == at_ms]
