"""Unmodified `ccxt.pro.kraken` against the simulated Kraken WebSocket v2."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import ccxt
import ccxt.pro as ccxtpro

from ctsd.sim import kraken_wire
from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import SimulatorConfig
from tests.sim.conftest import API_KEY, trader_spec
from tests.sim.test_kraken import KRAKEN_SECRET
from tests.sim.ws.conftest import ProFactory
from tests.sim.ws.streams import Refusal, StreamConformance


def _kraken(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", KRAKEN_SECRET)
    return pro(ccxtpro.kraken, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.kraken
    symbols = ("BTC/USDT",)
    book_compare = 10
    refusals: ClassVar[dict[str, Refusal]] = {
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", ccxt.AuthenticationError,
                               "EAPI:Invalid key"),
    }
    """The token comes from REST `GetWebSocketsToken`: a bad key fails there."""
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "executions", "trades": "executions", "balance": "balances"}

    def config(self, **ws: Any) -> SimulatorConfig:
        return replace(super().config(**ws), accounts=(trader_spec(secret=KRAKEN_SECRET),))

    def streamed_balance(self, ex: Any, symbol: str) -> Any:
        return ex.balance.get("spot", {})

    async def rest_trades(self, ex: Any, symbol: str) -> dict[str, Any] | None:
        # Kraken's own-trade history (TradesHistory) is the REST simulator's (sim-md) and
        # not served yet: the streamed fill is checked against the simulator's record only.
        return None

    def order_id(self, order_id: int) -> str:
        return kraken_wire.order_txid(order_id)

    def trade_id(self, trade_id: int) -> str:
        return kraken_wire.trade_txid(trade_id)

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _kraken(pro, server, **config)
