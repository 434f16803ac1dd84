"""Builders for strategy inputs: short to write, exact (Decimal) values."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ctsd.strategies.model import (
    Candle,
    MarketInfo,
    MarketKind,
    MarketSnapshot,
    SymbolMarket,
    Ticker,
)


def d(value: str | int) -> Decimal:
    return Decimal(value)


def symbol_market(symbol: str, closes: Sequence[Decimal], spread: Decimal = Decimal(0),
                  quote: str = "USDT", kind: MarketKind = MarketKind.SPOT) -> SymbolMarket:
    base = symbol.split("/")[0]
    last = closes[-1]
    ticker = Ticker(symbol, last - spread / 2, last + spread / 2, last, len(closes) * 60_000)
    candles = tuple(Candle(i * 60_000, c, c, c, c, Decimal(1)) for i, c in enumerate(closes))
    return SymbolMarket(MarketInfo(symbol, base, quote, d("0.001"), d("0.001"), kind), ticker,
                        candles)


def snapshot(*markets: SymbolMarket) -> MarketSnapshot:
    return MarketSnapshot(markets[0].ticker.timestamp_ms if markets else 0, tuple(markets))
