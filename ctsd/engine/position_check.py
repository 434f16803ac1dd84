"""A LIVE engine's ledger against the venue's positions (perpetuals, options): find,
name, explain.

The ledger is what the engine's own fills add up to; the venue's position is
what the account holds. They differ when something else traded the account: a
trade placed by hand or by another program, a liquidation, auto-deleveraging.
Each difference is named (symbol, leg, both amounts) and explained from the
venue's own records since the engine last agreed with it: a liquidation the
venue recorded, fills of orders that are not the engine's, or neither (the
venue's history does not show it: auto-deleveraging, or a fill older than the
history reaches).

A difference is only acted on once it survives a second look: the engine's
own fills reach the ledger by another read than the positions (over REST, or
by the private order stream, which may run a moment behind or ahead of the
positions read), so the engine first reads positions, then every order and
fill, over REST and compares again. What the engine's own fills explain is gone
after that read; a difference left after a read that brought no fill of the
engine's is someone else's doing. If own fills keep arriving during the reads,
it reads again, at most `CONFIRM_READS` times, then treats what is left as real:
the check fails closed, it never waits for quiet. Positions from a private stream
(no REST read per cycle) get `STREAM_LAG_S` for their stream to catch up before
that second look is spent on them.

Adopting a difference books the venue's own fills of the other orders (so PnL
keeps matching the venue's) and, for whatever they do not explain, one
adjustment fill at the mark price that makes the ledger equal the venue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.account_ports import PerpetualAccount
from ctsd.engine.ledger import Ledger, split_symbol
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import VenuePosition, VenueTrade
from ctsd.strategies.model import OrderType, PositionSide, Side

ZERO = Decimal(0)
TOLERANCE = Decimal("0.000000001")
EXTERNAL_PREFIX = "external-"
CONFIRM_READS = 3
"""REST reads that may confirm a difference while the engine's own fills keep arriving."""
STREAM_LAG_S = 2.0
"""How long a difference between streamed positions and the ledger may last before it is
confirmed over REST: the venues send an order's fill and its position change as separate
messages (Binance `ORDER_TRADE_UPDATE` and `ACCOUNT_UPDATE`, Bybit `order`/`execution` and
`position`, OKX `orders` and `positions`), so one may arrive a moment before the other."""


class StreamLag:
    """The stream-lag rule: positions from a private stream may run a moment behind (or
    ahead of) the order updates that moved the ledger, so a difference is confirmed over
    REST only once it has lasted `STREAM_LAG_S`, and the engine is woken then (`wake`),
    whatever the market does. A real outside change or a liquidation is so acted on
    within `STREAM_LAG_S`, plus the engine's cycle spacing and the REST reads."""

    def __init__(self, clock: Clock, wake: Callable[[float], None] | None) -> None:
        self._clock = clock
        self._wake = wake
        self._since: float | None = None

    def young(self) -> bool:
        """A difference is seen now: whether it is still within the stream's lag."""
        now = self._clock.monotonic()
        if self._since is None:
            self._since = now
            if self._wake is not None:
                self._wake(STREAM_LAG_S)
        return now - self._since < STREAM_LAG_S

    def clear(self) -> None:
        """No difference (or one just confirmed over REST): the next starts afresh."""
        self._since = None


class PositionMismatch(Exception):  # control flow: the supervisor fails the engine closed
    """The venue's positions differ from the ledger and the engine may not trade on."""


@dataclass(frozen=True, slots=True)
class Difference:
    symbol: str
    side: PositionSide
    ledger: Decimal
    venue: Decimal
    mark: Decimal | None
    cause: str = ""

    def __str__(self) -> str:
        leg = "" if self.side is PositionSide.BOTH else f" {self.side.value}"
        cause = f" ({self.cause})" if self.cause else ""
        return (f"{self.symbol}{leg}: ledger {self.ledger.normalize():f}, venue "
                f"{self.venue.normalize():f}{cause}")


def differences(ledger: Ledger, venue: Iterable[VenuePosition],
                symbols: Sequence[str]) -> list[Difference]:
    """Every (symbol, leg) of `symbols` whose ledger amount is not the venue's. A leg the
    venue holds in both margin modes (OKX keeps them apart) counts with both."""
    held: dict[tuple[str, PositionSide], Decimal] = {}
    marks: dict[str, Decimal] = {}
    for position in venue:
        held[position.key] = held.get(position.key, ZERO) + position.amount
        marks[position.symbol] = position.mark_price
    return compare(ledger, held, marks, symbols)


