"""Options through one `ExchangeClient`: a contract's terms and the price it settled at.

Why a module of its own: orders, open orders and balances of an options connection go
through the client as on any market (ccxt routes an option symbol to the venue's options
API), but two things only options have differ per venue: the contract's terms (ccxt's
market: underlying, strike, call or put, expiry, settle currency) and the settlement
price the venue publishes once a contract expires (Binance `exerciseHistory`, Bybit
`delivery-price`), which an engine books its expired positions at. The venue's module
(`ctsd/exchanges/<venue>/`) reads its own answer; `OptionsProfile.read_settlement` names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from ctsd.errors import ExchangeRejected, FailureClass, InvalidArgument, NotFound
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.profile import OptionsProfile


@dataclass(frozen=True)
class ContractTerms:
    """One listed option contract, as its market says."""

    symbol: str
    underlying: str
    settle: str
    """The currency premiums and settlement are paid in."""
    expiry_ms: int
    strike: Decimal
    call: bool


class OptionClient:
    """The options calls of one connection's client (which the caller owns)."""

    def __init__(self, client: ExchangeClient) -> None:
        venue = client.profile.option_trading
        if venue is None:
            raise ExchangeRejected(FailureClass.EXCHANGE_ERROR,
                                   f"{client.target.exchange} lists no options here")
        self.client = client
        self.venue: OptionsProfile = venue

    async def contract(self, symbol: str, field: str) -> ContractTerms:
        """The terms of a listed contract; InvalidArgument naming `field` for a symbol that
        is not one (a spot pair, an unknown or expired contract)."""
        await self.client.load_markets()
        try:
            market = self.client.market(symbol)
        except NotFound:
            market = {}
        if not market.get("option"):
            raise InvalidArgument.field(
                field, f"{symbol} is not an option contract {self.client.target.exchange} "
                       "lists (ListMarkets or the venue's option chain names them)")
        expiry, strike = market.get("expiry"), answers.decimal(market.get("strike"))
        kind = market.get("optionType")
        if not isinstance(expiry, int) or strike is None or kind not in ("call", "put"):
            raise malformed(f"{self.client.target.exchange} option market {symbol}")
        return ContractTerms(symbol, str(market["base"]), str(market["settle"]), expiry, strike,
                             kind == "call")

    async def positions(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Contracts the account holds per symbol of `symbols` (negative: written); a
        symbol without a position is left out."""
        raw = await self.client.call("fetch_positions", list(symbols),
                                     dict(self.venue.position_params), signed=True)
        if not isinstance(raw, list):
            raise malformed(f"{self.client.target.exchange} option positions are not a list")
        held: dict[str, Decimal] = {}
        for row in raw:
            if not isinstance(row, Mapping) or row.get("symbol") not in symbols:
                continue
            contracts = answers.decimal(row.get("contracts"))
            if not contracts:
                continue
            side = row.get("side")
            if side not in ("long", "short"):
                raise malformed(f"{self.client.target.exchange} option position of "
                                f"{row.get('symbol')} has side {side!r}")
            symbol = str(row["symbol"])
            held[symbol] = held.get(symbol, Decimal(0)) + (
                abs(contracts) if side == "long" else -abs(contracts))
        return held

    async def settlement_price(self, symbol: str) -> Decimal | None:
        """The underlying's price the venue settled `symbol` at; None until it publishes one."""
        read = self.venue.read_settlement
        if read is None:
            return None
        market = self.client.market(symbol)
        return await self.client.read_venue(lambda: read(self.client, market),
                                            f"settlement of {symbol}")
