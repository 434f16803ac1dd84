"""The paper perpetuals account: positions, margin, maintenance and liquidation prices,
computed as the venues compute them.

Plain arithmetic on one settle asset's wallet, kept apart from order handling
(`ctsd.engine.brokers.paper_perp`) so each stays readable. The formulas are
the ones Binance publishes and the simulator implements for every venue:

- a position's initial margin is `notional / leverage`: cross at the mark price,
  isolated set aside at entry (`qty * price / leverage`) and released pro rata
  as the position closes;
- maintenance margin is `notional * mmr - deduction` of the tier the notional
  falls in;
- available = wallet + cross unrealized PnL - cross initial margin - isolated
  margins - margin held by resting orders;
- an isolated position is liquidated when its margin plus unrealized PnL falls
  to its maintenance margin, the cross positions together when the cross wallet
  plus their unrealized PnL falls to their maintenance margin;
- the liquidation price is the mark at which that happens (Binance's formula,
  solved in the tier the price itself falls in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ctsd.engine.perpetual import LeverageTier, MarginMode, VenuePosition, tier_for
from ctsd.strategies.model import PositionSide, Side

ZERO = Decimal(0)
PNL_STEP = Decimal("0.00000001")
PRICE_STEP = Decimal("0.00000001")
Slot = tuple[str, PositionSide]


@dataclass
class PaperPosition:
    """One open position: signed size, entry price, leverage, and isolated margin."""

    symbol: str
    side: PositionSide
    mode: MarginMode
    leverage: Decimal
    qty: Decimal = ZERO
    entry: Decimal = ZERO
    isolated_margin: Decimal = ZERO

    @property
    def size(self) -> Decimal:
        return abs(self.qty)

    def upnl(self, mark: Decimal) -> Decimal:
        return self.qty * (mark - self.entry)

    def initial_margin(self, mark: Decimal) -> Decimal:
        return (self.size * mark / self.leverage).quantize(PNL_STEP)


def closes(before: Decimal, after: Decimal) -> bool:
    """Whether going from `before` to `after` only closes (never grows nor flips)."""
    return before != 0 and abs(after) < abs(before) and (
        after == 0 or (after > 0) == (before > 0))


class PerpLedger:
    """The wallet and open positions of one paper perpetuals account."""

    def __init__(self, wallet: Decimal, mode: MarginMode) -> None:
        self.wallet = wallet
        self.mode = mode
        self.positions: dict[Slot, PaperPosition] = {}
        self.tiers: dict[str, tuple[LeverageTier, ...]] = {}

    # --- moving positions ----------------------------------------------------------

    def held(self, slot: Slot) -> Decimal:
        pos = self.positions.get(slot)
        return pos.qty if pos else ZERO

    def fill(self, slot: Slot, side: Side, qty: Decimal, price: Decimal, fee: Decimal,
             leverage: Decimal) -> Decimal:
        """Move the slot's position by a fill; returns the PnL it realized (before fee)."""
        pos = self.positions.get(slot)
        if pos is None:
            pos = self.positions[slot] = PaperPosition(slot[0], slot[1], self.mode, leverage)
        before = pos.qty
        after = before + (qty if side is Side.BUY else -qty)
        pnl = self._move(pos, before, after, price)
        self.wallet += pnl - fee
        if after == 0:
            del self.positions[slot]
        return pnl

    @staticmethod
    def _move(pos: PaperPosition, before: Decimal, after: Decimal, price: Decimal) -> Decimal:
        pos.qty = after
        isolated = pos.mode is MarginMode.ISOLATED
        if before == 0 or (before > 0) == (after > before):  # opens or adds
            pos.entry = (before * pos.entry + (after - before) * price) / after
            if isolated:
                pos.isolated_margin += (abs(after - before) * price / pos.leverage).quantize(
                    PNL_STEP)
            return ZERO
        closing = min(abs(before), abs(after - before))
        direction = 1 if before > 0 else -1
        pnl = (closing * (price - pos.entry) * direction).quantize(PNL_STEP)
        if isolated:
            pos.isolated_margin -= (pos.isolated_margin * closing / abs(before)).quantize(
                PNL_STEP)
        if after != 0 and (after > 0) != (before > 0):  # flipped: the rest opened here
            pos.entry = price
            if isolated:
                pos.isolated_margin = (abs(after) * price / pos.leverage).quantize(PNL_STEP)
        return pnl

    # --- valuing them ---------------------------------------------------------------

    def maintenance(self, pos: PaperPosition, mark: Decimal) -> Decimal:
        notional = pos.size * mark
        tiers = self.tiers.get(pos.symbol)
        return tier_for(tiers, notional).maintenance(notional) if tiers else ZERO

    def cross_wallet(self) -> Decimal:
        """The wallet minus what isolated positions hold."""
        return self.wallet - sum((p.isolated_margin for p in self.positions.values()
                                  if p.mode is MarginMode.ISOLATED), ZERO)

    def available(self, marks: Mapping[str, Decimal], held_by_orders: Decimal) -> Decimal:
        available = self.wallet - held_by_orders
        for pos in self.positions.values():
            mark = marks.get(pos.symbol, pos.entry)
            if pos.mode is MarginMode.ISOLATED:
                available -= pos.isolated_margin
            else:
                available += pos.upnl(mark) - pos.initial_margin(mark)
        return available

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        return self.wallet + sum((p.upnl(marks.get(p.symbol, p.entry))
                                  for p in self.positions.values()), ZERO)

    def views(self, marks: Mapping[str, Decimal]) -> tuple[VenuePosition, ...]:
        found = []
        for (symbol, side), pos in sorted(self.positions.items(),
                                          key=lambda kv: (kv[0][0], kv[0][1].value)):
            mark = marks.get(symbol, pos.entry)
            margin = (pos.isolated_margin if pos.mode is MarginMode.ISOLATED
                      else pos.initial_margin(mark))
            found.append(VenuePosition(
                symbol, side, pos.qty, pos.entry, mark, pos.leverage, pos.mode, margin,
                self.liquidation_price(pos, marks), pos.upnl(mark)))
        return tuple(found)

    def liquidation_price(self, pos: PaperPosition,
                          marks: Mapping[str, Decimal]) -> Decimal | None:
        """Binance's formula: LP = (WB - TMM + UPNL + cum - s*q*E) / (q*mmr - s*q)."""
        size, s = pos.size, (1 if pos.qty > 0 else -1)
        tiers = self.tiers.get(pos.symbol)
        if not size or not tiers:
            return None
        if pos.mode is MarginMode.ISOLATED:
            wallet = pos.isolated_margin
        else:
            wallet = self.cross_wallet()
            for other in self._cross_others(pos):
                mark = marks.get(other.symbol, other.entry)
                wallet += other.upnl(mark) - self.maintenance(other, mark)
        mark = marks.get(pos.symbol, pos.entry)
        current = tier_for(tiers, size * mark)
        price = None
        for candidate in (current, *tiers):  # the tier the price itself falls in
            denominator = size * candidate.mmr - s * size
            if not denominator:
                continue
            price = (wallet + candidate.deduction - s * size * pos.entry) / denominator
            if price > 0 and tier_for(tiers, size * price) == candidate:
                break
        if price is None or price <= 0:
            return None
        return price.quantize(PRICE_STEP, rounding=ROUND_HALF_UP).normalize()

    def _cross_others(self, pos: PaperPosition) -> Iterable[PaperPosition]:
        return (o for o in self.positions.values()
                if o is not pos and o.mode is MarginMode.CROSS)

    # --- liquidation ----------------------------------------------------------------

    def due_for_liquidation(self, marks: Mapping[str, Decimal]) -> list[PaperPosition]:
        """The positions the marks have taken to their maintenance margin."""
        due = [p for p in self.positions.values() if p.mode is MarginMode.ISOLATED
               and p.isolated_margin + p.upnl(marks.get(p.symbol, p.entry))
               <= self.maintenance(p, marks.get(p.symbol, p.entry))]
        cross = [p for p in self.positions.values() if p.mode is MarginMode.CROSS]
        if cross:
            equity = self.cross_wallet() + sum(
                (p.upnl(marks.get(p.symbol, p.entry)) for p in cross), ZERO)
            if equity <= sum((self.maintenance(p, marks.get(p.symbol, p.entry))
                              for p in cross), ZERO):
                due += cross
        return due

    def clearance(self, pos: PaperPosition, margin_before: Decimal, pnl: Decimal,
                  fee: Decimal, maintenance: Decimal) -> Decimal:
        """What a liquidation takes beyond its fill's fee (positive: taken), as the venue
        books it: an isolated position loses exactly its margin, a cross one forfeits its
        maintenance margin (bounded by what the cross wallet holds); a cross wallet left
        negative is brought back to zero by the insurance fund."""
        if pos.mode is MarginMode.ISOLATED:
            return margin_before + pnl - fee
        left = self.cross_wallet() + pnl - fee
        taken = min(maintenance, max(left, ZERO))
        if left - taken < 0 and not any(p is not pos and p.mode is MarginMode.CROSS
                                        for p in self.positions.values()):
            taken = left  # the insurance fund covers the rest
        return taken
