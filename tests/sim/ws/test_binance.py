"""Unmodified `ccxt.pro.binance` / `binanceusdm` against the simulated Binance WebSockets."""

from __future__ import annotations

from typing import Any

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

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _binance(pro, server, **config)
