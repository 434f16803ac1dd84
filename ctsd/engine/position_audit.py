"""`PositionAudit`: a LIVE engine's look, each cycle, at the venue's positions against its
ledger (perpetuals and options), and what it found once a second look confirmed it.

Why apart from `Engine`: the audit is its own rule with its own reads (the positions,
then every order and fill over REST, the venue's trade history to explain a difference)
and its own memory (when the ledger last agreed, how long a streamed difference has
lasted); the engine only reports a finding on its status and in its log, and fails
closed or books the adoption as configured. The finding, named and explained, is
`ctsd.engine.position_check`'s; the rule of the second look is `confirmed` here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.brokers.base import Broker
from ctsd.engine.ledger import Ledger
from ctsd.engine.option_session import OptionSession
from ctsd.engine.orders import Execution
from ctsd.engine.perp_session import PerpSession
from ctsd.engine.perpetual import VenueTrade
from ctsd.engine.position_check import (
    CONFIRM_READS,
    Difference,
    StreamLag,
    adoption,
    differences,
    explain,
    with_cause,
)
from ctsd.engine.store_ports import EngineStore

OUTSIDE_LOOKBACK_MS = 60_000
"""The venue's trade history is read from this long before the ledger last agreed."""


@dataclass(frozen=True)
class Finding:
    """A confirmed difference: its text, the liquidations among its causes, and the
    executions that would make the ledger the venue's (adopting it)."""

    text: str
    liquidated: int
    adoption: tuple[Execution, ...]


class PositionAudit:
    def __init__(self, broker: Broker, store: EngineStore, clock: Clock, lag: StreamLag,
                 connection_id: str, symbols: tuple[str, ...], hedge: bool,
                 book: Callable[[Execution], Awaitable[None]],
                 book_funding: Callable[[], Awaitable[None]], *,
                 perp: PerpSession | None = None, options: OptionSession | None = None,
                 ) -> None:
        self._broker = broker
        self._store = store
        self._clock = clock
        self._lag = lag
        self._connection_id = connection_id
        self._symbols = symbols
        self._hedge = hedge
        self._book = book
        self._book_funding = book_funding
        self._perp = perp
        self._options = options
        self.agreed_ms = 0
        """When the ledger last agreed with the venue's positions."""

    def agreed(self, at_ms: int | None = None) -> None:
        self.agreed_ms = self._clock.now_ms() if at_ms is None else at_ms

    async def check(self, ledger: Ledger, marks: Mapping[str, Decimal]) -> Finding | None:
        """The venue's positions against `ledger`: None while they agree (or a streamed
        difference is still young); else the difference, confirmed over REST first
        (`confirmed`) and explained from the venue's records."""
        if not await self.differences(ledger, marks):
            self.agreed()
            self._lag.clear()
            return None
        if self._broker.positions_streamed() and self._lag.young():
            return None
        found = await self.confirmed(ledger, marks)
        self._lag.clear()
        if not found:
            return None
        outside: list[VenueTrade] = []
        if self._perp is not None and self._perp.account is not None:
            own = {o.exchange_order_id for o in await self._store.list_orders(
                self._connection_id)}
            found, outside = await explain(self._perp.account, found,
                                           self.agreed_ms - OUTSIDE_LOOKBACK_MS, own)
        else:  # options: the venue's option fills are not read here
            found = [with_cause(d, "not the engine's fills: an outside trade?") for d in found]
        return Finding("; ".join(str(d) for d in found),
                       sum("liquidation" in d.cause for d in found),
                       tuple(adoption(found, outside, self._hedge, self._clock.now_ms(),
                                      marks)))

    async def confirmed(self, ledger: Ledger, marks: Mapping[str, Decimal],
                        ) -> list[Difference]:
        """The rule of the second look. The positions and the engine's fills are separate
        reads (and with a private stream, separate channels: a fill the stream has not
        delivered yet, or one it delivered after the positions were read), so a first
        difference may be the engine's own fill seen on one side only. The broker then
        reads the positions and, after them, every order and fill over REST
        (`refresh_from_venue`: fills already booked from the stream are booked once, by
        trade id), and the audit compares again. A difference that survives a read in
        which no fill of the engine's arrived is real; one that survives only because
        own fills kept arriving meanwhile is read again, `CONFIRM_READS` times at most,
        and then counts as real (fail closed)."""
        found: list[Difference] = []
        for _ in range(CONFIRM_READS):
            executions = await self._broker.refresh_from_venue()
            for execution in executions:
                await self._book(execution)
            await self._book_funding()
            found = await self.differences(ledger, marks)
            if not found or not any(e.fills for e in executions):
                return found
        return found

    async def differences(self, ledger: Ledger, marks: Mapping[str, Decimal],
                          ) -> list[Difference]:
        if self._options is not None:
            return await self._options.differences(ledger, marks, self._clock.now_ms())
        if self._perp is None or self._perp.account is None:
            return []
        return differences(ledger, self._broker.positions(), self._symbols)
