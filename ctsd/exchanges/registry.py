"""The explicit list of supported exchanges (no discovery by module scanning)."""

from __future__ import annotations

from collections.abc import Iterable

from ctsd.exchanges.binance.spec import BINANCE
from ctsd.exchanges.bybit.spec import BYBIT
from ctsd.exchanges.kraken.spec import KRAKEN
from ctsd.exchanges.okx.spec import OKX
from ctsd.exchanges.spec import ExchangeSpec


class ExchangeRegistry:
    """Looks up exchange specs by ccxt id; built once at start and injected."""

    def __init__(self, specs: Iterable[ExchangeSpec]) -> None:
        self._specs = {spec.id: spec for spec in specs}

    @classmethod
    def default(cls) -> ExchangeRegistry:
        return cls((BINANCE, BYBIT, OKX, KRAKEN))

    def get(self, exchange_id: str) -> ExchangeSpec | None:
        return self._specs.get(exchange_id)

    def all(self) -> list[ExchangeSpec]:
        return list(self._specs.values())

    def ids(self) -> list[str]:
        return list(self._specs)
