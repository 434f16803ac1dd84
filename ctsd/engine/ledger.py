"""Positions, average prices and PnL, derived from fills and funding payments alone.

Both brokers feed the same ledger, so paper and live report PnL identically,
and replaying the persisted trades and funding payments at start rebuilds it
exactly: the ledger has no state that is not a fold over them. Realized PnL is
net of fees and includes funding, so it moves as the venue's wallet does.

Fees: one in the quote asset is a realized cost. One in the base asset (a spot buy
on Binance, Bybit or OKX) is paid out of the base the buy receives, so the position
is what the wallet holds: a buy of 1 ETH with a 0.001 ETH fee opens 0.999 ETH whose
average price carries the whole cost; a base fee on a trade that reduces the
position takes that much more off it, at its average price. A fee in a third
asset, such as BNB, has no price here and is not counted. `fees` sums every fee
valued in the quote asset, whichever way it was paid.

Positions are kept per (symbol, position side): one per symbol on spot and
one-way perpetuals (side BOTH, signed), two legs on a hedge-mode account (LONG
never below zero, SHORT never above).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from ctsd.engine.orders import Fill
from ctsd.engine.perpetual import FundingPayment, PaymentKind
from ctsd.strategies.model import Position, PositionSide, Side

ZERO = Decimal(0)


def split_symbol(symbol: str) -> tuple[str, str]:
    """(base, quote) of a unified symbol: `BTC/USDT` and `BTC/USDT:USDT` both give BTC, USDT."""
    base, _, rest = symbol.partition("/")
    return base, rest.partition(":")[0]


def utc_day(timestamp_ms: int) -> date:
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).date()


@dataclass(frozen=True, slots=True)
class PnL:
    realized: Decimal
    unrealized: Decimal
    realized_today: Decimal

    @property
    def today(self) -> Decimal:
        """Realized since UTC midnight plus everything open now: what the daily loss limit reads."""
        return self.realized_today + self.unrealized


PositionKey = tuple[str, PositionSide]


class Ledger:
    def __init__(self, fills: Iterable[Fill] = (),
                 funding: Iterable[FundingPayment] = ()) -> None:
        self._positions: dict[PositionKey, Position] = {}
        self._realized = ZERO
        self._day: date | None = None
        self._realized_day = ZERO
        self._fills = 0
        self.fees = ZERO
        """Every fee paid, in the quote asset."""
        self.funding = ZERO
        """Every funding payment, signed as the wallet moved (received positive)."""
        self.interest = ZERO
        """Every interest charge on margin loans, in the quote asset (paid: negative)."""
        self._funding_ids: set[str] = set()
        for fill in fills:
            self.apply(fill)
        for payment in funding:
            self.apply_funding(payment)

    @property
    def fill_count(self) -> int:
        return self._fills

    def position(self, symbol: str, side: PositionSide = PositionSide.BOTH) -> Position:
        return self._positions.get((symbol, side)) or Position(symbol, ZERO, ZERO, side)

    def positions(self) -> tuple[Position, ...]:
        """Every position ever held, empty ones included, by symbol then side."""
        return tuple(self._positions[k] for k in sorted(self._positions,
                                                        key=lambda k: (k[0], k[1].value)))

    def apply_funding(self, payment: FundingPayment) -> bool:
        """Book one funding payment into realized PnL, once per id; False if seen before."""
        if payment.funding_id in self._funding_ids:
            return False
        self._funding_ids.add(payment.funding_id)
        if payment.kind is PaymentKind.INTEREST:
            self.interest += payment.amount
        else:
            self.funding += payment.amount
        self._book_realized(payment.amount, utc_day(payment.timestamp_ms))
        return True

    def has_funding(self, funding_id: str) -> bool:
        return funding_id in self._funding_ids

    def apply(self, fill: Fill) -> Decimal:
        """Book one fill; returns the PnL it realized, net of its fee."""
        key = (fill.symbol, fill.position_side)
        held = self.position(*key)
        signed = fill.amount if fill.side is Side.BUY else -fill.amount
        realized = ZERO
        self.fees += self._fee_in_quote(fill)
        base_fee = fill.fee if fill.fee_asset == split_symbol(fill.symbol)[0] else ZERO
        if base_fee and fill.side is Side.BUY and held.amount >= 0:
            # the fee comes out of what the buy receives: fewer units carry the whole cost
            total = held.amount + fill.amount - base_fee
            avg = (held.amount * held.avg_price + fill.amount * fill.price) / total
            self._positions[key] = Position(fill.symbol, total, avg, fill.position_side)
            self._fills += 1
            return realized
        if held.amount == 0 or (held.amount > 0) == (signed > 0):
            total = abs(held.amount) + fill.amount
            avg = (abs(held.amount) * held.avg_price + fill.amount * fill.price) / total
        else:
            closed = min(fill.amount, abs(held.amount))
            direction = 1 if held.amount > 0 else -1
            realized = (fill.price - held.avg_price) * closed * direction
            remaining = held.amount + signed
            if remaining == 0:
                avg = ZERO
            elif (remaining > 0) != (held.amount > 0):
                avg = fill.price  # flipped through zero: the rest opened at this fill
            else:
                avg = held.avg_price
        remaining = held.amount + signed
        if base_fee:  # paid in units the wallet held: they leave at their cost
            realized -= base_fee * (held.avg_price if held.amount > 0 else fill.price)
            remaining -= base_fee
        else:
            realized -= self._fee_in_quote(fill)
        self._positions[key] = Position(fill.symbol, remaining, avg, fill.position_side)
        self._book_realized(realized, utc_day(fill.timestamp_ms))
        self._fills += 1
        return realized

    def _book_realized(self, amount: Decimal, day: date) -> None:
        if day != self._day:
            self._day, self._realized_day = day, ZERO
        self._realized += amount
        self._realized_day += amount

    @staticmethod
    def _fee_in_quote(fill: Fill) -> Decimal:
        base, quote = split_symbol(fill.symbol)
        if fill.fee_asset == quote:
            return fill.fee
        if fill.fee_asset == base:
            return fill.fee * fill.price
        return ZERO

    def unrealized(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Open PnL at `marks` (symbol -> price); symbols without a mark count as zero."""
        return sum(
            ((marks[p.symbol] - p.avg_price) * p.amount
             for p in self._positions.values() if p.amount and p.symbol in marks),
            ZERO,
        )

    def pnl(self, marks: Mapping[str, Decimal], now_ms: int) -> PnL:
        today = self._realized_day if self._day == utc_day(now_ms) else ZERO
        return PnL(self._realized, self.unrealized(marks), today)
