"""Unmodified `ccxt.pro.binance` / `binanceusdm` against the simulated Binance WebSockets."""

from __future__ import annotations

from typing import Any, ClassVar

import ccxt
import ccxt.pro as ccxtpro

from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, SECRET
from tests.sim.ws.conftest import ProFactory
from tests.sim.ws.streams import Refusal, StreamConformance


def _binance(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    return pro(ccxtpro.binance, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.binance
    ticker_fields = ("last", "high", "low", "baseVolume", "quoteVolume")
    """ccxt watches `miniTicker` by default: no best bid and ask in it."""
    refusals: ClassVar[dict[str, Refusal]] = {
        "wrong-secret": Refusal({"secret": "wrong"}, "BTC/USDT", KeyError, "-1022",
                                chained=ccxt.AuthenticationError),
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", KeyError, "-2015",
                               chained=ccxt.AuthenticationError),
        "unknown-key-futures": Refusal({"apiKey": "nobody"}, "BTC/USDT:USDT",
                                       ccxt.AuthenticationError, "-2015"),
    }
    """Spot logs in on the WebSocket API, USDⓈ-M asks REST for a listenKey first. On spot
    ccxt 4.5.90 turns Binance's refusal (AuthenticationError) into `KeyError('spot')`: its
    error handler and its subscribe both delete the same subscription (pro/binance.py
    `handle_ws_error`, `ensure_user_data_stream_ws_subscribe_signature`)."""
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
