"""The engine's spot-margin seams (`MarginMarketData`, `MarginAccount`) on the exchange
layer's `MarginClient`.

Why here: the engine knows neither ccxt nor the exchange layer's values; this adapter
turns them into the engine's (`ctsd.engine.margin`): lending terms, interest charges
under the venue's ids, the account's own fills. The leverage an engine start sets is
kept in one `MarginLeverage` the order client reads too, because Kraken takes it with
every order rather than as a setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctsd.engine.ledger import split_symbol
from ctsd.engine.margin import InterestCharge, LendingTerms
from ctsd.engine.perpetual import AppliedSetting, SettingOutcome, VenueTrade
from ctsd.exchanges.margin import MarginClient
from ctsd.strategies.model import Side

_OUTCOMES = {o.value: o for o in SettingOutcome}


class MarginLeverage:
    """The leverage per symbol an engine start configured (shared by the account seam,
    which sets it, and the order client, which sends it where orders carry it)."""

    def __init__(self, margin: MarginClient) -> None:
        self._margin = margin
        self.chosen: dict[str, int] = {}

    def order_params(self, symbol: str) -> Mapping[str, Any]:
        return self._margin.order_params(self.chosen.get(symbol))


def _assets(symbols: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({a for s in symbols for a in split_symbol(s)}))


class ExchangeMarginMarketData:
    """`MarginMarketData` over one client: keyed (the account's own rates) or public."""

    def __init__(self, margin: MarginClient, leverage: MarginLeverage, keyed: bool) -> None:
        self._margin = margin
        self._leverage = leverage
        self._keyed = keyed

    async def terms(self, symbols: tuple[str, ...]) -> LendingTerms:
        chosen = next((self._leverage.chosen[s] for s in symbols if s in self._leverage.chosen),
                      None)
        found = await self._margin.terms(_assets(symbols), chosen, self._keyed)
        return LendingTerms(found.max_leverage, found.liquidation_level, found.period_rates,
                            found.period_ms, found.charge_on_borrow, found.liquidation_margin,
                            found.margin_per_order, found.order_leverage,
                            found.close_in_quote, found.close_by_liability)

    def check_leverage(self, leverage: Mapping[str, int]) -> None:
        self._margin.check_leverage(leverage, "config.leverage")
        self._leverage.chosen.update(leverage)


class ExchangeMarginAccount:
    """`MarginAccount` over one connection's authenticated client."""

    def __init__(self, margin: MarginClient, leverage: MarginLeverage) -> None:
        self._margin = margin
        self._leverage = leverage

    async def prepare(self, symbols: tuple[str, ...], leverage: Mapping[str, int],
                      ) -> tuple[AppliedSetting, ...]:
        self._leverage.chosen.update(leverage)
        done = await self._margin.prepare(symbols, leverage)
        return tuple(AppliedSetting(s.symbol, s.name, s.value, _OUTCOMES[s.outcome])
                     for s in done)

    async def interest(self, symbols: tuple[str, ...], since_ms: int,
                       ) -> tuple[InterestCharge, ...]:
        found = await self._margin.interest(symbols, _assets(symbols), since_ms)
        return tuple(InterestCharge(c.id, c.asset, c.amount, c.timestamp_ms) for c in found)

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        return tuple(VenueTrade(t.id, t.order_id, t.symbol, Side(t.side), t.amount, t.price,
                                t.fee, t.fee_asset, t.timestamp_ms, t.maker)
                     for t in await self._margin.trades(symbol, since_ms))

    async def liquidation_orders(self, symbol: str, since_ms: int) -> frozenset[str] | None:
        return await self._margin.liquidation_orders(symbol, since_ms)

    async def close_short(self, symbol: str, client_order_id: str) -> bool:
        return await self._margin.close_short(symbol, client_order_id)
