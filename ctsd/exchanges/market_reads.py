"""`MarketReads`: what engines read of a market through an exchange client.

Tickers, candles, order books and public trades (market data in the poll lane
where no stream serves it), a market's terms (assets, fees, lot and tick) and the
fees of the account's own tier, and amounts and prices rounded to the market's
precision.
"""

from __future__ import annotations

from decimal import Decimal

from ctsd.errors import NotFound
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_calls import CcxtCalls
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import Candle, MarketTerms, Ticker
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.streams import OrderBook, PublicTrade, order_book, public_trades
from ctsd.exchanges.throttle import lane


class MarketReads(CcxtCalls):
    """The market-data and market-terms reads of `ExchangeClient`."""

    async def fetch_ticker(self, symbol: str) -> Ticker:
        options = self._profile.option_trading
        field = options.underlying_field if options is not None and (
            self.target.api_type is ApiType.OPTIONS) else None
        return answers.ticker(await self._run(lambda: self._exchange.fetch_ticker(symbol)),
                              symbol, field)

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", limit: int = 100,
                          since_ms: int | None = None) -> list[Candle]:
        raw = await self._run(lambda: self._exchange.fetch_ohlcv(symbol, timeframe, since_ms,
                                                                 limit))
        return answers.candles(raw, symbol)

    async def fetch_order_book(self, symbol: str, depth: int) -> OrderBook:
        raw = await self._run(lambda: self._exchange.fetch_order_book(symbol, depth))
        return order_book(raw, symbol, depth)

    async def fetch_trades(self, symbol: str, limit: int) -> list[PublicTrade]:
        raw = await self._run(lambda: self._exchange.fetch_trades(symbol, None, limit))
        return public_trades(raw, symbol)

    async def market_terms(self, symbol: str) -> MarketTerms:
        """Assets and fees of a listed `symbol`; NotFound when the venue does not list it."""
        with lane(self._lane):
            await self._adopt_markets()
        market = (self._exchange.markets or {}).get(symbol)
        if not isinstance(market, dict):
            raise NotFound(f"{self.target.exchange} does not list {symbol}")
        from ccxt.base.decimal_to_precision import TICK_SIZE  # loaded with the exchange

        precision = market.get("precision") or {}
        step, tick = (answers.decimal(precision.get(k)) for k in ("amount", "price"))
        if self._exchange.precisionMode != TICK_SIZE:  # numbers of decimal places
            step = None if step is None else Decimal(1).scaleb(-int(step))
            tick = None if tick is None else Decimal(1).scaleb(-int(tick))
        try:
            return MarketTerms(symbol, str(market["base"]), str(market["quote"]),
                               Decimal(str(market.get("taker") or 0)),
                               Decimal(str(market.get("maker") or 0)),
                               step * self.contract_size(symbol) if step else None,
                               self._profile.spot_buy_fee_in_base and market.get("spot") is True,
                               tick)
        except (KeyError, ArithmeticError) as exc:
            raise malformed(f"{self.target.exchange} market {symbol} ({exc!r})") from exc

    async def trading_fees(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(taker, maker) the account pays on `symbol` (a signed request): its fee tier's,
        which may differ from what the markets publish (e.g. OKX spot 0.15 % vs 0.10 %)."""
        raw = await self._run(lambda: self._exchange.fetch_trading_fee(symbol), signed=True)
        taker = answers.decimal(raw.get("taker")) if isinstance(raw, dict) else None
        maker = answers.decimal(raw.get("maker")) if isinstance(raw, dict) else None
        if taker is None or maker is None:
            raise malformed(f"{self.target.exchange} trading fee of {symbol} is incomplete")
        return taker, maker

    def amount_to_precision(self, symbol: str, amount: Decimal) -> Decimal:
        """`amount` rounded to the market's lot size (markets must be loaded)."""
        return Decimal(self._exchange.amount_to_precision(symbol, float(amount)))

    def price_to_precision(self, symbol: str, price: Decimal) -> Decimal:
        return Decimal(self._exchange.price_to_precision(symbol, float(price)))
