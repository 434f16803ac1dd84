"""Connection tests (`ctsd.connections.checks`) on the exchange layer: one client per test.

`ExchangeClient` already answers every question of the `ExchangeProbe`
protocol; this adapter only opens one per test (in the TEST lane of the rate
limiter, so orders and cancels go first), closes it after, and says how the
exchange layer's failures read. The factory it opens clients on is the
daemon's one (`ctsd.wiring.root`), so tests and engines draw on the same
buckets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ctsd.connections.checks.probe import Classified, ExchangeProbe
from ctsd.connections.model import Connection
from ctsd.errors import CtsError, ExchangeFailure, FailureClass
from ctsd.exchanges.factory import ExchangeClientFactory
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget
from ctsd.ratelimit import Lane

if TYPE_CHECKING:
    from ctsd.marketdata.hub import MarketDataHub

PROBE_SYMBOLS = ("BTC/USDT", "BTC/USDT:USDT", "BTC/USD", "ETH/USDT", "BTC/USDC")
"""A liquid market to subscribe for the public stream check, the first one listed."""


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


class StreamProbes:
    """The tester's `StreamProbe`: a ticker through the daemon's hub (the subscription
    engines will share) and a private login on a stream of its own, closed after.

    `hub()` is asked on the first stream test only: the daemon builds its hub on
    demand (`ctsd.wiring.market_hub`), and so does this module import it."""

    def __init__(self, factory: ExchangeClientFactory, hub: Callable[[], MarketDataHub]) -> None:
        self._factory = factory
        self._hub = hub

    async def public(self, conn: Connection, within_s: float) -> str:
        from ctsd.exchanges.streams import StreamKind, public_stream_target
        from ctsd.marketdata.feeds import StreamState, SubKey

        target = public_stream_target(ConnectionTarget(conn.exchange, conn.api_type,
                                                       conn.testnet))
        markets = await self._factory.markets(target)
        await markets.ensure()
        symbol = next((s for s in PROBE_SYMBOLS if markets.has(s)), None)
        if symbol is None:
            raise CtsError(f"{conn.exchange} lists none of {', '.join(PROBE_SYMBOLS)} to "
                           "subscribe")
        started = time.monotonic()
        hub = self._hub()
        lease = hub.subscribe(SubKey(target, StreamKind.TICKER, symbol))
        sub = lease.subscription
        try:
            async with asyncio.timeout(within_s):
                await hub.wait_for(lambda: sub.last_data > 0 or sub.state is (
                    StreamState.FAILED))
        except TimeoutError:
            raise ExchangeFailure(FailureClass.TIMEOUT, f"no {symbol} ticker on the stream "
                                  f"within {within_s:g} s ({sub.state.value}"
                                  f"{': ' + sub.error if sub.error else ''})") from None
        finally:
            lease.release()
        if sub.state is StreamState.FAILED:
            raise ExchangeFailure(FailureClass.EXCHANGE_ERROR,
                                  f"the {symbol} ticker was refused: {sub.error}")
        return f"{symbol} ticker received in {(time.monotonic() - started) * 1000:.0f} ms"

    async def private(self, conn: Connection, credentials: ApiCredentials,
                      within_s: float) -> str:
        target = ConnectionTarget(conn.exchange, conn.api_type, conn.testnet)
        stream = await self._factory.order_stream(target, credentials, conn.account_uid)
        watch = asyncio.ensure_future(stream.orders())
        try:
            deadline = time.monotonic() + within_s
            while not watch.done() and time.monotonic() < deadline:
                await asyncio.wait({watch}, timeout=0.25)
                if stream.connected() and not watch.done():
                    # logged in and subscribed: an idle account has nothing to send
                    await asyncio.wait({watch}, timeout=0.5)
                    if not watch.done():
                        return "logged in; order updates subscribed"
            if watch.done():
                watch.result()  # the venue's refusal, classified by the tester
                return "logged in; an order update arrived"
            raise ExchangeFailure(FailureClass.TIMEOUT, "the private stream did not "
                                  f"connect within {within_s:g} s")
        finally:
            watch.cancel()
            await stream.close()
