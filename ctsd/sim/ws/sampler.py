"""Market data for one tick, computed once however many topics and venues ask.

The price path is a pure function of time, so what a stream shows at time t is what
REST answers at t: a ticker's event time is the close time of the statistics it
carries, and a candle is `Market.candles` at that instant. The sampler only
memoizes within a tick: two venues' ticker topics for BTC/USDT cost one
`Market.ticker`.
"""

from __future__ import annotations

from decimal import Decimal

from ctsd.sim.market import Candle, Instrument, Market, TickerStats, Timeframe


class Sampler:
    def __init__(self, market: Market, now_ms: int) -> None:
        self.market = market
        self.now_ms = now_ms
        self._tickers: dict[str, TickerStats] = {}
        self._candles: dict[tuple[str, int], Candle] = {}
        self._prices: dict[str, Decimal] = {}

    def instrument(self, symbol: str) -> Instrument:
        return self.market.catalog.instruments[symbol]

    def ticker(self, symbol: str) -> TickerStats:
        found = self._tickers.get(symbol)
        if found is None:
            found = self._tickers[symbol] = self.market.ticker(symbol)
        return found

    def price(self, symbol: str) -> Decimal:
        found = self._prices.get(symbol)
        if found is None:
            found = self._prices[symbol] = self.market.price(symbol)
        return found

    def candle(self, symbol: str, timeframe: Timeframe) -> Candle:
        """The candle in progress now."""
        key = (symbol, timeframe.seconds)
        found = self._candles.get(key)
        if found is None:
            found = self._candles[key] = self.market.candles(symbol, timeframe, limit=1)[-1]
        return found

    def closed_candle(self, symbol: str, timeframe: Timeframe, open_ms: int) -> Candle:
        """The finished candle that opened at `open_ms`."""
        return self.market.candles(
            symbol, timeframe, start_ms=open_ms, end_ms=open_ms, limit=1)[0]
