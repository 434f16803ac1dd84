"""Markets (and recent prices) of one target, loaded once and shared by every client.

A ccxt instance that loads its own markets holds tens of megabytes for a big
exchange; the cache loads them into one credential-less "source" instance per
(exchange, api type, testnet) and clients adopt its dicts by reference
(`set_markets_from_exchange`), so a connection costs a few hundred kilobytes.
A refresh swaps in new dicts and bumps `version`; clients re-adopt before
their next call. The refresh task is owned here and cancelled by `close()`.

Prices for valuing balances are cached for a few seconds for the same reason:
a batch test of many keys on one exchange asks the same few tickers.

A cached answer must not poison every later call: a load counts only when it
parses into at least one market of the target's type. Otherwise it fails as a
malformed answer (retryable), the source gets back the markets it had, and the
next caller asks again: ccxt would otherwise keep what the bad answer parsed to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from ctsd.errors import ExchangeFailure
from ctsd.exchanges import answers, ccxt_internals
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.throttle import lane
from ctsd.ratelimit import Lane
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.exchanges.markets")

MARKET_TYPES = {
    ApiType.SPOT: "spot", ApiType.MARGIN: "spot", ApiType.PERPETUAL_FUTURES: "swap",
    ApiType.OPTIONS: "option",
}
"""ccxt's `type` of the markets each api type trades (margin trades spot markets)."""

Translate = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]
"""Runs a ccxt call and turns its exceptions into `ExchangeFailure`s."""


class MarketCache:
    def __init__(
        self, target: ConnectionTarget, source: Any, translate: Translate, *,
        refresh_s: float = 3600.0, price_ttl_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self._source = source
        self._translate = translate
        self._refresh_s = refresh_s
        self._price_ttl_s = price_ttl_s
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._prices: dict[str, tuple[float, Decimal]] = {}
        self._closed = False
        self.version = 0
        """0 until loaded; bumped on every (re)load."""
        self.loaded_at: float | None = None

    @property
    def count(self) -> int:
        return len(self._source.markets or {})

    async def ensure(self) -> None:
        """Load the markets unless loaded; concurrent callers share one load."""
        if self.version:
            return
        async with self._lock:
            if self.version:
                return
            await self._load()
            if self._refresh_s > 0 and not self._closed:
                self._refresher = asyncio.create_task(
                    self._refresh_forever(), name=f"markets {self.target.exchange}")

    async def _load(self) -> None:
        """Always asks the venue: the cache alone decides when a load is due."""
        kept = ccxt_internals.market_state(self._source)
        try:
            markets = await self._translate(lambda: self._source.load_markets(reload=True))
            self._check_plausible(markets)
        except BaseException:
            ccxt_internals.restore_market_state(self._source, kept)
            raise
        self.version += 1
        self.loaded_at = self._monotonic()

    def _check_plausible(self, markets: Any) -> None:
        """At least one well-formed market of the type this target trades."""
        wanted = MARKET_TYPES[self.target.api_type]
        if not isinstance(markets, dict):
            raise malformed(f"{self.target.exchange} markets are not a table")
        if not any(isinstance(m, dict) and isinstance(m.get("symbol"), str)
                   and m.get("type") == wanted for m in markets.values()):
            raise malformed(f"{self.target.exchange} listed no {wanted} markets "
                            f"({len(markets)} entries)")

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                with lane(Lane.POLL):
                    async with self._lock:
                        await self._load()
            except ExchangeFailure as exc:
                log.warning("market refresh failed; keeping the old markets",
                            extra={"exchange": self.target.exchange, "failure": exc.failure.code})

    def share_with(self, exchange: Any, version: int) -> int:
        """Point `exchange` at the current markets if it holds an older version; the new one."""
        if version != self.version and self.version:
            ccxt_internals.share_markets(exchange, self._source)
        return self.version

    def has(self, symbol: str) -> bool:
        return symbol in (self._source.markets or {})

    async def prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Last prices of the listed `symbols`, from cache when younger than the TTL."""
        now = self._monotonic()
        result: dict[str, Decimal] = {}
        missing = []
        for symbol in symbols:
            cached = self._prices.get(symbol)
            if cached is not None and now - cached[0] < self._price_ttl_s:
                result[symbol] = cached[1]
            elif self.has(symbol):
                missing.append(symbol)
        for symbol in missing:  # one ticker each: cheap, and every venue serves it
            ticker = answers.ticker(await self._fetch_ticker(symbol), symbol)
            self._prices[symbol] = (self._monotonic(), ticker.last)
            result[symbol] = ticker.last
        return result

    async def _fetch_ticker(self, symbol: str) -> Any:
        return await self._translate(lambda: self._source.fetch_ticker(symbol))

    async def close(self) -> None:
        self._closed = True
        if self._refresher is not None:
            await cancel_and_wait(self._refresher)
        await self._source.close()
