"""Unmodified `ccxt.pro.kraken` against the simulated Kraken WebSocket v2."""

from __future__ import annotations

from typing import Any

import ccxt.pro as ccxtpro

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY
from tests.sim.test_kraken import KRAKEN_SECRET
from tests.sim.ws.conftest import ProFactory
from tests.sim.ws.streams import StreamConformance


def _kraken(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", KRAKEN_SECRET)
    return pro(ccxtpro.kraken, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.kraken
    symbols = ("BTC/USDT",)
    book_compare = 10

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _kraken(pro, server, **config)
