"""The engine's options seam (`OptionMarketData`) on the exchange layer's `OptionClient`.

Why here: the engine knows neither ccxt nor the exchange layer's values; this adapter
turns a contract's market into the engine's `OptionTerms` and hands on the settlement
price the venue publishes and (LIVE) the account's option positions.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from ctsd.engine.options import OptionTerms
from ctsd.exchanges.options import OptionClient


class ExchangeOptionAccount:
    """`OptionAccount` over the trading client: the venue's option positions."""

    def __init__(self, options: OptionClient) -> None:
        self._options = options

    async def positions(self, symbols: tuple[str, ...]) -> Mapping[str, Decimal]:
        return await self._options.positions(symbols)


class ExchangeOptionMarketData:
    """`OptionMarketData` over one client (public data: any of the connection's)."""

    def __init__(self, options: OptionClient) -> None:
        self._options = options

    async def contract(self, symbol: str, field: str) -> OptionTerms:
        found = await self._options.contract(symbol, field)
        return OptionTerms(found.symbol, found.underlying, found.settle, found.expiry_ms,
                           found.strike, found.call)

    async def settlement_price(self, symbol: str) -> Decimal | None:
        return await self._options.settlement_price(symbol)