def compare(ledger: Ledger, held: Mapping[tuple[str, PositionSide], Decimal],
            marks: Mapping[str, Decimal], symbols: Sequence[str]) -> list[Difference]:
    """Every (symbol, leg) of `symbols` whose ledger amount is not what the venue holds
    (`held`, signed; options: contracts, one leg)."""
    keys = {(p.symbol, p.side) for p in ledger.positions() if p.symbol in symbols}
    keys |= {k for k in held if k[0] in symbols}
    found = []
    for symbol, side in sorted(keys, key=lambda k: (k[0], k[1].value)):
        ours = ledger.position(symbol, side).amount
        amount = held.get((symbol, side), ZERO)
        if abs(ours - amount) > TOLERANCE:
            found.append(Difference(symbol, side, ours, amount, marks.get(symbol)))
    return found


async def explain(account: PerpetualAccount, found: Sequence[Difference], since_ms: int,
                  own_order_ids: set[str]) -> tuple[list[Difference], list[VenueTrade]]:
    """Each difference with its cause, and the venue's fills of orders not the engine's."""
    explained: list[Difference] = []
    outside: list[VenueTrade] = []
    for symbol in sorted({d.symbol for d in found}):
        liquidations = await account.liquidations(symbol, since_ms)
        trades = [t for t in await account.trades(symbol, since_ms)
                  if t.order_id not in own_order_ids]
        outside += trades
        if liquidations:
            cause = "liquidation" if liquidations == 1 else f"{liquidations} liquidations"
        elif trades:
            orders = sorted({t.order_id for t in trades})
            cause = f"outside trade: venue order {', '.join(orders[:3])}"
        else:
            cause = "not in the venue's fill history: auto-deleveraging?"
        explained += [with_cause(d, cause) for d in found if d.symbol == symbol]
    return explained, outside


def with_cause(difference: Difference, cause: str) -> Difference:
    return Difference(difference.symbol, difference.side, difference.ledger,
                      difference.venue, difference.mark, cause)


def adoption(found: Sequence[Difference], outside: Sequence[VenueTrade], hedge: bool,
             now_ms: int, marks: Mapping[str, Decimal]) -> list[Execution]:
    """Executions that make the ledger equal the venue: the outside fills (one-way
    accounts: a fill of the net position is unambiguous), then one adjustment per
    difference they leave, at the mark price (the venue's, else the engine's last)."""
    executions: list[Execution] = []
    moved: dict[tuple[str, PositionSide], Decimal] = {}
    if not hedge:
        by_order: dict[str, list[VenueTrade]] = {}
        for trade in outside:
            by_order.setdefault(trade.order_id, []).append(trade)
        for order_id, trades in sorted(by_order.items()):
            executions.append(_external(order_id, trades))
            for trade in trades:
                key = (trade.symbol, PositionSide.BOTH)
                signed = trade.amount if trade.side is Side.BUY else -trade.amount
                moved[key] = moved.get(key, ZERO) + signed
    for diff in found:
        gap = diff.venue - diff.ledger - moved.get((diff.symbol, diff.side), ZERO)
        if abs(gap) > TOLERANCE:
            price = diff.mark or marks.get(diff.symbol, ZERO)
            executions.append(_adjustment(diff, gap, price, now_ms))
    return executions


def _external(order_id: str, trades: Sequence[VenueTrade]) -> Execution:
    """The venue's fills of an order that is not the engine's, as a filled order."""
    first = trades[0]
    cid = f"{EXTERNAL_PREFIX}{order_id}"
    filled = sum((t.amount for t in trades), ZERO)
    value = sum((t.amount * t.price for t in trades), ZERO)
    fee = sum((t.fee for t in trades), ZERO)
    order = Order(cid, first.symbol, first.side, OrderType.MARKET, filled, None, "adopted", 0,
                  OrderStatus.FILLED, filled, value / filled if filled else None, fee, order_id,
                  "adopted from the venue", first.timestamp_ms, first.timestamp_ms)
    fills = tuple(Fill(f"venue-{t.trade_id}", cid, t.symbol, t.side, t.amount, t.price, t.fee,
                       t.fee_asset, t.timestamp_ms, t.maker) for t in trades)
    return Execution(order, fills)


def _adjustment(diff: Difference, gap: Decimal, price: Decimal, now_ms: int) -> Execution:
    side = Side.BUY if gap > 0 else Side.SELL
    leg = diff.side.value
    cid = f"adjust-{split_symbol(diff.symbol)[0]}-{leg}-{now_ms}"
    amount = abs(gap)
    order = Order(cid, diff.symbol, side, OrderType.MARKET, amount, None, "adjusted", 0,
                  OrderStatus.FILLED, amount, price, ZERO, "", f"adjusted to the venue: {diff}",
                  now_ms, now_ms, position_side=diff.side)
    fill = Fill(f"{cid}-1", cid, diff.symbol, side, amount, price, ZERO,
                split_symbol(diff.symbol)[1], now_ms, position_side=diff.side)
    return Execution(order, (fill,))
