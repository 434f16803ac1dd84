"""The perpetuals part of an engine session: what it checks and sets before it trades, the
funding terms it reads with the market, and the positions it shows.

Kept out of `ctsd.engine.engine` so the cycle stays one readable page: the
engine calls `prepare` once per session before it reconciles, `with_funding`
after it reads the market, and `position_statuses` when it publishes.

Funding terms change slowly: the rate is announced for the next funding time,
and only the mark price moves with the market. An engine polling REST reads
them each cycle with the rest of the market; an engine on a WebSocket
connection (`terms_s` set) reads them over REST when the session starts, once
the announced funding time has passed (the next rate is out) and every
`terms_s`, and in between uses the terms it holds with the streamed ticker's
mark price (Bybit's tickers carry it; Binance's markPrice and OKX's mark-price
channels are not followed by the hub yet: the last price stands in), so no REST
request sits between a market event and the order it causes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from ctsd.engine.account_ports import PerpetualAccount
from ctsd.engine.config import EngineConfig, leverage_field
from ctsd.engine.ledger import Ledger
from ctsd.engine.market_ports import PerpetualMarketData
from ctsd.engine.perpetual import (
    AccountModes,
    AppliedSetting,
    LeverageTier,
    SymbolSettings,
    VenuePosition,
    max_leverage,
)
from ctsd.engine.status import PositionStatus
from ctsd.errors import FailedPrecondition, FieldViolation, InvalidArgument
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import Funding, MarketKind, MarketSnapshot, PositionSide

log = logging.getLogger("ctsd.engine")
ZERO = Decimal(0)
FUNDING_TERMS_S = 60.0
"""How often an engine on a WebSocket connection reads the funding terms between
funding times (the mark price in between is the streamed last price)."""


def check_spot(config: EngineConfig, needs: DataNeeds, connection: str) -> None:
    """What a spot connection cannot do: leverage, or a strategy set to go short."""
    found = []
    if config.leverage:
        found.append(FieldViolation("config.leverage", f"leverage applies to perpetuals; "
                                                       f"{connection} trades spot"))
    if needs.shorts:
        found.append(FieldViolation(
            "config.params", f"{config.strategy} is set to open short positions; "
                             f"{connection} trades spot, which cannot go short"))
    if found:
        raise FailedPrecondition("; ".join(f"{v.field}: {v.description}" for v in found), found)


def check_leverage(config: EngineConfig, tiers: Mapping[str, Sequence[LeverageTier]]) -> None:
    """Each configured leverage within the venue's maximum for the largest position the
    engine may hold (`max_position_notional`, else the smallest tier)."""
    size = config.risk.max_position_notional or ZERO
    found = []
    for symbol, leverage in sorted(config.leverage.items()):
        allowed = max_leverage(tiers.get(symbol, ()), size)
        if leverage > allowed:
            at = f"a position of {size} notional" if size else "its smallest tier"
            found.append(FieldViolation(leverage_field(symbol),
                                        f"{leverage}x is above the venue's maximum "
                                        f"{allowed.normalize():f}x for {at}"))
    if found:
        raise InvalidArgument("; ".join(f"{v.field}: {v.description}" for v in found), found)


class PerpSession:
    """Per engine: the perpetuals' public facts, and the LIVE account when trading live."""

    def __init__(self, config: EngineConfig, modes: AccountModes, market: PerpetualMarketData,
                 account: PerpetualAccount | None, connection_id: str,
                 terms_s: float | None = None) -> None:
        self._config = config
        self._terms_s = terms_s
        self._terms: dict[str, tuple[Funding, float]] = {}
        """The funding terms last read, by symbol, with the monotonic time of the read."""
        self.terms_reads = 0
        self.modes = modes
        self._market = market
        self.account = account
        self._connection_id = connection_id
        self.tiers: dict[str, tuple[LeverageTier, ...]] = {}

    async def prepare(self) -> tuple[AppliedSetting, ...]:
        """Bound the leverage by the venue's tiers, then (LIVE) make position mode, margin
        mode and leverage what the connection and config say, symbol by symbol."""
        for symbol in self._config.symbols:
            self.tiers[symbol] = await self._market.tiers(symbol)
        check_leverage(self._config, self.tiers)
        if self.account is None:
            return ()
        applied: list[AppliedSetting] = []
        for symbol in self._config.symbols:
            settings = SymbolSettings(symbol, self.modes, self._config.leverage.get(symbol))
            applied += await self.account.apply(settings)
        for setting in applied:
            log.info("derivatives setting applied", extra={
                "connection_id": self._connection_id, "setting": str(setting)})
        return tuple(applied)

    @property
    def market(self) -> PerpetualMarketData:
        return self._market

    async def with_funding(self, market: MarketSnapshot, now: float) -> MarketSnapshot:
        """`market` with the funding terms read now (`now`: monotonic, for `known_funding`)."""
        found = await with_funding(self._market, market)
        self.terms_reads += 1
        for m in found.symbols:
            if m.funding is not None:
                self._terms[m.info.symbol] = (m.funding, now)
        return found

    def known_funding(self, market: MarketSnapshot, now: float) -> MarketSnapshot | None:
        """`market` with the terms held, marked at the streamed ticker's mark price (Bybit's
        carries it; elsewhere the last price stands in); None when they must be read (REST
        connections always; no terms yet, a funding time passed, `terms_s`)."""
        if self._terms_s is None:
            return None
        terms = []
        for m in market.symbols:
            held = self._terms.get(m.info.symbol)
            if held is None or now - held[1] >= self._terms_s or (
                    market.timestamp_ms >= held[0].next_time_ms):
                return None
            terms.append(replace(held[0], mark=m.ticker.mark))
        return _with_terms(market, terms)


async def with_funding(source: PerpetualMarketData, market: MarketSnapshot) -> MarketSnapshot:
    """The snapshot with each perpetual's funding terms and mark price."""
    terms = await asyncio.gather(*(source.funding(m.info.symbol) for m in market.symbols))
    return _with_terms(market, terms)


def _with_terms(market: MarketSnapshot, terms: Sequence[Funding]) -> MarketSnapshot:
    return replace(market, symbols=tuple(
        replace(m, info=replace(m.info, kind=MarketKind.PERPETUAL), funding=f)
        for m, f in zip(market.symbols, terms, strict=True)))


def position_statuses(ledger: Ledger, venue: Sequence[VenuePosition],
                      marks: Mapping[str, Decimal]) -> tuple[PositionStatus, ...]:
    """Each held position: amount and entry from the ledger (current to the last fill),
    the rest from the venue's (or paper account's) valuation where it has the position."""
    valued: dict[tuple[str, PositionSide], VenuePosition] = {}
    for position in venue:  # where a leg has both margin modes (OKX), the larger is shown
        shown = valued.get(position.key)
        if shown is None or abs(position.amount) > abs(shown.amount):
            valued[position.key] = position
    found = []
    for pos in ledger.positions():
        if not pos.amount:
            continue
        mark = marks.get(pos.symbol)
        upnl = (mark - pos.avg_price) * pos.amount if mark is not None else ZERO
        seen = valued.get((pos.symbol, pos.side))
        if seen is None:
            found.append(PositionStatus(pos.symbol, pos.amount, pos.avg_price, upnl, pos.side,
                                        mark))
            continue
        found.append(PositionStatus(
            pos.symbol, pos.amount, pos.avg_price, upnl, pos.side, seen.mark_price,
            seen.leverage, seen.margin_mode, seen.margin, seen.liquidation_price))
    return tuple(found)
