"""Unmodified `ccxt.pro.binance` / `binanceusdm` against the simulated Binance WebSockets."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt.pro as ccxtpro

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET
from tests.sim.ws.conftest import ProFactory
from tests.sim.ws.streams import StreamConformance


def _binance(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return pro(ccxtpro.binance, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.binance
    ticker_fields = ("last", "high", "low", "baseVolume", "quoteVolume")
    """ccxt watches `miniTicker` by default: no best bid and ask in it."""
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "userData", "trades": "userData", "balance": "userData"}

    def private(self, pro: ProFactory, server: SimulatorServer) -> Any:
        # USDⓈ-M user data makes ccxt fetch a positions snapshot first, over endpoints
        # the perpetuals work (sim-deriv) brings; until then, streams without it.
        return self.exchange(pro, server, options={
            "watchPositions": {"fetchPositionsSnapshot": False}})

    def balance_params(self, symbol: str) -> dict[str, Any]:
        return {"type": "future"} if ":" in symbol else {}

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        return ex.balance.get("linear" if ":" in symbol else "spot", {})

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _binance(pro, server, **config)
