"""How the generic client drives one venue's ccxt class: declarative data per exchange.

Each venue's `client.py` declares a `ClientProfile`: the ccxt class, ccxt
options per api type, which markets to load, the exchange error codes whose
meaning ccxt gets wrong, how the exchange refuses a request for its rate and
which scope that pauses, where the key's permissions and its account's UID can
be read, and how the venue names our client order id in order calls. The
generic `ExchangeClient` reads these; it never asks which exchange it talks to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Protocol

from ctsd.errors import FailureClass
from ctsd.exchanges.model import (
    InterestCharge,
    KeyPermissions,
    LendingTerms,
    MarginAccount,
    OptionsAccount,
)
from ctsd.exchanges.spec import ApiType, RateLimitScope
from ctsd.ratelimit.model import Lane

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class ApiTypeProfile:
    """ccxt settings for one api type of a venue."""

    options: Mapping[str, Any]
    """ccxt `options` (at least `defaultType`)."""
    market_types: tuple[str, ...]
    """`options.fetchMarkets.types`: only these markets are loaded and shared."""
    ping: str = "fetch_time"
    """The lightest request of this api type (a ccxt method, no arguments)."""


@dataclass(frozen=True)
class RefusalRule:
    """How the exchange says "too many requests", and what to pause.

    Matches an HTTP status or an exchange error code. `scope` None pauses every
    scope the request counted in; `pause_s` None takes the answer's Retry-After
    (or the venue's reset header), else the limit's full interval.
    """

    status: int | None = None
    code: str | None = None
    scope: RateLimitScope | None = None
    pause_s: float | None = None

    def matches(self, status: int | None, codes: list[str]) -> bool:
        if self.status is not None and self.status != status:
            return False
        return self.code is None or self.code in codes


@dataclass(frozen=True)
class PermissionsProbe:
    """A ccxt implicit-API method whose answer tells the key's permissions."""

    method: str
    parse: Callable[[Any], KeyPermissions | None]
    params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    answered_by_balance: frozenset[ApiType] = frozenset()
    """Api types whose balance request is this same endpoint: the balance's raw answer
    is parsed instead of asking again (on Binance spot that saves 20 weight a test)."""


@dataclass(frozen=True)
class AccountUidProbe:
    """A ccxt implicit-API method whose answer names the account (UID) the key belongs to.

    Declared where the venue counts its account limits per UID rather than per key
    (Bybit, OKX): once the UID is known, every key of that account shares one budget.
    The answer is read from whichever request asked that endpoint first in the
    client's life (the permissions probe, or ccxt's own flow), so learning the UID
    costs no request of its own where the endpoint is asked anyway.
    """

    method: str
    parse: Callable[[Any], str]
    """The UID in the answer; raises KeyError/TypeError/ValueError/IndexError if absent."""


@dataclass(frozen=True)
class ClientOrderIds:
    """How the venue carries our client order id: ccxt passes each name through `params`.

    `lookups` are the ccxt methods that find an order by that id, tried in turn:
    `fetch_order` (called with no exchange id) answers one order or raises
    OrderNotFound; a list method (`fetch_open_orders`, `fetch_closed_orders`, ...)
    answers the orders the venue filtered by the id, where its single-order query
    cannot take one (Kraken's QueryOrders, Bybit's unified-account fetchOrder).
    """

    create: str = "clientOrderId"
    """The parameter of a new order (ccxt's unified name maps it for most venues)."""
    lookup: str = "clientOrderId"
    """The parameter of fetch and cancel by client order id."""
    lookups: tuple[str, ...] = ("fetch_order",)


@dataclass(frozen=True)
class DerivativesProfile:
    """How a venue runs perpetual futures through ccxt: where each setting lives, what it
    answers when a setting already has the asked value, and how orders name a hedge leg.

    Scopes: a position mode is per `account` (Binance dual side, OKX posMode) or per
    `symbol` (Bybit switch-mode); a margin mode per `symbol` (Binance marginType), per
    `account` (Bybit's unified account) or per `order` (OKX `tdMode`).
    """

    position_mode_scope: str
    margin_mode_scope: str
    unchanged: Mapping[str, frozenset[str]] = field(default_factory=lambda: _EMPTY)
    """Setting ("position_mode", "margin_mode", "leverage") → the venue's "already set"
    error codes: answered so, the setting is what was asked (success)."""
    hedge_param: str = ""
    """The order parameter naming the hedge leg (Binance `positionSide`, Bybit
    `positionIdx`, OKX `posSide`) and its value per leg."""
    hedge_values: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    reduce_only_in_hedge: bool = True
    """Whether a hedge-mode closing order may carry reduceOnly (Binance and OKX refuse it:
    the leg and the side already say it closes)."""
    order_margin_param: str | None = None
    """The order parameter carrying the margin mode, where the venue takes it per order."""
    leverage_margin_param: str | None = None
    """The set-leverage parameter naming the margin mode (OKX `marginMode`)."""
    leverage_per_leg: bool = False
    """Isolated hedge-mode leverage is set per leg (`posSide` long and short: OKX)."""
    funding_sign: int = 1
    """How ccxt signs `fetch_funding_history` amounts: 1 as the wallet moved, -1 as a fee
    (Bybit's `execFee`: positive when paid)."""
    tiers_in_contracts: bool = False
    """Tier bounds are published in contracts (OKX), not in the quote asset."""
    liquidations: tuple[str, Mapping[str, Any]] | None = None
    """An implicit-API method and params listing liquidation bills (OKX, whose ccxt has no
    `fetch_my_liquidations`); None uses ccxt's unified method."""


class VenueCalls(Protocol):
    """What a venue's reader may ask of its client: one ccxt method (unified or implicit
    API) through the client's lane, rate limiter and error translation."""

    async def call(self, method: str, *args: Any, lane: Lane | None = None,
                   signed: bool = False) -> Any: ...

    def symbol_of(self, market_id: str) -> str:
        """The unified symbol of a venue market id (markets loaded)."""
        ...


CHANGED, ALREADY_SET = "changed", "already set"


@dataclass(frozen=True)
class Setting:
    """One account setting an engine start applied: where (a symbol, or "*" for the
    account), what, to which value, and whether it changed or was already so."""

    symbol: str
    name: str
    value: str
    outcome: str


async def _nothing_to_prepare(client: VenueCalls, symbols: tuple[str, ...],
                              leverage: Mapping[str, int]) -> tuple[Setting, ...]:
    return ()


@dataclass(frozen=True)
class MarginProfile:
    """How a venue lends on spot margin (`ctsd/exchanges/<venue>/margin.py`)."""

    read_account: Callable[[VenueCalls, str], Awaitable[MarginAccount]]
    """(client, "cross"/"isolated") → the margin account as the venue reports it."""
    order_params: Callable[[int | None], Mapping[str, Any]] = lambda _leverage: _EMPTY
    """(configured leverage) → what a cross-margin order adds so it borrows what it lacks
    and repays from what it brings in."""
    read_terms: Callable[[VenueCalls, tuple[str, ...], int | None, bool],
                         Awaitable[LendingTerms]] | None = None
    """(client, assets, leverage, keyed) → the lending terms; `keyed`: the client may
    ask the account's own rates."""
    read_interest: Callable[[VenueCalls, tuple[str, ...], tuple[str, ...], int],
                            Awaitable[tuple[InterestCharge, ...]]] | None = None
    """(client, symbols, assets, since_ms) → the account's interest charges."""
    prepare: Callable[[VenueCalls, tuple[str, ...], Mapping[str, int]],
                      Awaitable[tuple[Setting, ...]]] = _nothing_to_prepare
    """(client, symbols, leverage per symbol) → what an engine start set on the account
    (Bybit's spot-margin switch and leverage)."""
    read_liquidations: Callable[[VenueCalls, str, int], Awaitable[frozenset[str]]] | None = (
        None)
    """(client, symbol, since_ms) → venue order ids of the account's liquidations; None
    where the venue keeps no such record."""
    default_leverage: int | None = None
    """The leverage an order names where the venue takes it per order (Kraken)."""
    leverage_range: tuple[int, int] | None = None
    """Leverage a margin engine may configure here; None: the venue's is fixed."""
    close_short: Callable[[VenueCalls, str, str], Awaitable[None]] | None = None
    """(client, symbol, client order id) → the venue's own close of the whole short of
    `symbol`, one market order under that id that repays all it owes, interest
    included (OKX `close-position`); None where an order for the short's size closes it."""


@dataclass(frozen=True)
class OptionsProfile:
    """How a venue trades options (`ctsd/exchanges/<venue>/options.py`)."""

    read_account: Callable[[VenueCalls], Awaitable[OptionsAccount]]
    """The options account (ccxt's `fetch_balance` does not read it on every venue)."""
    holdings_from_account: bool = False
    """ccxt's `fetch_balance` reads another wallet (Binance 4.5.90: the spot one): an
    options connection's holdings are the options account's."""
    read_settlement: Callable[[VenueCalls, Mapping[str, Any]], Awaitable[Decimal | None]] | (
        None) = None
    """(client, ccxt market of an expired contract) → the underlying's price the venue
    settled it at, None until published; None where engines do not trade the venue's
    options (`ctsd.exchanges.options`)."""
    underlying_field: str | None = None
    """Where a contract's ticker (ccxt's `info`) quotes the underlying's price (Binance
    `exercisePrice`, Bybit `underlyingPrice`): what options' risk limits count."""
    position_params: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """What ccxt's `fetch_positions` needs to read option positions (Binance 4.5.90:
    `method=option`, else it reads the futures account's)."""


@dataclass(frozen=True)
class RequestWindow:
    """How a venue bounds when it acts on a signed request (Binance: `timestamp` plus
    `recvWindow`, refused with -1021 once the venue's clock passes their sum).

    A fenced request (an engine under a fleet lease, `ctsd.fencing`) is sent with the
    window ending at the lease's deadline: a request held up in a paused daemon past it
    is refused by the venue, however late it leaves."""

    timestamp_param: str
    window_param: str
    max_window_ms: int
    methods: frozenset[str] = frozenset({"POST", "PUT", "DELETE"})
    """The requests that change something: every one of them is signed on the venue."""

    def bounded(self, params: Mapping[str, Any], timestamp_ms: int,
                remaining_ms: int) -> dict[str, Any]:
        """The widest window, its start moved back so that it ends exactly `remaining_ms`
        from `timestamp_ms` (the venue then needs no guess of the request's latency);
        a deadline further than the widest window allows ends the window earlier."""
        start = timestamp_ms + min(remaining_ms, self.max_window_ms) - self.max_window_ms
        return {**params, self.timestamp_param: start, self.window_param: self.max_window_ms}


@dataclass(frozen=True)
class SigningWindow:
    """How a venue bounds a signed request where ccxt takes the bound from its options, not
    from the request's params (Bybit: `X-BAPI-TIMESTAMP` is the signing time less
    `options['timeDifference']` and `X-BAPI-RECV-WINDOW` is `options['recvWindow']`,
    refused with 10002 once the venue's clock passes their sum).

    A fenced request that changes something is signed with the window ending at the
    lease's deadline, as `RequestWindow` does it."""

    window_option: str
    time_difference_option: str
    max_window_ms: int
    methods: frozenset[str] = frozenset({"POST", "PUT", "DELETE"})

    def bounded(self, options: Mapping[str, Any], remaining_ms: int) -> dict[str, Any]:
        """The widest window, its start moved back (a larger time difference) so that it
        ends exactly `remaining_ms` from now; a deadline further than the widest window
        allows ends the window earlier."""
        back = self.max_window_ms - min(remaining_ms, self.max_window_ms)
        measured = int(options.get(self.time_difference_option) or 0)
        return {self.window_option: self.max_window_ms,
                self.time_difference_option: measured + back}


@dataclass(frozen=True)
class ClientProfile:
    ccxt_class: str
    """The class name in `ccxt.async_support`."""
    api_types: Mapping[ApiType, ApiTypeProfile]
    options: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    """ccxt options every instance gets, whatever its api type."""
    error_codes: Mapping[str, FailureClass] = field(default_factory=lambda: _EMPTY)
    """Exchange error code → class, where it must win over ccxt's exception class."""
    error_codes_after_auth: Mapping[str, FailureClass] = field(default_factory=lambda: _EMPTY)
    """The same, once a signed request of this client has succeeded."""
    unsupported_codes: frozenset[str] = frozenset()
    """The venue's codes for "no such path or method" where it does not answer HTTP 404
    alone (`ctsd.exchanges.ccxt_errors`: an exchange error naming the endpoint)."""
    refusals: tuple[RefusalRule, ...] = ()
    reset_header: str | None = None
    """A header with the epoch milliseconds at which a refused window resets."""
    permissions: PermissionsProbe | None = None
    permissions_for: Mapping[ApiType, PermissionsProbe] = field(
        default_factory=lambda: MappingProxyType({}))
    """Api types whose key permissions another endpoint reports (Binance: margin and
    options permissions are in `apiRestrictions`, not in the spot account)."""
    account_uid: AccountUidProbe | None = None
    """None keeps account limits per key (Binance; Kraken's counter is per key)."""
    client_order_ids: ClientOrderIds = ClientOrderIds()
    derivatives: DerivativesProfile | None = None
    """Perpetual futures; None where the daemon trades none on this venue (Kraken)."""
    margin_trading: MarginProfile | None = None
    """Spot margin; None where the venue lends none here."""
    option_trading: OptionsProfile | None = None
    """Options; None where the venue lists none here (Kraken)."""
    per_trade_fees: bool = False
    """The venue's order answers and updates carry no cumulative fee, only each trade's
    (Binance; Kraken's stream, whose order fee is a USD equivalent): readers list the
    order's trades, and the broker sums them by trade id."""
    stream_filled_field: str | None = None
    """The venue's own field (an order update's `info`) of the amount an order has filled,
    where ccxt.pro leaves `filled` unset until the order closes (Kraken v2 executions:
    `cum_qty`): without it every part-fill of such an order would read as nothing."""
    own_fills_order_param: str | None = None
    """The own-fill history's parameter that narrows it to one order (Binance `orderId`);
    None: the history is read and filtered here."""
    spot_buy_fee_in_base: bool = False
    """A spot buy pays its fee in the base asset, out of what it receives (Binance, Bybit,
    OKX); else every fee is in the quote (settle) asset. Paper trading charges the same."""
    request_window: RequestWindow | None = None
    """How the venue bounds a signed request's validity; None: it takes no bound, and a
    fenced request is checked only here, just before it leaves (`ctsd.fencing`)."""
    signing_window: SigningWindow | None = None
    """The same bound where ccxt signs it from its options, not params (Bybit)."""
    sequential_apis: tuple[str, ...] = ()
    """ccxt api families whose signed requests must reach the exchange one at a time per
    key, with strictly increasing nonces shared by every client of the key (Kraken
    refuses a nonce not above the last one it accepted)."""
