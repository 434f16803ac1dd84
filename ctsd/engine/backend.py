"""Where an engine's venue-side ports come from: one `EngineBackend.open` per engine
start (or dry run) hands out the `EngineResources` of one connection.

Why apart from the ports it bundles (`market_ports`, `order_ports`, `account_ports`):
the manager, supervisor and assembly take a connection's clients as this one value and
hand each to the part that reads it, and only the bundle says which market kind and
mode requires which. The daemon implements the backend in `ctsd.wiring.engine_exchange`.
Errors as every engine port raises them (`ctsd.engine`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ctsd.engine.account_ports import (
    MarginAccount,
    OptionAccount,
    PerpetualAccount,
    PositionUpdates,
)
from ctsd.engine.config import TradingMode
from ctsd.engine.market_ports import (
    MarginMarketData,
    MarketDataSource,
    MarketEvents,
    OptionMarketData,
    PerpetualMarketData,
)
from ctsd.engine.order_ports import ExchangeOrderClient, OrderUpdates
from ctsd.engine.perpetual import AccountModes
from ctsd.strategies.model import MarketKind


@dataclass(frozen=True)
class EngineResources:
    market_data: MarketDataSource
    orders: ExchangeOrderClient | None = None
    """Required for LIVE; PAPER never touches it."""
    kind: MarketKind = MarketKind.SPOT
    modes: AccountModes = field(default_factory=AccountModes)
    """The connection's margin mode and position mode (perpetuals)."""
    perp_market: PerpetualMarketData | None = None
    """Required for perpetuals."""
    perp_account: PerpetualAccount | None = None
    """Required for LIVE perpetuals."""
    margin_market: MarginMarketData | None = None
    """Required for spot margin."""
    margin_account: MarginAccount | None = None
    """Required for LIVE spot margin."""
    option_market: OptionMarketData | None = None
    """Required for options."""
    option_account: OptionAccount | None = None
    """LIVE options: the venue's positions, checked against the ledger each cycle."""
    events: MarketEvents | None = None
    """On a WebSocket connection: market events drive the cycles; None: a fixed interval."""
    order_updates: OrderUpdates | None = None
    """LIVE on a WebSocket connection: fills and order states by stream, REST reconciles."""
    position_updates: PositionUpdates | None = None
    """LIVE perpetuals on a WebSocket connection: positions by stream, REST reconciles."""


class EngineBackend(Protocol):
    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        """Clients for one connection. Raises NotFound, or FailedPrecondition with the reason
        when the connection may not run an engine (disabled, last test failed, LIVE without
        trade permission)."""
        ...

    async def close(self, connection_id: str, resources: EngineResources) -> None:
        """Release exactly the clients of `resources` (one `open`'s answer): a dry run and
        the engine on the same connection each hold their own."""
        ...
