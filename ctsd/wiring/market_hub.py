"""The daemon's one market-data hub, built when the first stream is asked for.

Why not at start: most daemons run no engine on a WebSocket connection and test
no key's streams, and the hub (with `ctsd.marketdata` and the exchange layer's
stream models) is a sizeable part of the imports a start pays before SERVING.
Whoever needs streams asks `get()`; readers of its state (health, metrics)
see no streams until then, which is what a hub without subscriptions reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctsd.clock import Clock

if TYPE_CHECKING:
    from ctsd.exchanges.streams import ConnectionPacers
    from ctsd.marketdata.feeds import StreamStatus
    from ctsd.marketdata.hub import MarketDataHub, OpenStream


class HubOnDemand:
    """Owns the hub once built; `close()` closes it (and refuses a later `get`)."""

    def __init__(self, open_stream: OpenStream, clock: Clock,
                 pacers: ConnectionPacers | None = None) -> None:
        self._open_stream = open_stream
        self._clock = clock
        self._pacers = pacers
        self._hub: MarketDataHub | None = None
        self._closed = False

    def get(self) -> MarketDataHub:
        if self._hub is None:
            if self._closed:  # as the hub itself says after close
                raise RuntimeError("market-data hub is closed")
            from ctsd.marketdata.hub import MarketDataHub

            self._hub = MarketDataHub(self._open_stream, self._clock,
                                     pacers=self._pacers)
        return self._hub

    def statuses(self) -> list[StreamStatus]:
        return [] if self._hub is None else self._hub.statuses()

    async def close(self) -> None:
        self._closed = True
        if self._hub is not None:
            await self._hub.close()
