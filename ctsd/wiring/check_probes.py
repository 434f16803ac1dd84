"""Connection tests (`ctsd.connections.checks`) on the exchange layer: one client per test.

`ExchangeClient` already answers every question of the `ExchangeProbe`
protocol; this adapter only opens one per test (in the TEST lane of the rate
limiter, so orders and cancels go first), closes it after, and says how the
exchange layer's failures read. The factory it opens clients on is the
daemon's one (`ctsd.wiring.root`), so tests and engines draw on the same
buckets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from ctsd.connections.checks.probe import Classified, ExchangeProbe
from ctsd.connections.model import Connection
from ctsd.errors import CtsError, ExchangeFailure, FailureClass
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.ratelimit import Lane


def classify(exc: BaseException) -> Classified:
    """Exchange failures carry their class and a redacted message; other CtsErrors
    (an api type the exchange does not offer) are the exchange's refusal; anything
    else is a bug, reported without its text."""
    if isinstance(exc, ExchangeFailure):
        return Classified(exc.failure, exc.detail)
    if isinstance(exc, CtsError):
        return Classified(FailureClass.EXCHANGE_ERROR, exc.message)
    return Classified(
        FailureClass.EXCHANGE_ERROR, f"internal error ({type(exc).__name__})", expected=False
    )


class ExchangeProbes:
    """The tester's `ProbeFactory`: an authenticated client per test, closed after it."""

    def __init__(self, factory: ExchangeClientFactory) -> None:
        self._factory = factory

    @asynccontextmanager
    async def open(
        self, conn: Connection, credentials: ApiCredentials
    ) -> AsyncIterator[ExchangeProbe]:
        target = ConnectionTarget(conn.exchange, conn.api_type, conn.testnet)
        client = await self._factory.client(target, credentials, lane=Lane.TEST,
                                            account_uid=conn.account_uid)
        try:
            yield client
        finally:
            await client.close()
