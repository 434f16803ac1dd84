"""A bad markets answer is never cached: the call fails retryably, the next one asks again.

Every venue and api type's markets request answered once with each kind of bad body
the simulator serves (malformed, truncated, an HTML 503, a 5xx), then the fault is
gone: the next load succeeds and the target's markets are there. Answers that parse
but are implausible (nothing, or no market of the target's type) go through the cache
with a scripted source, since no venue answers them on its own.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ctsd.errors import CtsError, ExchangeFailure, ExchangeUnavailable
from ctsd.exchanges.markets import MarketCache
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import RateLimiter
from ctsd.sim.faults import FaultKind, FaultSpec
from ctsd.sim.server import SimulatorServer
from tests.robustness.tally import Tally
from tests.support.exchange_clients import MARKETS, TEST_OVERRIDES, Market, make_factory

MARKETS_PATHS = {
    ("binance", ApiType.SPOT): "/api/v3/exchangeInfo",
    ("binance", ApiType.PERPETUAL_FUTURES): "/fapi/v1/exchangeInfo",
    ("bybit", ApiType.SPOT): "/v5/market/instruments-info",
    ("bybit", ApiType.PERPETUAL_FUTURES): "/v5/market/instruments-info",
    ("okx", ApiType.SPOT): "/api/v5/public/instruments",
    ("okx", ApiType.PERPETUAL_FUTURES): "/api/v5/public/instruments",
    ("kraken", ApiType.SPOT): "/0/public/AssetPairs",
}
BAD_BODIES = (FaultKind.MALFORMED_JSON, FaultKind.TRUNCATED_JSON, FaultKind.HTML_503,
              FaultKind.SERVER_ERROR)


@pytest.mark.asyncio
async def test_a_bad_markets_answer_is_not_cached(server: SimulatorServer) -> None:
    tally = Tally("markets: bad answers, then the next call")
    for market, kind in itertools.product(MARKETS, BAD_BODIES):
        await bad_answer_then_good(server, market, kind, tally)
    tally.report()
    assert tally.lost == 0, tally.notes


async def bad_answer_then_good(server: SimulatorServer, market: Market, kind: FaultKind,
                               tally: Tally) -> None:
    """One load answered with `kind`, then one after the fault: it must find the markets."""
    target = ConnectionTarget(market.exchange, market.api_type)
    path = MARKETS_PATHS[(market.exchange, market.api_type)]
    async with RateLimiter() as limiter, make_factory(
            server, limiter, overrides=TEST_OVERRIDES) as factory, await factory.client(
            target, None) as client:
        server.sim.add_fault(FaultSpec(kind, count=1, venue=market.exchange,
                                       path_prefix=path))
        try:
            first = f"{await client.load_markets()} markets"
        except ExchangeFailure as exc:
            first = f"{type(exc).__name__} (retryable: {exc.retryable})"
        server.sim.clear_faults()
        tally.tried += 1
        try:
            assert await client.load_markets() > 0, "no markets after the fault"
            await client.market_terms(market.symbol)
            tally.survived += 1
        except (AssertionError, CtsError) as exc:
            tally.lost += 1
            tally.notes.append(f"{market.id} {kind}: first {first}, then {exc!r}")


class ScriptedSource:
    """A ccxt stand-in whose `load_markets` answers from a script, for implausible tables."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        self._answers = answers
        self.markets: dict[str, Any] | None = None
        self.loads = 0

    async def load_markets(self, reload: bool = False) -> dict[str, Any]:
        self.loads += 1
        self.markets = self._answers.pop(0)
        return self.markets

    async def close(self) -> None:
        return None


async def passthrough(call: Any) -> Any:
    return await call()


SPOT_BTC = {"BTC/USDT": {"symbol": "BTC/USDT", "type": "spot"}}


@pytest.mark.asyncio
@pytest.mark.parametrize("implausible", [
    {}, {"BTC/USDT:USDT": {"symbol": "BTC/USDT:USDT", "type": "swap"}},
    {"x": None}, {"BTC/USDT": {"type": "spot"}}], ids=["empty", "wrong-type", "null", "no-symbol"])
async def test_an_implausible_table_is_refused_and_the_next_call_asks_again(
        implausible: dict[str, Any]) -> None:
    source = ScriptedSource([implausible, SPOT_BTC])
    cache = MarketCache(ConnectionTarget("binance", ApiType.SPOT), source, passthrough,
                        refresh_s=0)
    with pytest.raises(ExchangeUnavailable, match="malformed answer"):
        await cache.ensure()
    assert cache.version == 0 and source.markets is None  # the refused table is not kept
    await cache.ensure()
    assert cache.version == 1 and cache.has("BTC/USDT") and source.loads == 2
