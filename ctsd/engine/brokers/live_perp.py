"""LIVE perpetuals: `LiveBroker`'s orders, plus the venue's positions and funding payments.

The venue, not the engine, knows what the account holds: a liquidation, an
outside trade or auto-deleveraging change a position without any order of the
engine's. So every session start and every refresh read the symbols' positions
from the venue (the engine compares them with its ledger,
`ctsd.engine.position_check`). Positions are read *before* the orders: an own
order that fills in between shows in the ledger and not yet in the positions,
a difference the engine confirms with a second read before acting on it.

With a private order stream (a WebSocket connection) orders and fills arrive as
for spot (`LiveBroker`), REST reconciling; the positions are still read over REST
each refresh (they are what the engine checks its ledger against, and a check
needs a fresh read). The stream and that read are not one snapshot: a fill the
stream has not delivered yet, or one it delivered after the read, shows as a
difference, which the engine's second look resolves by reading positions, then
orders and fills, over REST (`refresh_from_venue`; the rule is in
`Engine._check_positions`).

Funding comes from the venue's own history (Binance income, Bybit executions,
OKX bills), read at session start and then at most every `funding_poll_s` while
a position is open or the funding time the venue announced has passed (and
once more after a position closes), from the newest payment already booked.
Payments keep the venue's id, so reading one twice books it once.
"""

from __future__ import annotations

from collections.abc import Sequence

from ctsd.clock import Clock
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.orders import Execution, Fill, Order
from ctsd.engine.perpetual import FundingPayment, VenuePosition
from ctsd.engine.ports import ExchangeOrderClient, OrderUpdates, PerpetualAccount
from ctsd.strategies.model import MarketSnapshot

DEFAULT_FUNDING_POLL_S = 600.0
"""How often a held position's funding history is read (Hummingbot's Binance cadence)."""
LOOKBACK_MS = 60_000
"""Funding is read from a minute before the newest booked payment (clocks differ)."""


class LivePerpBroker(LiveBroker):
    def __init__(
        self, client: ExchangeOrderClient, account: PerpetualAccount, symbols: Sequence[str],
        clock: Clock, *, funding_poll_s: float = DEFAULT_FUNDING_POLL_S,
        check_before_place: bool = True, updates: OrderUpdates | None = None,
    ) -> None:
        super().__init__(client, symbols, clock, check_before_place=check_before_place,
                         updates=updates)
        self._account = account
        self._funding_poll_s = funding_poll_s
        self._positions: tuple[VenuePosition, ...] = ()
        self._funding: list[FundingPayment] = []
        self._seen_funding: set[str] = set()
        self._funding_since_ms = 0
        self._checked_at: float | None = None
        self._due_ms: int | None = None
        """The next funding time the venue announced, when the engine told us."""
        self._held_since_check = False

    def positions(self) -> tuple[VenuePosition, ...]:
        return self._positions

    def take_funding(self) -> tuple[FundingPayment, ...]:
        taken, self._funding = tuple(self._funding), []
        return taken

    def refresh_now(self) -> None:
        """Never without a venue read: every refresh reads the positions the engine checks
        its ledger against (the funding terms are read each cycle anyway)."""
        return None

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
        positions = await self._account.positions(self._symbols)
        payments = await self._read_funding() if fills else None
        changed = await super().reconcile(known, fills, funding)
        self._publish(positions, payments)
        return changed

    async def refresh(self) -> tuple[Execution, ...]:
        """Positions and (when due) funding first, then the orders; the results are kept
        only once every read is done, so a refresh cancelled midway changes nothing."""
        positions = await self._account.positions(self._symbols)
        payments = await self._read_funding() if self._funding_is_due(positions) else None
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

    def _publish(self, positions: tuple[VenuePosition, ...],
                 payments: tuple[FundingPayment, ...] | None) -> None:
        """Keep what a reconcile or refresh read; `payments` None: funding was not read."""
        self._positions = positions
        if payments is None:
            return
        self._checked_at = self._clock.monotonic()
        self._held_since_check = bool(positions)
        self._due_ms = None
        fresh = [p for p in payments if p.funding_id not in self._seen_funding]
        self._seen_funding |= {p.funding_id for p in fresh}
        self._funding += fresh
        if fresh:
            self._funding_since_ms = max(p.timestamp_ms for p in fresh) - LOOKBACK_MS
