"""The registry of simulated venues: the one place a venue is switched on."""

from __future__ import annotations

from ctsd.sim import binance, bybit, kraken, okx
from ctsd.sim.venue import VenueRegistry


def default_registry() -> VenueRegistry:
    """Binance, Bybit, OKX and Kraken, each mounted under `/<name>`."""
    return VenueRegistry((binance.VENUE, bybit.VENUE, okx.VENUE, kraken.VENUE))
