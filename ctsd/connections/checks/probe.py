"""What a connection test needs from the exchange layer, as a Protocol.

The tester asks questions ("what time is it on the exchange?", "what does
this key hold?"); how they are asked (ccxt, shared markets, rate limits) is
the exchange layer's business. Keeping the seam this narrow lets the tester be
exercised with a scripted fake and lets the exchange layer change freely.

Failures come back as exceptions; `classify` (injected alongside the
factory) says which `FailureClass` each one is and gives a message that is
safe to show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from ctsd.connections.model import Connection
from ctsd.errors import FailureClass
from ctsd.exchanges.model import (
    AccountModes,
    ApiCredentials,
    ApiTypeStatus,
    Holding,
    KeyPermissions,
    MarginAccount,
    OptionChain,
    OptionsAccount,
    ServerTime,
)


class ExchangeProbe(Protocol):
    """One authenticated view of an exchange account, for one test."""

    async def load_markets(self) -> int:
        """Loads (or reuses) the markets of the connection's api type; returns how many."""
        ...

    async def server_time(self) -> ServerTime:
        """The exchange's clock, and ours at the midpoint of the round trip."""
        ...

    async def fetch_holdings(self) -> Sequence[Holding]:
        """The account's balances (a signed request: proves key and signature)."""
        ...

    async def key_permissions(self) -> KeyPermissions | None:
        """The key's permissions; None where the exchange does not report them."""
        ...

    async def account_uid(self) -> str | None:
        """The account (UID) the key belongs to; None where limits are counted per key."""
        ...

    async def api_type_status(self) -> ApiTypeStatus:
        """Whether the account can trade the connection's api type."""
        ...

    async def account_modes(self) -> AccountModes | None:
        """Perpetual futures: the account's position and margin modes; None otherwise."""
        ...

    async def margin_account(self, mode: str) -> MarginAccount | None:
        """Margin: the account ("cross" or "isolated") as the venue reports it; None otherwise."""
        ...

    async def option_chain(self) -> OptionChain:
        """The option contracts listed for the connection, in brief."""
        ...

    async def options_account(self) -> OptionsAccount | None:
        """Options: the options account; None otherwise."""
        ...

    async def prices(self, assets: Sequence[str], quote: str) -> dict[str, Decimal]:
        """Last prices of `assets` in `quote`, for those the exchange lists."""
        ...

    async def ping(self) -> float:
        """Round-trip seconds of the lightest request the exchange offers."""
        ...

    def limiter_wait_s(self) -> float:
        """Time this probe's requests spent waiting for rate-limit budget so far."""
        ...


class StreamProbe(Protocol):
    """The WebSocket side of a connection (market_data_method websocket): what engines
    on it will use. Each raises, to be classified like the probe's failures."""

    async def public(self, conn: Connection, within_s: float) -> str:
        """Subscribes a ticker of a listed symbol and waits for its first data; says
        which and how long it took. Raises for a refusal or for no data in time."""
        ...

    async def private(self, conn: Connection, credentials: ApiCredentials,
                      within_s: float) -> str:
        """Logs in to the private stream and subscribes to order updates; says how."""
        ...


ProbeFactory = Callable[[Connection, ApiCredentials], AbstractAsyncContextManager[ExchangeProbe]]
"""Opens a probe for a connection; closing it releases the exchange client."""


@dataclass(frozen=True)
class Classified:
    failure_class: FailureClass
    message: str
    expected: bool = True
    """False for exceptions the exchange layer did not raise on purpose: bugs, to log."""


Classifier = Callable[[BaseException], Classified]
"""Maps an exception raised by a probe to a failure class and a safe message."""
