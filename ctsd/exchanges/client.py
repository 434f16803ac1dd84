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
    AccountModes,
    ApiCredentials,
    ApiTypeStatus,
    Candle,
    ConnectionTarget,
    Holding,
    KeyPermissions,
    MarginAccount,
    MarketTerms,
    OptionChain,
    OptionsAccount,
    Order,
    ServerTime,
    Ticker,
    Trade,
)
from ctsd.exchanges.profile import ClientProfile
from ctsd.exchanges.spec import ApiType
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
            probe.method for probe in (profile.permissions, profile.account_uid,
                                       *profile.permissions_for.values()) if probe))
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
                        authenticated=self._authenticated,
                        unsupported=self._profile.unsupported_codes):
            return await call()

    async def call(self, method: str, *args: Any, lane: Lane | None = None,
                   signed: bool = False) -> Any:
        """ccxt's `method` (unified or implicit API) with this client's lane, limiter and
        error translation: for the venue readers of `ctsd.exchanges.perpetuals`."""
        bound = getattr(self._exchange, method)
        return await self._run(lambda: bound(*args), lane, signed)

    @property
    def profile(self) -> ClientProfile:
        return self._profile

    def has(self, capability: str) -> bool:
        """Whether ccxt implements `capability` (a `has` key) for this venue."""
        return bool((self._exchange.has or {}).get(capability))

    def market(self, symbol: str) -> Mapping[str, Any]:
        """ccxt's market of a listed `symbol` (markets must be loaded)."""
        market = (self._exchange.markets or {}).get(symbol)
        if not isinstance(market, Mapping):
            raise NotFound(f"{self.target.exchange} does not list {symbol}")
        return market

    def contract_symbols(self) -> list[str]:
        """The loaded contract markets' symbols (markets must be loaded)."""
        return sorted(s for s, m in (self._exchange.markets or {}).items()
                      if isinstance(m, dict) and m.get("contract"))

    def symbol_of(self, market_id: str) -> str:
        """The unified symbol of a venue market id (`BTCUSDT` → `BTC/USDT:USDT`)."""
        return str(self._exchange.safe_symbol(market_id))

    def contract_size(self, symbol: str) -> Decimal:
        """Base units per contract (`answers.contract_size`)."""
        return answers.contract_size(self._exchange.markets, symbol)

    def _in_base(self, order: Order) -> Order:
        return answers.in_base(order, self.contract_size(order.symbol))

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

    async def account_modes(self) -> AccountModes | None:
        """A perpetuals account's position and margin modes (a connection test); None when
        the connection's api type is not perpetual futures or the venue has none here."""
        if self.target.api_type is not ApiType.PERPETUAL_FUTURES or (
                self._profile.derivatives is None):
            return None
        from ctsd.exchanges.perpetuals import PerpetualClient  # it builds on this class

        return await PerpetualClient(self).modes()

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

    async def read_venue(self, read: Callable[[], Awaitable[T]], what: str) -> T:
        """A venue reader's answer (`ctsd/exchanges/<venue>/`), its parse errors as one
        malformed answer naming `what`."""
        await self.load_markets()
        try:
            return await read()
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise malformed(f"{self.target.exchange} {what} ({exc!r})") from exc

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

    # --- what engines ask --------------------------------------------------------------------

    async def fetch_ticker(self, symbol: str) -> Ticker:
        options = self._profile.option_trading
        field = options.underlying_field if options is not None and (
            self.target.api_type is ApiType.OPTIONS) else None
        return answers.ticker(await self._run(lambda: self._exchange.fetch_ticker(symbol)),
                              symbol, field)

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
        from ccxt.base.decimal_to_precision import TICK_SIZE  # loaded with the exchange

        precision = market.get("precision") or {}
        step, tick = (answers.decimal(precision.get(k)) for k in ("amount", "price"))
        if self._exchange.precisionMode != TICK_SIZE:  # numbers of decimal places
            step = None if step is None else Decimal(1).scaleb(-int(step))
            tick = None if tick is None else Decimal(1).scaleb(-int(tick))
        try:
            return MarketTerms(symbol, str(market["base"]), str(market["quote"]),
                               Decimal(str(market.get("taker") or 0)),
                               Decimal(str(market.get("maker") or 0)),
                               step * self.contract_size(symbol) if step else None,
                               self._profile.spot_buy_fee_in_base and market.get("spot") is True,
                               tick)
        except (KeyError, ArithmeticError) as exc:
            raise malformed(f"{self.target.exchange} market {symbol} ({exc!r})") from exc

    async def trading_fees(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(taker, maker) the account pays on `symbol` (a signed request): its fee tier's,
        which may differ from what the markets publish (e.g. OKX spot 0.15 % vs 0.10 %)."""
        raw = await self._run(lambda: self._exchange.fetch_trading_fee(symbol), signed=True)
        taker = answers.decimal(raw.get("taker")) if isinstance(raw, dict) else None
        maker = answers.decimal(raw.get("maker")) if isinstance(raw, dict) else None
        if taker is None or maker is None:
            raise malformed(f"{self.target.exchange} trading fee of {symbol} is incomplete")
        return taker, maker

    async def create_order(
        self, symbol: str, side: str, order_type: str, amount: Decimal,
        price: Decimal | None = None, *, client_id: str | None = None,
        reduce_only: bool = False, leg: str | None = None, margin_mode: str | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> Order:
        """`amount` in base units. Perpetuals: `leg` ("long"/"short") is the hedge-mode
        position the order trades, `margin_mode` goes where the venue takes it per order.
        `extra_params`: what the market's orders add as the venue names it (spot margin's
        borrowing, an option's trade mode)."""
        params: dict[str, Any] = dict(extra_params or {})
        if client_id:
            params[self._profile.client_order_ids.create] = client_id
        if self.target.api_type is ApiType.PERPETUAL_FUTURES:
            params.update(self._perpetual_params(reduce_only, leg, margin_mode))
        elif reduce_only:
            params["reduceOnly"] = True
        raw = await self._run(lambda: self._exchange.create_order(  # markets loaded by now
            symbol, order_type, side, float(amount / self.contract_size(symbol)),
            None if price is None else float(price), params), Lane.ORDER, signed=True)
        placed = self._in_base(answers.order(raw, symbol))
        # Some venues acknowledge with the id alone: fill in what we asked for.
        return replace(placed, side=placed.side or side, type=placed.type or order_type,
                       amount=placed.amount or amount,
                       price=placed.price if placed.price is not None else price)

    def _perpetual_params(self, reduce_only: bool, leg: str | None,
                          margin_mode: str | None) -> dict[str, Any]:
        venue = self._profile.derivatives
        if venue is None:
            return {"reduceOnly": True} if reduce_only else {}
        params: dict[str, Any] = {}
        if leg is not None:
            params[venue.hedge_param] = venue.hedge_values[leg]
        if reduce_only and (leg is None or venue.reduce_only_in_hedge):
            params["reduceOnly"] = True
        if margin_mode is not None and venue.order_margin_param:
            params[venue.order_margin_param] = margin_mode
        return params

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        raw = await self._run(lambda: self._exchange.cancel_order(order_id, symbol),
                              Lane.ORDER, signed=True)
        return self._in_base(answers.order(raw, symbol, order_id))

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        raw = await self._run(lambda: self._exchange.fetch_order(order_id, symbol), signed=True)
        return self._in_base(answers.order(raw, symbol, order_id))

    async def fetch_order_trades(self, order_id: str, symbol: str) -> list[Trade]:
        """An order's own fills as the venue's fill history lists them, each with its fee:
        for venues whose order answer carries no fee (Binance's order query)."""
        param = self._profile.own_fills_order_param
        raw = await self._run(lambda: self._exchange.fetch_my_trades(
            symbol, None, None, {param: order_id} if param else {}), signed=True)
        return [t for t in answers.trades(raw, self.contract_size(symbol))
                if t.order_id == order_id]

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
            found = next((o for o in answers.orders(raw) if o.client_id == client_id), None)
            return None if found is None else self._in_base(found)
        try:
            raw = await self._run(lambda: call(None, symbol, params), signed=True)
        except ExchangeFailure as exc:
            if exc.rejection is OrderRejection.ORDER_NOT_FOUND:
                return None
            raise
        return self._in_base(answers.order(raw, symbol))

    async def cancel_order_by_client_id(self, client_id: str, symbol: str) -> Order:
        """Cancels the open order placed under `client_id`, and answers it as it now stands.

        Binance's cancel answer is the order as it stands (status, amounts, executed
        quote), so it is the answer; a second request would only sit between a LIVE
        engine's cancel and the order its cycle places next. Cancel answers carry the id
        alone on Bybit and OKX and a count on Kraken, so there the order is read again for
        its status and fills. Fees come as `ExchangeOrders` completes them. An
        ORDER_NOT_FOUND rejection when nothing open goes by that id (unknown, or already
        filled or canceled).
        """
        params = {self._profile.client_order_ids.lookup: client_id}
        raw = await self._run(lambda: self._exchange.cancel_order(None, symbol, params),
                              Lane.ORDER, signed=True)
        if _whole_order(raw):  # its clientOrderId is the cancel request's own on Binance
            return replace(self._in_base(answers.order(raw, symbol)), client_id=client_id)
        found = await self.fetch_order_by_client_id(client_id, symbol)
        if found is None:
            raise malformed(f"{self.target.exchange} canceled {client_id} but no longer "
                            "finds it")
        return found

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        raw = await self._run(lambda: self._exchange.fetch_open_orders(symbol), signed=True)
        return [self._in_base(o) for o in answers.orders(raw)]

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


def _whole_order(raw: Any) -> bool:
    """Whether a cancel answer says everything a read of the order would: its id, a
    status and both amounts (ccxt leaves them None when the venue did not send them)."""
    return isinstance(raw, Mapping) and all(
        raw.get(key) not in (None, "") for key in ("id", "status", "amount", "filled"))
