"""Which ticker moves may leave an event-driven engine asleep: its quiet bands.

Why: on a WebSocket connection every ticker change wakes the engine (`MarketEvents`),
and the simulator (like a busy venue) moves every pair at once, so a tick would run a
cycle in every engine on the one event loop, and the engine that can act waits behind
the others' useless cycles. After a cycle the engine hands its events object the bands
within which nothing can change: ticker events inside them wake nothing (and are counted,
`quiet_events`); anything else still wakes it (a candle, a stream changing state, the
private stream's fills, `wake_after`, the idle timeout, the first cycle of a session).

A band is the intersection of what the strategy says (`QuietBands`: its decision cannot
change inside) and what the engine itself reads from prices:
- PAPER: a resting buy fills once the ask reaches its price, a sell once the bid does
  (`ctsd.engine.brokers.paper`): the ask must stay above every resting buy, the bid below
  every resting sell;
- LIVE: a last price through a resting order means the venue filled it, so the broker
  expects its update (`LiveBroker.poll`: a silent private-stream stall shows as that
  update missing): the last price must stay above every resting buy, below every sell;
- the daily loss limit (`RiskGate.daily_loss_breach`) marks positions at the last price:
  each symbol held may lose at most its share of what is left before the limit (realized
  profit of today counted as gone: it is, at UTC midnight), so the limit trips at the
  first tick that reaches it, as it does without bands.

No band at all (every change wakes, as before) unless every condition holds:
- the strategy implements `QuietBands`;
- spot: perpetuals (liquidation, funding, mark prices), spot margin (interest, borrowing)
  and options (expiry, the underlying) have price- and time-dependent checks not bounded
  here;
- the cycle left the book as the strategy saw it, and decided nothing — or only limit
  orders the risk gate refused all of (a per-minute budget spent, too many open orders):
  the same intents are refused again until a fill or cancel (which wakes the engine) or
  the moment the budget frees a place (`RiskGate.retry_at`, when the bands lapse). A
  decision that placed or cancelled is looked at again on the next event: a strategy
  that is not idempotent still converges, and a band always describes a settled book;
- the broker says how long its book cannot change unseen (`Broker.quiet_until`): PAPER
  forever; LIVE while its private stream is live and trusted, until the next echo
  deadline or periodic reconciliation, when the band lapses and the engine wakes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

from ctsd.engine.ledger import PnL
from ctsd.engine.risk import RiskGate
from ctsd.strategies.base import PriceBand, PriceField, QuietBands, Strategy
from ctsd.strategies.model import (
    Intent,
    MarketKind,
    MarketSnapshot,
    OpenOrder,
    OrderIntent,
    OrderType,
    Portfolio,
    Side,
    Ticker,
)

Bands = Mapping[str, tuple[PriceBand, ...]]
"""Per symbol, every band its ticker must stay inside for the engine to sleep on."""


def quiet(bands: Bands, symbol: str, ticker: Ticker) -> bool:
    """Whether `symbol`'s `ticker` lies inside every band of it (False when it has none)."""
    found = bands.get(symbol)
    return found is not None and all(band.holds(ticker) for band in found)


class Quieting:
    """One engine's rule for its bands (see the module doc)."""

    def __init__(self, strategy: Strategy, *, spot: bool, paper: bool,
                 daily_loss_limit: Decimal | None) -> None:
        self._strategy: QuietBands | None = strategy if spot and isinstance(
            strategy, QuietBands) else None
        self._paper = paper
        self._loss_limit = daily_loss_limit

    @property
    def active(self) -> bool:
        """Whether this engine ever has bands (its strategy says where it is quiet, on
        spot): the engine need not gather what `bands` reads otherwise."""
        return self._strategy is not None

    def bands(self, market: MarketSnapshot, intents: Sequence[Intent], risk: RiskGate,
              settled: bool, portfolio: Portfolio, pnl: PnL, marks: Mapping[str, Decimal],
              until: float | None) -> tuple[Bands, float]:
        """The bands after a cycle and when they lapse (monotonic); ({}, inf) for none.

        `intents`: the strategy's decision, reviewed by `risk`; `settled`: the book is
        the one it decided on; `until`: the broker's `quiet_until`."""
        strategy = self._strategy
        if (strategy is None or not settled or until is None
                or any(m.info.kind is not MarketKind.SPOT for m in market.symbols)):
            return {}, math.inf
        if intents:
            if not risk.refused_all or not all(
                    isinstance(i, OrderIntent) and i.type is OrderType.LIMIT for i in intents):
                return {}, math.inf
            until = min(until, risk.retry_at())
        own = strategy.quiet_bands(market, portfolio)
        found: dict[str, tuple[PriceBand, ...]] = {}
        for symbol, band in own.items():
            extra = self._loss_bands(symbol, portfolio, pnl, marks)
            if extra is None:
                continue  # no room left before the limit: every move counts
            found[symbol] = (band, *self._resting(portfolio.orders_for(symbol)), *extra)
        return found, until

    def _loss_bands(self, symbol: str, portfolio: Portfolio, pnl: PnL,
                    marks: Mapping[str, Decimal]) -> tuple[PriceBand, ...] | None:
        """The last prices at which `symbol`'s share of the daily loss headroom holds."""
        limit = self._loss_limit
        held = portfolio.position(symbol)
        if limit is None or not held.amount or symbol not in marks:
            return ()
        room = limit + pnl.unrealized + min(pnl.realized_today, Decimal(0))
        holders = sum(1 for p in portfolio.positions if p.amount and p.symbol in marks)
        if room <= 0 or holders == 0:
            return None
        move = room / holders / abs(held.amount)
        mark = marks[symbol]
        if held.amount > 0:
            return (PriceBand(PriceField.LAST, lo=mark - move),)
        return (PriceBand(PriceField.LAST, hi=mark + move),)


    def _resting(self, orders: Sequence[OpenOrder]) -> tuple[PriceBand, ...]:
        """PAPER: the ask above the highest buy, the bid below the lowest sell (where the
        paper broker fills them); LIVE: the last price between them (where the broker
        expects their fills on the private stream)."""
        buys = [o.price for o in orders if o.side is Side.BUY and o.type is OrderType.LIMIT
                and o.price is not None]
        sells = [o.price for o in orders if o.side is Side.SELL
                 and o.type is OrderType.LIMIT and o.price is not None]
        bands = []
        if buys:
            bands.append(PriceBand(PriceField.ASK if self._paper else PriceField.LAST,
                                   lo=max(buys)))
        if sells:
            bands.append(PriceBand(PriceField.BID if self._paper else PriceField.LAST,
                                   hi=min(sells)))
        return tuple(bands)
