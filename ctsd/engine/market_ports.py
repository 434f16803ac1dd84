"""What an engine reads of the market: the ports for market data and the venue's terms.

Why apart from the account's ports (`order_ports`, `account_ports`): a PAPER engine
needs these and nothing else of the venue, so the paper brokers import only this
module. Spot reads `MarketDataSource` (polled through the shared rate limiter) and,
on a WebSocket connection, `MarketEvents`; the other market kinds add the venue's
terms: `PerpetualMarketData`, `MarginMarketData`, `OptionMarketData`. Errors as
every engine port raises them (`ctsd.engine`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Protocol

from ctsd.engine.margin import LendingTerms
from ctsd.engine.options import OptionTerms
from ctsd.engine.perpetual import FundingRate, LeverageTier
from ctsd.strategies.base import DataNeeds, PriceBand
from ctsd.strategies.model import (
    Candle,
    Funding,
    MarketInfo,
    MarketSnapshot,
    OrderBookTop,
    Ticker,
    Trade,
)


class MarketDataSource(Protocol):
    async def market(self, symbol: str) -> MarketInfo:
        """Assets and taker/maker fees of `symbol`; read once per engine session."""
        ...

    async def ticker(self, symbol: str) -> Ticker: ...

    async def candles(self, symbol: str, timeframe: str, limit: int) -> tuple[Candle, ...]:
        """The last `limit` CLOSED candles, oldest first (drop the still-forming one)."""
        ...

    async def order_book(self, symbol: str, depth: int) -> OrderBookTop: ...

    async def trades(self, symbol: str, limit: int) -> tuple[Trade, ...]:
        """The last `limit` public trades, oldest first."""
        ...


class MarketEvents(Protocol):
    """What wakes an engine on a WebSocket connection instead of a fixed interval."""

    def follow(self, symbols: tuple[str, ...], needs: DataNeeds) -> None:
        """Subscribe to what the strategy reads; events are what it reacts to."""
        ...

    async def next_event(self, timeout_s: float) -> float | None:
        """Monotonic time of the first market event not yet taken (taking it), or None
        when `timeout_s` passed without one."""
        ...

    def snapshot_now(self, infos: Mapping[str, MarketInfo], needs: DataNeeds, now_ms: int,
                     ) -> MarketSnapshot | None:
        """The market from memory if every stream the strategy reads is live and holds
        enough, else None (then the engine reads through `MarketDataSource`). Called at
        the start of each cycle: the bands of the last one (`quiet`) are dropped."""
        ...

    def interrupt(self) -> None:
        """End a pending `next_event` now (the engine is stopping)."""
        ...

    def wake_after(self, delay_s: float) -> None:
        """An event in `delay_s` whatever the market does (a check that falls due then);
        a later call replaces an earlier one, `close` cancels it."""
        ...

    def quiet(self, bands: Mapping[str, tuple[PriceBand, ...]], until: float) -> None:
        """After a cycle: a ticker change that keeps its symbol inside every one of its
        bands wakes nothing until the monotonic time `until`, when the bands lapse with an
        event (`ctsd.engine.wakes`). The next market read (`snapshot_now`) drops them;
        {} drops them now. Only ticker changes are filtered (see `quiet_events`)."""
        ...

    @property
    def quiet_events(self) -> int:
        """Ticker changes that woke nothing: they stayed inside the engine's bands."""
        ...

    @property
    def streaming(self) -> bool:
        """False while any stream the engine reads is not live: it runs on REST."""
        ...

    @property
    def problem(self) -> str:
        """Why a stream is not live ("" when all are): a refusal names the venue's reason."""
        ...

    @property
    def fallbacks(self) -> int:
        """Reads served by REST because a stream was not live."""
        ...

    def close(self) -> None: ...


class PerpetualMarketData(Protocol):
    """Public facts of perpetuals: what PAPER computes margin and funding from, and what
    bounds an engine's leverage."""

    async def tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        """The symbol's leverage tiers, lowest notional first."""
        ...

    async def funding(self, symbol: str) -> Funding:
        """The rate due at the next funding time, that time, and the mark price."""
        ...

    async def funding_rates(self, symbol: str, since_ms: int) -> tuple[FundingRate, ...]:
        """Rates paid at funding times from `since_ms` on, oldest first."""
        ...


class MarginMarketData(Protocol):
    """What a paper margin account lends on: the venue's terms (the account's own rates
    where the connection has a key, else the venue's published or default ones)."""

    async def terms(self, symbols: tuple[str, ...]) -> LendingTerms:
        """Terms for the assets of `symbols` (leverage as the engine is configured)."""
        ...

    def check_leverage(self, leverage: Mapping[str, int]) -> None:
        """InvalidArgument naming `config.leverage["<symbol>"]` for leverage the venue does
        not let a margin engine choose."""
        ...


class OptionMarketData(Protocol):
    """What an options engine reads besides tickers: the contracts' terms and, once
    expired, the price the venue settled them at."""

    async def contract(self, symbol: str, field: str) -> OptionTerms:
        """InvalidArgument naming `field` for a symbol the venue lists as no option."""
        ...

    async def settlement_price(self, symbol: str) -> Decimal | None:
        """The underlying's price `symbol` settled at; None until the venue publishes it."""
        ...
