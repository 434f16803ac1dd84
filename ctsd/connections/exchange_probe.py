"""The exchange layer as the tester sees it: `ExchangeClient`s opened per test.

`ExchangeClient` already answers every question of the `ExchangeProbe`
protocol; this module only opens one per test (in the TEST lane of the
rate limiter, so orders and cancels go first), closes it after, and says
how the exchange layer's failures read. The factory, and the limiter and
market caches it owns, are shared with everything else that talks to
exchanges, so tests and engines draw on the same buckets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from ctsd.connections.model import Connection
from ctsd.connections.probe import Classified, ExchangeProbe
from ctsd.errors import CtsError
from ctsd.exchanges.errors import ExchangeFailure, FailureClass
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.exchanges.registry import ExchangeRegistry
from ctsd.ratelimit import Lane, RateLimiter
from ctsd.ratelimit.config import RateLimitOverrides
from ctsd.ratelimit.model import ScopeUsage

log = logging.getLogger("ctsd.ratelimit")


def classify(exc: BaseException) -> Classified:
    """Exchange failures carry their class and a redacted message; other CtsErrors
    (an api type the exchange does not offer) are the exchange's refusal; anything
    else is a bug, reported without its text."""
    if isinstance(exc, ExchangeFailure):
        return Classified(exc.failure, exc.message)
    if isinstance(exc, CtsError):
        return Classified(FailureClass.EXCHANGE_ERROR, exc.message)
    return Classified(
        FailureClass.EXCHANGE_ERROR, f"internal error ({type(exc).__name__})", expected=False
    )


class ExchangeAccess:
    """Opens probes for connections and reports the limiter's usage; `close()` ends it all."""

    def __init__(self, factory: ExchangeClientFactory) -> None:
        self.factory = factory

    @classmethod
    def build(
        cls,
        registry: ExchangeRegistry,
        endpoints: Mapping[str, str],
        timeout_s: float = 10.0,
        overrides: RateLimitOverrides | None = None,
    ) -> ExchangeAccess:
        factory = ExchangeClientFactory(
            RateLimiter(), registry, overrides=overrides, endpoint_overrides=endpoints,
            timeout_s=timeout_s,
        )
        return cls(factory)

    @asynccontextmanager
    async def open_probe(
        self, conn: Connection, credentials: ApiCredentials
    ) -> AsyncIterator[ExchangeProbe]:
        target = ConnectionTarget(conn.exchange, conn.api_type, conn.testnet)
        client = await self.factory.client(target, credentials, lane=Lane.TEST,
                                           account_uid=conn.account_uid)
        try:
            yield client
        finally:
            await client.close()

    def classify(self, exc: BaseException) -> Classified:
        return classify(exc)

    def relimit(self, overrides: RateLimitOverrides) -> None:
        """A reloaded `[rate_limits]`, for the clients already open too; logs what changed.

        The config loader has validated `overrides` as a whole, so this cannot half
        apply them: the factory swaps every bucket's limits or none.
        """
        old = self.factory.overrides
        if overrides == old:
            return
        changes = self.factory.relimit(overrides)
        log.info("rate limits reloaded", extra={
            "settings": "; ".join(overrides.changes_from(old)),
            "scopes": "; ".join(c.describe() for c in changes)})

    def usage(self) -> Sequence[ScopeUsage]:
        return self.factory.limiter.snapshot()

    async def close(self) -> None:
        await self.factory.close()
        await self.factory.limiter.close()
