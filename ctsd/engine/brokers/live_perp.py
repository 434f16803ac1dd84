"""LIVE perpetuals: `LiveBroker`'s orders, plus the venue's positions and funding payments.

The venue, not the engine, knows what the account holds: a liquidation, an
outside trade or auto-deleveraging change a position without any order of the
engine's. So every session start and every refresh read the symbols' positions
from the venue (the engine compares them with its ledger,
`ctsd.engine.position_check`). Positions are read *before* the orders: an own
order that fills in between shows in the ledger and not yet in the positions,
a difference the engine confirms with a second read before acting on it.

With a private order stream (a WebSocket connection) orders and fills arrive as
for spot (`LiveBroker`), REST reconciling, and so do the positions
(`PositionUpdates`, the same socket): each leg's update is merged into the
positions last read over REST (a flat leg leaves them; what the stream does
not carry, such as Binance's mark and liquidation price, is kept from that
read). REST reads the positions only when the session starts, after a gap in
the stream (reconnect, stall, failed login), when the engine doubts them (its
second look, `refresh_from_venue`), every `reconcile_s` once the cycle's
orders have left (`after_cycle`), and there too after a fill whose position
update lacks the venue's liquidation price (Binance's `ACCOUNT_UPDATE` has
none). The order and position updates are not one snapshot: a fill whose
position update has not come yet (or came first) is a difference the engine
tolerates for a moment (`positions_streamed`; the stream-lag rule,
`ctsd.engine.position_check.StreamLag`) before it confirms it over REST.

Funding comes from the venue's own history (Binance income, Bybit executions,
OKX bills), read at session start and then at most every `funding_poll_s` while
a position is open or the funding time the venue announced has passed (and
once more after a position closes), from the newest payment already booked.
Payments keep the venue's id, so reading one twice books it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ctsd.clock import Clock
from ctsd.engine.account_ports import PerpetualAccount, PositionUpdates
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.order_ports import ExchangeOrderClient, OrderUpdates
from ctsd.engine.orders import Execution, Fill, Order
from ctsd.engine.perpetual import FundingPayment, MarginMode, VenuePosition
from ctsd.strategies.model import MarketSnapshot, PositionSide

DEFAULT_FUNDING_POLL_S = 600.0
"""How often a held position's funding history is read (Hummingbot's Binance cadence)."""
LOOKBACK_MS = 60_000
"""Funding is read from a minute before the newest booked payment (clocks differ)."""


class LivePerpBroker(LiveBroker):
    def __init__(
        self, client: ExchangeOrderClient, account: PerpetualAccount, symbols: Sequence[str],
        clock: Clock, *, funding_poll_s: float = DEFAULT_FUNDING_POLL_S,
        check_before_place: bool = True, updates: OrderUpdates | None = None,
        positions: PositionUpdates | None = None, reconcile_s: float = 60.0,
        reconcile_phase: float = 0.0,
    ) -> None:
        super().__init__(client, symbols, clock, check_before_place=check_before_place,
                         updates=updates, reconcile_s=reconcile_s,
                         reconcile_phase=reconcile_phase)
        self._account = account
        self._stream = positions
        self._positions_read = -float("inf")
        """Monotonic time of the last REST read of the positions."""
        self._doubted = True
        """The positions must be read over REST before they are used again."""
        self._streamed = False
        """`positions()` is the stream's view, not this refresh's REST read."""
        self.position_reads = 0
        self._funding_poll_s = funding_poll_s
        self._positions: dict[tuple[str, PositionSide, MarginMode], VenuePosition] = {}
        """By leg and margin mode: OKX keeps a leg's cross and isolated positions apart."""
        self._funding: list[FundingPayment] = []
        self._seen_funding: set[str] = set()
        self._funding_since_ms = 0
        self._checked_at: float | None = None
        self._due_ms: int | None = None
        """The next funding time the venue announced, when the engine told us."""
        self._held_since_check = False

    def positions(self) -> tuple[VenuePosition, ...]:
        return tuple(self._positions.values())

    def positions_streamed(self) -> bool:
        return self._streamed

    def take_funding(self) -> tuple[FundingPayment, ...]:
        taken, self._funding = tuple(self._funding), []
        return taken

    def refresh_now(self) -> tuple[Execution, ...] | None:
        """Without a positions stream never: every refresh reads the positions over REST.
        With one, the stream's orders and positions, unless either may have missed an
        update (then None: `refresh` reads REST before the engine decides)."""
        stream = self._stream
        if stream is None or self._positions_doubtful(stream):
            return None
        changed = super().refresh_now()
        if changed is not None:
            self._merge_stream(stream)
        return changed

    async def after_cycle(self) -> tuple[Execution, ...]:
        """The slow REST reads that fell due by time alone: the orders' and positions'
        reconciliation, the funding history (see the module doc)."""
        if self._stream is not None and (
                self._positions_stale() or self._funding_is_due(self.positions())):
            return await self.refresh()
        return await super().after_cycle()

    def _positions_doubtful(self, stream: PositionUpdates) -> bool:
        return self._doubted or stream.positions_gap or not stream.live

    def _positions_stale(self) -> bool:
        return self._clock.monotonic() - self._positions_read >= self._reconcile_s

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        """No venue call: notes the next funding time the venue announces (once it has
        passed, the next refresh reads the funding history), and (with a stream) which
        resting orders the market traded through, whose fill is now due."""
        for symbol_market in market.symbols:
            if symbol_market.funding is not None:
                due = symbol_market.funding.next_time_ms
                self._due_ms = due if self._due_ms is None else min(self._due_ms, due)
        return await super().poll(market)

    async def reconcile(
        self, known: Sequence[Order], fills: Sequence[Fill],
        funding: Sequence[FundingPayment] = (),
    ) -> tuple[Execution, ...]:
        self._seen_funding = {p.funding_id for p in funding}
        starts = [p.timestamp_ms for p in funding] or [f.timestamp_ms for f in fills[:1]]
        self._funding_since_ms = max(starts, default=self._clock.now_ms()) - LOOKBACK_MS
        self._doubted = True
        positions = await self._account.positions(self._symbols)
        payments = await self._read_funding() if fills else None
        changed = await super().reconcile(known, fills, funding)
        self._publish(positions, payments)
        return changed

    async def refresh_from_venue(self) -> tuple[Execution, ...]:
        self._doubted = True  # left set if cancelled midway: the next refresh reads REST
        return await super().refresh_from_venue()

    async def refresh(self) -> tuple[Execution, ...]:
        """Positions (over REST unless the stream has them) and (when due) funding first,
        then the orders; the results are kept only once every read is done, so a refresh
        cancelled midway changes nothing."""
        stream = self._stream
        positions = None
        if stream is None or self._positions_doubtful(stream) or self._positions_stale():
            positions = await self._account.positions(self._symbols)
        held = positions if positions is not None else self.positions()
        payments = await self._read_funding() if self._funding_is_due(held) else None
        changed = await super().refresh()
        self._publish(positions, payments)
        return changed

    def _funding_is_due(self, positions: tuple[VenuePosition, ...]) -> bool:
        holding = bool(positions) or bool(self._positions)
        self._held_since_check |= holding
        if not self._held_since_check:
            return False
        now = self._clock.monotonic()
        passed = self._due_ms is not None and self._clock.now_ms() >= self._due_ms
        return passed or self._checked_at is None or (
            now - self._checked_at >= self._funding_poll_s)

    async def _read_funding(self) -> tuple[FundingPayment, ...]:
        found: list[FundingPayment] = []
        for symbol in self._symbols:
            found += await self._account.funding_payments(symbol, self._funding_since_ms)
        return tuple(found)

    def _publish(self, positions: tuple[VenuePosition, ...] | None,
                 payments: tuple[FundingPayment, ...] | None) -> None:
        """Keep what a reconcile or refresh read; `positions` None: the stream's are used,
        `payments` None: funding was not read."""
        stream = self._stream
        if positions is not None:
            self._positions = {_slot(p): p for p in positions}
            self._positions_read = self._clock.monotonic()
            self.position_reads += 1
            self._doubted = self._streamed = False
            if stream is not None:
                stream.drain_positions()  # what it said before is in what REST just said
        elif stream is not None:
            self._merge_stream(stream)
        if payments is None:
            return
        self._checked_at = self._clock.monotonic()
        self._held_since_check = bool(self._positions)
        self._due_ms = None
        fresh = [p for p in payments if p.funding_id not in self._seen_funding]
        self._seen_funding |= {p.funding_id for p in fresh}
        self._funding += fresh
        if fresh:
            self._funding_since_ms = max(p.timestamp_ms for p in fresh) - LOOKBACK_MS

    def _merge_stream(self, stream: PositionUpdates) -> None:
        """Each leg's streamed update over what was known (a flat leg leaves); fields the
        venue's stream leaves out are kept from the last read of the leg."""
        updates, gap = stream.drain_positions()
        self._doubted |= gap
        self._streamed = True
        for update in updates:
            if update.symbol not in self._symbols:
                continue
            if not update.amount:
                self._positions.pop(_slot(update), None)
                continue
            known = self._positions.get(_slot(update))
            if update.liquidation_price is None and (
                    known is None or known.amount != update.amount):
                self._positions_read = -float("inf")  # `after_cycle` reads the venue's figures
            self._positions[_slot(update)] = with_known(update, known)


def _slot(position: VenuePosition) -> tuple[str, PositionSide, MarginMode]:
    return position.symbol, position.side, position.margin_mode


def with_known(update: VenuePosition, known: VenuePosition | None) -> VenuePosition:
    """`update` with what its stream does not carry (Binance: no mark price, leverage,
    liquidation price or margin; a missing mark is 0) taken from the last known state of
    the leg. Where the size changed and the stream has no liquidation price, the broker
    reads the venue's figures once the cycle's orders have left (one REST read per fill on
    Binance, none in steady state)."""
    if known is None:
        return update if update.mark_price else replace(update, mark_price=update.entry_price)
    return replace(update, mark_price=update.mark_price or known.mark_price,
                   leverage=update.leverage or known.leverage,
                   liquidation_price=update.liquidation_price or known.liquidation_price,
                   margin=update.margin or known.margin)
