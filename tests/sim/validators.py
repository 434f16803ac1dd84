"""ccxt's own structure validators (they ship in ccxt/test/exchange/base/).

Imported under non-`test_` names so pytest does not collect them as tests.
"""

from __future__ import annotations

from typing import Any

from ccxt.test.exchange.base.test_balance import test_balance as _balance
from ccxt.test.exchange.base.test_funding_rate_history import (
    test_funding_rate_history as _funding_rate_history,
)
from ccxt.test.exchange.base.test_leverage_tier import test_leverage_tier as _leverage_tier
from ccxt.test.exchange.base.test_liquidation import test_liquidation as _liquidation
from ccxt.test.exchange.base.test_market import test_market as _market
from ccxt.test.exchange.base.test_ohlcv import test_ohlcv as _ohlcv
from ccxt.test.exchange.base.test_order import test_order as _order
from ccxt.test.exchange.base.test_order_book import test_order_book as _order_book
from ccxt.test.exchange.base.test_position import test_position as _position
from ccxt.test.exchange.base.test_ticker import test_ticker as _ticker
from ccxt.test.exchange.base.test_trade import test_trade as _trade
from ccxt.test.exchange.base.test_trading_fee import test_trading_fee as _trading_fee


def check_market(exchange: Any, market: Any) -> None:
    _market(exchange, {}, "loadMarkets", market)


def check_ticker(exchange: Any, ticker: Any, symbol: str) -> None:
    _ticker(exchange, {}, "fetchTicker", ticker, symbol)


def check_ohlcv(exchange: Any, candles: list[Any], symbol: str) -> None:
    now = exchange.milliseconds()
    for candle in candles:
        _ohlcv(exchange, {}, "fetchOHLCV", candle, symbol, now)


def check_balance(exchange: Any, balance: Any) -> None:
    _balance(exchange, {}, "fetchBalance", balance)


async def read_checked(exchange: Any, symbol: str) -> tuple[Any, list[Any], Any]:
    """The reads a venue's full flow starts with, each through ccxt's validator: the
    server time (close to ours), the ticker, 24 hourly candles and the balance; they are
    answered for the venue's own checks."""
    assert abs(await exchange.fetch_time() - exchange.milliseconds()) < 5000
    ticker = await exchange.fetch_ticker(symbol)
    check_ticker(exchange, ticker, symbol)
    candles = await exchange.fetch_ohlcv(symbol, "1h", limit=24)
    assert len(candles) == 24
    check_ohlcv(exchange, candles, symbol)
    balance = await exchange.fetch_balance()
    check_balance(exchange, balance)
    return ticker, candles, balance


def check_order(exchange: Any, order: Any, symbol: str) -> None:
    _order(exchange, {}, "createOrder", order, symbol, exchange.milliseconds())


def check_order_book(exchange: Any, book: Any, symbol: str, *, timestamped: bool = True) -> None:
    """`timestamped=False` for venues whose book carries no time (Binance spot)."""
    skipped = {} if timestamped else {"timestamp": True, "datetime": True}
    _order_book(exchange, skipped, "fetchOrderBook", book, symbol)


def check_trade(exchange: Any, trade: Any, symbol: str, *, public: bool = True) -> None:
    method = "fetchTrades" if public else "fetchMyTrades"
    _trade(exchange, {}, method, trade, symbol, exchange.milliseconds(), public)


def check_trading_fee(exchange: Any, fee: Any, symbol: str) -> None:
    _trading_fee(exchange, {}, "fetchTradingFee", symbol, fee)


def check_position(exchange: Any, position: Any, symbol: str,
                   skipped: dict[str, Any] | None = None) -> None:
    _position(exchange, skipped or {}, "fetchPositions", position, symbol,
              exchange.milliseconds())


def check_leverage_tier(exchange: Any, tier: Any) -> None:
    _leverage_tier(exchange, {}, "fetchLeverageTiers", tier)


def check_funding_rate_history(exchange: Any, entry: Any, symbol: str) -> None:
    _funding_rate_history(exchange, {}, "fetchFundingRateHistory", entry, symbol)


def check_liquidation(exchange: Any, entry: Any, symbol: str) -> None:
    _liquidation(exchange, {}, "fetchMyLiquidations", entry, symbol)
