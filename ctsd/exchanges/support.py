"""What works per api type, as the venues' specs declare it (`ExchangeSpec.support`).

One table of phrases so every venue says the same thing the same way; a venue's
spec picks the rows that are true for it. `ListExchanges` shows them and
`StartEngine` refuses what they do not promise (FAILED_PRECONDITION, before
anything is placed).
"""

from __future__ import annotations

from ctsd.exchanges.spec import ApiType, ApiTypeSupport

POLLED = "market data and orders are polled over REST (no WebSocket streams yet)"


def trading(api_type: ApiType, note: str = POLLED) -> ApiTypeSupport:
    """Key tests, PAPER and LIVE engines."""
    return ApiTypeSupport(api_type, key_test=True, paper=True, live=True, note=note)


STREAMED = ("a WebSocket connection streams market data and LIVE order updates, REST "
            "reconciling (perpetuals read positions and funding over REST); a REST "
            "connection polls")


MARGIN_STREAMED = ("a WebSocket connection streams market data (the spot book's streams, "
                   "shared with spot engines) and LIVE order updates, REST reconciling; "
                   "interest and the venue's own fills (liquidations) are read over REST; "
                   "a REST connection polls")


def streamed(api_type: ApiType, note: str = STREAMED) -> ApiTypeSupport:
    """Key tests (the streams step on a WebSocket connection), PAPER and LIVE engines that
    run on the market-data hub's streams."""
    return ApiTypeSupport(api_type, key_test=True, paper=True, live=True, streams=True,
                          note=note)


def key_test_only(api_type: ApiType, why: str) -> ApiTypeSupport:
    """Connections are tested; engines are refused, for the reason given."""
    return ApiTypeSupport(api_type, key_test=True, note=why)
