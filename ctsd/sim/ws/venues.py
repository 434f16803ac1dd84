"""The registry of simulated WebSocket APIs: the one place a venue's streams are switched on."""

from __future__ import annotations

from ctsd.sim.state import Simulator
from ctsd.sim.ws import binance, bybit, kraken, okx
from ctsd.sim.ws.protocol import StreamProtocol


def stream_protocols(sim: Simulator) -> dict[str, list[StreamProtocol]]:
    """Venue name (its `/<name>` prefix) → the WebSocket endpoint families it serves."""
    return {
        "binance": binance.protocols(sim),
        "bybit": bybit.protocols(sim),
        "okx": okx.protocols(sim),
        "kraken": kraken.protocols(sim),
    }
