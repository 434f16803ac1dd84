"""A scripted exchange for connection-test tests: answers like a healthy venue unless told.

It stands in for `ExchangeProbe` (the tester's only view of an exchange),
so the tester's and the batch's own rules show one by one, without a network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from ctsd.connections.checks.probe import ExchangeProbe
from ctsd.connections.checks.tester import (
    ConnectionTester,
    ConnectionTesterSettings,
    CredentialSource,
)
from ctsd.connections.model import Connection
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
from ctsd.wiring.check_probes import classify

CREDENTIALS = ApiCredentials("key-0123456789", "the-secret-value", "the-passphrase")


@dataclass
class ScriptedProbe:
    """Answers like a healthy exchange unless told otherwise."""

    skew_ms: float = 5.0
    permissions: KeyPermissions | None = field(
        default_factory=lambda: KeyPermissions(read=True, trade=True, withdraw=False)
    )
    usable: bool = True
    uid: str | BaseException | None = None
    """The key's account UID; an exception to raise; None where the venue counts per key."""
    balance_error: BaseException | None = None
    modes: AccountModes | BaseException | None = None
    """Perpetuals: the account's modes; an exception to raise; None: no perpetuals here."""
    margin: MarginAccount = field(default_factory=lambda: MarginAccount(
        "cross", True, None, "margin level", equity=Decimal(1)))
    """Margin connections: the account the venue reports."""
    options: OptionsAccount = field(default_factory=lambda: OptionsAccount(
        (Holding("USDT", Decimal(10), Decimal(0), Decimal(10)),)))
    """Options connections: the account the venue reports."""
    hang: asyncio.Event | None = None
    closed: bool = False
    opened: int = 0
    """How many tests opened this probe."""

    async def load_markets(self) -> int:
        return 42

    async def server_time(self) -> ServerTime:
        return ServerTime(1_700_000_000_000, 1_700_000_000_000 - self.skew_ms, 3.0)

    async def fetch_holdings(self) -> Sequence[Holding]:
        if self.hang is not None:
            await self.hang.wait()
        if self.balance_error is not None:
            raise self.balance_error
        return (
            Holding("USDT", Decimal(100), Decimal(0), Decimal(100)),
            Holding("BTC", Decimal("0.5"), Decimal(0), Decimal("0.5")),
            Holding("DUST", Decimal(0), Decimal(0), Decimal(0)),
        )

    async def key_permissions(self) -> KeyPermissions | None:
        return self.permissions

    async def account_uid(self) -> str | None:
        if isinstance(self.uid, BaseException):
            raise self.uid
        return self.uid

    async def api_type_status(self) -> ApiTypeStatus:
        return ApiTypeStatus(self.usable, "spot account reachable" if self.usable else "no spot")

    async def account_modes(self) -> AccountModes | None:
        if isinstance(self.modes, BaseException):
            raise self.modes
        return self.modes

    async def margin_account(self, mode: str) -> MarginAccount | None:
        return self.margin

    async def option_chain(self) -> OptionChain:
        return OptionChain(12, ("BTC",), ("USDT",), 1_700_003_600_000)

    async def options_account(self) -> OptionsAccount | None:
        return self.options

    async def prices(self, assets: Sequence[str], quote: str) -> dict[str, Decimal]:
        return {"BTC": Decimal(60000)}

    async def ping(self) -> float:
        return 0.002

    def limiter_wait_s(self) -> float:
        return 0.25


class FixedCredentials:
    async def resolve(self, conn: Connection) -> ApiCredentials:
        return CREDENTIALS


ProbeOpener = Callable[[Connection, ApiCredentials], AbstractAsyncContextManager[ExchangeProbe]]


def opening(probe_for: Callable[[Connection], ScriptedProbe]) -> ProbeOpener:
    """The tester's probe factory over scripted probes; each is marked closed after use."""

    @asynccontextmanager
    async def open_probe(conn: Connection, _creds: ApiCredentials) -> AsyncIterator[ExchangeProbe]:
        probe = probe_for(conn)
        probe.opened += 1
        try:
            yield probe
        finally:
            probe.closed = True

    return open_probe


def make_tester(probe: ScriptedProbe, timeout_s: float = 5.0,
                credentials: CredentialSource | None = None) -> ConnectionTester:
    return ConnectionTester(credentials or FixedCredentials(), opening(lambda _conn: probe),
                            classify, ConnectionTesterSettings(timeout_s=timeout_s))
