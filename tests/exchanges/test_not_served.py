"""A path the venue does not serve is an exchange error naming the endpoint, asked once.

ccxt raises ExchangeNotAvailable (a NetworkError) for Binance's and OKX's 404
pages, BadRequest for Bybit's 10017 and a plain ExchangeError for Kraken's
`EGeneral:Unknown method`: the first read as a network failure to retry, the
others as an unexplained answer to ask again. Each case makes the simulator
answer as the venue answers an unknown path (`ctsd.sim.unserved`), on every
venue and every api surface of it, and checks the class, that nothing retries it,
and that the message names the endpoint as the production venue spells it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ctsd.errors import ExchangeRejected, FailureClass, OrderRejection
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.spec import ApiType
from ctsd.sim.server import SimulatorServer
from tests.support.exchange_clients import ClientMaker

pytestmark = pytest.mark.asyncio


@dataclass(frozen=True)
class Unserved:
    exchange: str
    api_type: ApiType
    call: Callable[[ExchangeClient], Awaitable[Any]]
    endpoint: str
    """What the failure names, and the simulator's key of the path it noted."""

    @property
    def id(self) -> str:
        return f"{self.exchange}-{self.endpoint}"


def implicit(method: str, params: dict[str, Any] | None = None,
             ) -> Callable[[ExchangeClient], Awaitable[Any]]:
    return lambda client: client.call(method, dict(params or {}))


CASES = (
    Unserved("binance", ApiType.SPOT, implicit("publicGetAvgPrice", {"symbol": "BTCUSDT"}),
             "GET /api/v3/avgPrice"),
    Unserved("binance", ApiType.MARGIN, implicit("sapiGetMarginRateLimitOrder"),
             "GET /sapi/v1/margin/rateLimit/order"),
    Unserved("binance", ApiType.PERPETUAL_FUTURES, implicit("fapiPublicGetInsuranceBalance"),
             "GET /fapi/v1/insuranceBalance"),
    Unserved("binance", ApiType.OPTIONS, implicit(
        "eapiPublicGetOpenInterest", {"underlyingAsset": "BTC", "expiration": "251226"}),
        "GET /eapi/v1/openInterest"),
    Unserved("bybit", ApiType.SPOT, implicit("publicGetV5MarketInsurance"),
             "GET /v5/market/insurance"),
    # ccxt's unified method reads a classic-account endpoint a unified account lacks
    Unserved("bybit", ApiType.MARGIN, lambda client: client.call("fetch_borrow_interest"),
             "GET /v5/spot-cross-margin-trade/account"),
    Unserved("okx", ApiType.PERPETUAL_FUTURES,
             implicit("publicGetPublicInsuranceFund", {"instType": "SWAP"}),
             "GET /api/v5/public/insurance-fund"),
    Unserved("kraken", ApiType.SPOT, implicit("publicGetSpread", {"pair": "XBTUSDT"}),
             "GET /0/public/Spread"),
    Unserved("kraken", ApiType.MARGIN, implicit("privatePostQueryLedgers", {"id": "L1"}),
             "POST /0/private/QueryLedgers"),
)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_an_unserved_path_is_an_exchange_error_naming_the_endpoint(
    server: SimulatorServer, make_client: ClientMaker, case: Unserved,
) -> None:
    client = await make_client(case.exchange, case.api_type)
    await client.load_markets()
    with pytest.raises(ExchangeRejected) as raised:
        await case.call(client)
    failure = raised.value
    assert failure.failure is FailureClass.EXCHANGE_ERROR
    assert failure.rejection is OrderRejection.NOT_SUPPORTED
    assert not failure.retryable
    assert f"{case.exchange} does not serve {case.endpoint} (" in failure.detail
    assert "127.0.0.1" not in failure.detail and "?" not in failure.detail
    unserved = server.sim.snapshot()["unserved"]
    assert unserved == {f"{case.exchange} {case.endpoint}": 1}, "asked exactly once"
