"""`ExchangeClient`: one connection's authenticated view of an exchange, on ccxt.

Generic on purpose: what differs between venues is data in their
`ClientProfile` and `EndpointRule`s. Every public method

1. makes sure the shared markets are loaded and adopted (no copy),
2. runs the ccxt call in its lane (orders first, tests, then polling), each
   HTTP request of it waiting for the rate limiter (`ctsd.exchanges.throttle`),
3. translates whatever ccxt raises in one place (`ctsd.exchanges.ccxt_errors`),
4. validates the answer into frozen values (`ctsd.exchanges.answers`).

Created by `ExchangeClientFactory.client`; close it (or `async with`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

from ctsd.errors import ExchangeFailure, FailureClass, NotFound, OrderRejection
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_errors import malformed, translated
from ctsd.exchanges.markets import MarketCache
from ctsd.exchanges.model import (
    ApiCredentials,
    ApiTypeStatus,
    Candle,
    ConnectionTarget,
    Holding,
    KeyPermissions,
    MarketTerms,
    Order,
    ServerTime,
    Ticker,
)
from ctsd.exchanges.profile import ClientProfile
from ctsd.exchanges.streams import OrderBook, PublicTrade, order_book, public_trades
from ctsd.exchanges.throttle import RequestGate, lane
from ctsd.ratelimit import Lane, ScopeUsage
from ctsd.tasks import AsyncClosing

T = TypeVar("T")


def _keep_answers(exchange: Any, methods: Iterable[str]) -> dict[str, Any]:
    """Wrap the ccxt implicit-API `methods` of `exchange` so their last answers are kept.

    Probes read the kept answer instead of asking again: ccxt's bybit asks
    `/v5/user/query-api` itself on the first balance request (`is_unified_enabled`)
    and keeps only two flags of it; the key's permissions and UID are in the same answer.
    """
    kept: dict[str, Any] = {}

    def keeping(name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def kept_call(*args: Any, **kwargs: Any) -> Any:
            kept[name] = answer = await call(*args, **kwargs)
            return answer

        return kept_call

    for name in set(methods):
        setattr(exchange, name, keeping(name, getattr(exchange, name)))
    return kept


class ExchangeClient(AsyncClosing):
    def __init__(
        self, exchange: Any, target: ConnectionTarget, profile: ClientProfile,
        markets: MarketCache, gate: RequestGate, credentials: ApiCredentials | None,
        default_lane: Lane = Lane.POLL, on_account_uid: Callable[[str], None] | None = None,
    ) -> None:
        self._exchange = exchange
        self._on_account_uid = on_account_uid
        """Told the key's UID once learned (the factory: later clients of the key share it)."""
        self._answers = _keep_answers(exchange, (
            probe.method for probe in (profile.permissions, profile.account_uid) if probe))
        self.target = target
        self._profile = profile
        self._markets = markets
        self._gate = gate
        self._secrets = credentials.values() if credentials else ()
        self._lane = default_lane
        self._markets_version = 0
        self._authenticated = False
        self._holdings: tuple[Holding, ...] | None = None
        self._balance_answer: Any = None
        """The venue's own answer to the last balance request (ccxt's `info`)."""
        self._closed = False

    # --- plumbing ----------------------------------------------------------------------

    async def translate(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run one ccxt coroutine with this client's error translation."""
        with translated(self.target.exchange, secrets=self._secrets,
                        codes=self._profile.error_codes,
                        codes_after_auth=self._profile.error_codes_after_auth,
                        authenticated=self._authenticated):
            return await call()

    async def _run(self, call: Callable[[], Awaitable[T]], in_lane: Lane | None = None,
                   signed: bool = False) -> T:
        if self._closed:
            raise RuntimeError("exchange client is closed")
        with lane(self._lane if in_lane is None else in_lane):
            await self._adopt_markets()
            result = await self.translate(call)
        if signed:
            self._authenticated = True
        return result

    async def _adopt_markets(self) -> None:
        await self._markets.ensure()
        self._markets_version = self._markets.share_with(self._exchange, self._markets_version)

    # --- what a connection test asks -------------------------------------------------------

    async def load_markets(self) -> int:
        """Loads (or reuses) the shared markets of this target; how many there are."""
        with lane(self._lane):
            await self._adopt_markets()
        return self._markets.count

    async def server_time(self) -> ServerTime:
        before = time.time() * 1000
        server_ms = answers.server_time(await self._run(self._exchange.fetch_time))
        after = time.time() * 1000
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
        raw = await self._run(self._exchange.fetch_balance, signed=True)
        self._holdings = answers.holdings(raw)
        self._balance_answer = raw.get("info") if isinstance(raw, dict) else None
        return self._holdings

    async def key_permissions(self) -> KeyPermissions | None:
        """The key's permissions where the exchange reports them, else None."""
        probe = self._profile.permissions
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

    # --- what engines ask --------------------------------------------------------------------

    async def fetch_ticker(self, symbol: str) -> Ticker:
        return answers.ticker(await self._run(lambda: self._exchange.fetch_ticker(symbol)), symbol)

    async def fetch_ohlcv(self, symbol: str, timeframe: str = "1m", limit: int = 100,
                          since_ms: int | None = None) -> list[Candle]:
        raw = await self._run(lambda: self._exchange.fetch_ohlcv(symbol, timeframe, since_ms,
                                                                 limit))
        return answers.candles(raw, symbol)

    async def fetch_order_book(self, symbol: str, depth: int) -> OrderBook:
        raw = await self._run(lambda: self._exchange.fetch_order_book(symbol, depth))
        return order_book(raw, symbol, depth)

    async def fetch_trades(self, symbol: str, limit: int) -> list[PublicTrade]:
        raw = await self._run(lambda: self._exchange.fetch_trades(symbol, None, limit))
        return public_trades(raw, symbol)

    async def market_terms(self, symbol: str) -> MarketTerms:
        """Assets and fees of a listed `symbol`; NotFound when the venue does not list it."""
        with lane(self._lane):
            await self._adopt_markets()
        market = (self._exchange.markets or {}).get(symbol)
        if not isinstance(market, dict):
            raise NotFound(f"{self.target.exchange} does not list {symbol}")
        try:
            return MarketTerms(symbol, str(market["base"]), str(market["quote"]),
                               Decimal(str(market.get("taker") or 0)),
                               Decimal(str(market.get("maker") or 0)))
        except (KeyError, ArithmeticError) as exc:
            raise malformed(f"{self.target.exchange} market {symbol} ({exc!r})") from exc

    async def create_order(
        self, symbol: str, side: str, order_type: str, amount: Decimal,
        price: Decimal | None = None, *, client_id: str | None = None,
    ) -> Order:
        params = {self._profile.client_order_ids.create: client_id} if client_id else {}
        raw = await self._run(lambda: self._exchange.create_order(
            symbol, order_type, side, float(amount), None if price is None else float(price),
            params), Lane.ORDER, signed=True)
        placed = answers.order(raw, symbol)
        # Some venues acknowledge with the id alone: fill in what we asked for.
        return replace(placed, side=placed.side or side, type=placed.type or order_type,
                       amount=placed.amount or amount,
                       price=placed.price if placed.price is not None else price)

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        raw = await self._run(lambda: self._exchange.cancel_order(order_id, symbol),
                              Lane.ORDER, signed=True)
        return answers.order(raw, symbol, order_id)

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        raw = await self._run(lambda: self._exchange.fetch_order(order_id, symbol), signed=True)
        return answers.order(raw, symbol, order_id)

    async def fetch_order_by_client_id(self, client_id: str, symbol: str) -> Order | None:
        """The order placed under `client_id`, any status; None when the venue has none.

        Asks each of the venue's declared lookups in turn (`ClientOrderIds.lookups`).
        """
        for method in self._profile.client_order_ids.lookups:
            found = await self._lookup(method, client_id, symbol)
            if found is not None:
                return found
        return None

    async def _lookup(self, method: str, client_id: str, symbol: str) -> Order | None:
        call = getattr(self._exchange, method)
        params = {self._profile.client_order_ids.lookup: client_id}
        if method != "fetch_order":  # a list the venue filtered by the id
            raw = await self._run(lambda: call(symbol, None, None, params), signed=True)
            return next((o for o in answers.orders(raw) if o.client_id == client_id), None)
        try:
            raw = await self._run(lambda: call(None, symbol, params), signed=True)
        except ExchangeFailure as exc:
            if exc.rejection is OrderRejection.ORDER_NOT_FOUND:
                return None
            raise
        return answers.order(raw, symbol)

    async def cancel_order_by_client_id(self, client_id: str, symbol: str) -> Order:
        """Cancels the open order placed under `client_id`, and answers it as it now stands.

        Cancel answers carry the id alone on Bybit and OKX and a count on Kraken, so the
        order is read again for its status, fills and fee. An ORDER_NOT_FOUND rejection
        when nothing open goes by that id (unknown, or already filled or canceled).
        """
        params = {self._profile.client_order_ids.lookup: client_id}
        await self._run(lambda: self._exchange.cancel_order(None, symbol, params),
                        Lane.ORDER, signed=True)
        found = await self.fetch_order_by_client_id(client_id, symbol)
        if found is None:
            raise malformed(f"{self.target.exchange} canceled {client_id} but no longer "
                            "finds it")
        return found

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        raw = await self._run(lambda: self._exchange.fetch_open_orders(symbol), signed=True)
        return answers.orders(raw)

    def amount_to_precision(self, symbol: str, amount: Decimal) -> Decimal:
        """`amount` rounded to the market's lot size (markets must be loaded)."""
        return Decimal(self._exchange.amount_to_precision(symbol, float(amount)))

    def price_to_precision(self, symbol: str, price: Decimal) -> Decimal:
        return Decimal(self._exchange.price_to_precision(symbol, float(price)))

    # --- lifecycle -----------------------------------------------------------------------------

    async def close(self) -> None:
        """Release the ccxt instance (the HTTP session and markets are the factory's)."""
        if not self._closed:
            self._closed = True
            await self._exchange.close()

