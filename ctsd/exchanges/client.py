"""`ExchangeClient`: one connection's authenticated view of an exchange, on ccxt.

Generic on purpose: what differs between venues is data in their
`ClientProfile` and `EndpointRule`s. Callers hold this one object; its methods
are kept by concern, each part a class on `CcxtCalls`, the path every request takes:

    ccxt_calls.py    CcxtCalls: markets adopted, the lane, the rate limiter, one error
                     translation; what the venue readers call
    probe_calls.py   ProbeCalls: what a connection test asks (clock, balances, key, accounts)
    market_reads.py  MarketReads: what engines read of a market (tickers, candles, terms)
    order_calls.py   OrderCalls: what a LIVE engine does with orders (place, cancel, look up)
    kept_answers.py  the venue's last answers to probe requests, so a probe asks once

Created by `ExchangeClientFactory.client`; close it (or `async with`).
"""

from __future__ import annotations

from ctsd.exchanges.market_reads import MarketReads
from ctsd.exchanges.model import AccountModes
from ctsd.exchanges.order_calls import OrderCalls
from ctsd.exchanges.probe_calls import ProbeCalls
from ctsd.exchanges.spec import ApiType


class ExchangeClient(ProbeCalls, MarketReads, OrderCalls):
    """All of it: what connection tests and engines call, and what the perpetuals,
    margin and options readers build on."""

    async def account_modes(self) -> AccountModes | None:
        """A perpetuals account's position and margin modes (a connection test); None when
        the connection's api type is not perpetual futures or the venue has none here."""
        if self.target.api_type is not ApiType.PERPETUAL_FUTURES or (
                self._profile.derivatives is None):
            return None
        from ctsd.exchanges.perpetuals import PerpetualClient  # it builds on this class

        return await PerpetualClient(self).modes()
