"""Unmodified `ccxt.pro.bybit` against the simulated Bybit v5 WebSockets."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt
import ccxt.pro as ccxtpro

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET
from tests.sim.ws.conftest import ProFactory
from tests.sim.ws.streams import Refusal, StreamConformance


def _bybit(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return pro(ccxtpro.bybit, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.bybit
    book_limit = 50
    refusals: ClassVar[dict[str, Refusal]] = {
        "wrong-secret": Refusal({"secret": "wrong"}, "BTC/USDT", ccxt.AuthenticationError,
                                "Invalid sign"),
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", ccxt.AuthenticationError,
                               "Invalid apikey"),
    }

    async def prepare(self, ex: Any) -> None:
        await ex.load_markets()
        await ex.isUnifiedEnabled()  # the account type, read once over REST
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "order", "trades": "execution", "balance": "wallet"}

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        return ex.balance.get("unified", {})

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _bybit(pro, server, **config)
