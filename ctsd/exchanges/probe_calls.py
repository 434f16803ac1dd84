"""`ProbeCalls`: what a connection test asks of an exchange client (`ExchangeProbe`).

The exchange's clock and latency, the account's balances (a signed request: it
proves key and signature), the key's permissions and its account's UID, whether
the api type's account answers, the margin and options accounts, the option chain,
prices to value the holdings, and how long the rate limiter held the requests.
`ctsd.connections.checks` asks all of it; a LIVE engine reads its balances here too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ctsd.errors import ExchangeFailure, FailureClass
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_calls import CcxtCalls
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import (
    ApiTypeStatus,
    Holding,
    KeyPermissions,
    MarginAccount,
    OptionChain,
    OptionsAccount,
    ServerTime,
)
from ctsd.exchanges.spec import ApiType
from ctsd.exchanges.throttle import lane
from ctsd.ratelimit import ScopeUsage


class ProbeCalls(CcxtCalls):
    """The connection-test questions of `ExchangeClient`."""

    async def server_time(self) -> ServerTime:
        """The exchange's clock against ours. Time the request waited for rate-limit budget
        is no part of its round trip: a wait of seconds (a fleet's shared queue) would
        otherwise look like a clock that far off."""
        waited = self._gate.waited_s
        before = time.time() * 1000
        server_ms = answers.server_time(await self._run(self._exchange.fetch_time))
        after = time.time() * 1000
        before = min(before + (self._gate.waited_s - waited) * 1000, after)
        return ServerTime(server_ms, (before + after) / 2, after - before)

    async def server_time_ms(self) -> int:
        return (await self.server_time()).server_ms

    async def ping(self) -> float:
        """Round-trip seconds of the api type's lightest request."""
        method = getattr(self._exchange, self._profile.api_types[self.target.api_type].ping)
        started = time.monotonic()
        await self._run(method)
        return time.monotonic() - started

    async def fetch_holdings(self) -> tuple[Holding, ...]:
        """Balances of the connection's account (a signed request: proves key and signature)."""
        options = self._profile.option_trading
        if self.target.api_type is ApiType.OPTIONS and options and options.holdings_from_account:
            account = await self.read_venue(lambda: options.read_account(self),
                                             "options account")
            self._authenticated = True
            self._holdings = account.balances
            return self._holdings
        raw = await self._run(self._exchange.fetch_balance, signed=True)
        self._holdings = answers.holdings(raw)
        self._balance_answer = raw.get("info") if isinstance(raw, dict) else None
        return self._holdings

    async def key_permissions(self) -> KeyPermissions | None:
        """The key's permissions where the exchange reports them, else None."""
        probe = self._profile.permissions_for.get(self.target.api_type,
                                                  self._profile.permissions)
        if probe is None:
            return None
        if self.target.api_type in probe.answered_by_balance and self._balance_answer:
            raw = self._balance_answer
        else:
            raw = await self._probe_answer(probe.method, probe.params)
        try:
            return probe.parse(raw)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise malformed(f"{self.target.exchange} key permissions ({exc!r})") from exc

    async def account_uid(self) -> str | None:
        """The UID of the account the key belongs to, where the venue counts limits per UID.

        None where the profile declares no probe (the venue counts per key). Once
        learned, this client and every later one of the same key draw on the UID's
        account buckets (`on_account_uid`).
        """
        probe = self._profile.account_uid
        if probe is None:
            return None
        raw = await self._probe_answer(probe.method)
        try:
            uid = str(probe.parse(raw)).strip()
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise malformed(f"{self.target.exchange} account uid ({exc!r})") from exc
        if not uid:
            raise malformed(f"{self.target.exchange} answered an empty account uid")
        if self._on_account_uid is not None:
            self._on_account_uid(uid)
        return uid

    async def _probe_answer(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """The venue's answer to a probe `method`: kept from an earlier request of this
        client (ours or ccxt's own), else asked now (a signed request)."""
        if method not in self._answers:
            call = getattr(self._exchange, method)
            await self._run(lambda: call(dict(params or {})), signed=True)
        return self._answers[method]

    async def api_type_status(self) -> ApiTypeStatus:
        """Whether the account answers for this api type (e.g. a futures wallet exists)."""
        api_type = self.target.api_type.value.replace("_", " ")
        try:
            holdings = self._holdings if self._holdings is not None else (
                await self.fetch_holdings())
        except ExchangeFailure as exc:
            if exc.failure in (FailureClass.PERMISSION, FailureClass.AUTHENTICATION):
                return ApiTypeStatus(False, f"the {api_type} account refused the key: "
                                            f"{exc.detail}")
            raise
        held = sum(1 for h in holdings if h.total > 0)
        return ApiTypeStatus(True, f"{api_type} account reachable ({held} assets held)")

    async def margin_account(self, mode: str) -> MarginAccount | None:
        """A margin connection's account ("cross" or "isolated"); None when the connection's
        api type is not margin."""
        venue = self._profile.margin_trading
        if self.target.api_type is not ApiType.MARGIN or venue is None:
            return None
        return await self.read_venue(lambda: venue.read_account(self, mode), "margin account")

    async def options_account(self) -> OptionsAccount | None:
        """An options connection's account; None when its api type is not options."""
        venue = self._profile.option_trading
        if self.target.api_type is not ApiType.OPTIONS or venue is None:
            return None
        return await self.read_venue(lambda: venue.read_account(self), "options account")

    async def option_chain(self) -> OptionChain:
        """What option contracts the venue lists for this connection (markets loaded)."""
        await self.load_markets()
        listed = [m for m in (self._exchange.markets or {}).values()
                  if isinstance(m, dict) and m.get("option")]
        expiries = [int(m["expiry"]) for m in listed if isinstance(m.get("expiry"), int | float)]
        return OptionChain(len(listed), tuple(sorted({str(m.get("base")) for m in listed})),
                           tuple(sorted({str(m.get("settle")) for m in listed})),
                           min(expiries, default=None))

    async def prices(self, assets: Sequence[str], quote: str) -> dict[str, Decimal]:
        """Last prices of `assets` in `quote`, for those listed (shared, briefly cached)."""
        with lane(self._lane):
            await self._adopt_markets()
            symbols = {asset: self._symbol(asset, quote) for asset in assets}
            found = await self._markets.prices([s for s in symbols.values() if s])
        return {asset: found[s] for asset, s in symbols.items() if s and s in found}

    def _symbol(self, base: str, quote: str) -> str | None:
        for symbol in (f"{base}/{quote}", f"{base}/{quote}:{quote}"):
            if self._markets.has(symbol):
                return symbol
        return None

    def limiter_wait_s(self) -> float:
        """Time this client's requests spent waiting for rate-limit budget so far."""
        return self._gate.waited_s

    def limiter_usage(self) -> list[ScopeUsage]:
        """The rate-limit scopes this client's requests counted in, as they stand now."""
        return self._gate.usage()
