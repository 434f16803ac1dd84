"""Unmodified `ccxt.pro.okx` against the simulated OKX v5 WebSockets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, ClassVar

import ccxt
import ccxt.pro as ccxtpro

from ctsd.sim import okx_wire
from ctsd.sim.market import Instrument
from ctsd.sim.server import SimulatorServer
from tests.sim.conftest import API_KEY, PASSPHRASE, SECRET
from tests.sim.ws.conftest import ProFactory
from tests.sim.ws.streams import Refusal, StreamConformance


def _okx(pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
    config.setdefault("apiKey", API_KEY)
    config.setdefault("secret", SECRET)
    config.setdefault("password", PASSPHRASE)
    return pro(ccxtpro.okx, server, **config)


class TestStreams(StreamConformance):
    exchange_class = ccxtpro.okx
    symbols = ("BTC/USDT", "ETH/USDT:USDT")
    refusals: ClassVar[dict[str, Refusal]] = {
        "wrong-secret": Refusal({"secret": "wrong"}, "BTC/USDT", ccxt.AuthenticationError,
                                "60007"),
        "wrong-passphrase": Refusal({"password": "wrong"}, "BTC/USDT",
                                    ccxt.AuthenticationError, "60024"),
        "unknown-key": Refusal({"apiKey": "nobody"}, "BTC/USDT", ccxt.AuthenticationError,
                               "60005"),
    }
    private_channels: ClassVar[dict[str, str]] = {
        "orders": "orders", "trades": "orders", "balance": "account"}
    trade_amount_of = 1
    """An amount both spot and swap accept (a swap's amount counts contracts)."""

    def exchange(self, pro: ProFactory, server: SimulatorServer, **config: Any) -> Any:
        return _okx(pro, server, **config)

    def trade_amount(self, inst: Instrument, qty: Decimal) -> Decimal:
        return Decimal(okx_wire.size(inst, qty))  # swaps count contracts

    def book_levels(self, inst: Instrument, side: Any) -> list[tuple[Decimal, Decimal]]:
        return [(lv.price, self.trade_amount(inst, lv.qty)) for lv in side]
