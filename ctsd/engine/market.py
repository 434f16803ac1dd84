"""Build one cycle's `MarketSnapshot` from a `MarketDataSource`, all symbols concurrently.

Market facts (fees, assets) are static for an engine session and fetched once;
tickers, and candles only when the strategy reads them, are fetched every cycle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ctsd.clock import Clock
from ctsd.engine.market_ports import MarketDataSource
from ctsd.engine.risk import RiskGate, RiskVerdict
from ctsd.strategies.base import DataNeeds, Strategy
from ctsd.strategies.model import (
    Intent,
    MarketInfo,
    MarketSnapshot,
    OrderIntent,
    Portfolio,
    SymbolMarket,
)

T = TypeVar("T")


async def fetch_infos(source: MarketDataSource, symbols: Sequence[str]) -> dict[str, MarketInfo]:
    infos = await asyncio.gather(*(source.market(s) for s in symbols))
    return {info.symbol: info for info in infos}


async def fetch_snapshot(
    source: MarketDataSource, infos: Mapping[str, MarketInfo], needs: DataNeeds,
    clock: Clock,
) -> MarketSnapshot:
    async def one(info: MarketInfo) -> SymbolMarket:
        if not (needs.candles or needs.book_depth or needs.trades):
            return SymbolMarket(info, await source.ticker(info.symbol))
        ticker, candles, book, trades = await asyncio.gather(
            source.ticker(info.symbol),
            source.candles(info.symbol, needs.timeframe, needs.candles) if needs.candles
            else _nothing(()),
            source.order_book(info.symbol, needs.book_depth) if needs.book_depth
            else _nothing(None),
            source.trades(info.symbol, needs.trades) if needs.trades else _nothing(()))
        return SymbolMarket(info, ticker, tuple(candles), book=book, trades=tuple(trades))

    markets = await asyncio.gather(*(one(info) for info in infos.values()))
    return MarketSnapshot(clock.now_ms(), tuple(markets))


async def _nothing(value: T) -> T:
    return value


@dataclass(frozen=True)
class DryRun:
    """What a cycle would do now: the market it saw, the intents, and the risk verdicts."""

    market: MarketSnapshot
    intents: tuple[Intent, ...]
    verdicts: tuple[RiskVerdict, ...]


def decide_dry(strategy: Strategy, market: MarketSnapshot, portfolio: Portfolio,
               risk: RiskGate) -> DryRun:
    intents = strategy.decide(market, portfolio)
    orders = [i for i in intents if isinstance(i, OrderIntent)]
    return DryRun(market, intents, tuple(risk.review(orders, market, portfolio)))
