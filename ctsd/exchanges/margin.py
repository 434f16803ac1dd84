"""Spot margin through one `ExchangeClient`: order parameters, settings at engine start,
lending terms, interest charges and the account's own fills.

The venues differ in everything here (Binance's `sideEffectType`, Bybit's
`isLeverage` under an account switch, OKX's `tdMode` with MARGIN positions,
Kraken's per-order `leverage` with positions of their own), so each venue's
module (`ctsd/exchanges/<venue>/margin.py`) reads and writes its own answers and
`MarginProfile` names its functions; this class only runs them through the
client (its lane, the shared rate limiter, the one error translation) and turns
what does not parse into one malformed answer. A refusal of a setting with the
venue's error code is raised as `ExchangeRejected` (FailedPrecondition) with the
venue's words, as `ctsd.exchanges.perpetuals` does for perpetuals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ctsd.errors import ExchangeFailure, ExchangeRejected, FailureClass, InvalidArgument
from ctsd.exchanges import answers
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.model import InterestCharge, LendingTerms, Trade
from ctsd.exchanges.profile import MarginProfile, Setting
from ctsd.ratelimit import Lane

_REFUSALS = (FailureClass.EXCHANGE_ERROR, FailureClass.PERMISSION)


class MarginClient:
    """The spot-margin calls of one connection's client (which the caller owns)."""

    def __init__(self, client: ExchangeClient) -> None:
        venue = client.profile.margin_trading
        if venue is None:
            raise ExchangeRejected(FailureClass.EXCHANGE_ERROR,
                                   f"{client.target.exchange} lends on no margin here")
        self.client = client
        self.venue: MarginProfile = venue
        self._exchange = client.target.exchange

    def order_params(self, leverage: int | None) -> Mapping[str, Any]:
        return self.venue.order_params(leverage or self.venue.default_leverage)

    def check_leverage(self, leverage: Mapping[str, int], field: str) -> None:
        """Leverage the venue lets a margin engine choose, in its range; InvalidArgument
        naming the field otherwise."""
        bounds = self.venue.leverage_range
        for symbol, value in sorted(leverage.items()):
            where = f'{field}["{symbol}"]'
            if bounds is None:
                raise InvalidArgument.field(
                    where, f"{self._exchange} sets spot-margin leverage itself; leave it unset")
            if not bounds[0] <= value <= bounds[1]:
                raise InvalidArgument.field(
                    where, f"{self._exchange} spot margin takes {bounds[0]} to {bounds[1]}x")

    async def prepare(self, symbols: tuple[str, ...], leverage: Mapping[str, int],
                      ) -> tuple[Setting, ...]:
        """What an engine start sets on the account; a refusal carries the venue's words."""
        try:
            return await self.client.read_venue(
                lambda: self.venue.prepare(self._calls(Lane.ORDER), symbols, leverage),
                "margin settings")
        except ExchangeFailure as exc:
            if exc.failure in _REFUSALS and exc.code:
                raise ExchangeRejected(exc.failure, f"{self._exchange} refused a margin "
                                       f"setting: {exc.detail}", code=exc.code) from exc
            raise

    async def terms(self, assets: tuple[str, ...], leverage: int | None,
                    keyed: bool) -> LendingTerms:
        read = self.venue.read_terms
        if read is None:
            raise ExchangeRejected(FailureClass.EXCHANGE_ERROR,
                                   f"{self._exchange} states no lending terms here")
        found = await self.client.read_venue(
            lambda: read(self._calls(), assets, leverage, keyed), "lending terms")
        return replace(found, close_by_liability=self.venue.close_short is not None)

    async def close_short(self, symbol: str, client_id: str) -> bool:
        """The venue's own close of the whole short of `symbol` under `client_id`, in the
        ORDER lane: True once the venue took it; False where it has none."""
        close = self.venue.close_short
        if close is None:
            return False
        await self.client.load_markets()
        await close(self._calls(Lane.ORDER), symbol, client_id)
        return True

    async def interest(self, symbols: tuple[str, ...], assets: tuple[str, ...],
                       since_ms: int) -> tuple[InterestCharge, ...]:
        read = self.venue.read_interest
        if read is None:
            return ()
        return await self.client.read_venue(
            lambda: read(self._calls(), symbols, assets, since_ms), "interest history")

    async def liquidation_orders(self, symbol: str, since_ms: int) -> frozenset[str] | None:
        read = self.venue.read_liquidations
        if read is None:
            return None
        return await self.client.read_venue(lambda: read(self._calls(), symbol, since_ms),
                                            "liquidation record")

    async def trades(self, symbol: str, since_ms: int) -> tuple[Trade, ...]:
        """Every own fill on `symbol` from `since_ms` (any order's: the venue's liquidations
        and trades placed by hand too)."""
        raw = await self.client.call("fetch_my_trades", symbol, since_ms, signed=True)
        return tuple(t for t in answers.trades(raw, self.client.contract_size(symbol))
                     if t.timestamp_ms >= since_ms)

    def _calls(self, lane: Lane | None = None) -> _Calls:
        return _Calls(self.client, lane)


class _Calls:
    """The client as a venue reader sees it (`VenueCalls`), in one lane: settings go in
    the ORDER lane (before polling), reads in the client's own."""

    def __init__(self, client: ExchangeClient, lane: Lane | None) -> None:
        self._client = client
        self._lane = lane

    async def call(self, method: str, *args: Any, lane: Lane | None = None,
                   signed: bool = False) -> Any:
        return await self._client.call(method, *args, lane=lane or self._lane, signed=signed)

    def symbol_of(self, market_id: str) -> str:
        return self._client.symbol_of(market_id)
