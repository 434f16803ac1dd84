"""What the exchange layer hands back: frozen values with Decimals, never ccxt dicts.

Amounts and prices are `Decimal` (converted from ccxt's floats through their
shortest repr, so 0.1 stays 0.1): engines add and compare them, and float
sums drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ctsd.exchanges.spec import ApiType


@dataclass(frozen=True)
class ConnectionTarget:
    """Which market of which exchange a client talks to; markets are shared per target."""

    exchange: str
    api_type: ApiType
    testnet: bool = False


@dataclass(frozen=True)
class ApiCredentials:
    """Plain-text credentials for the life of one client; never logged."""

    api_key: str
    secret: str
    passphrase: str | None = None

    def __repr__(self) -> str:  # a stray log of this object must not leak
        return f"ApiCredentials(key {self.hint})"

    @property
    def hint(self) -> str:
        return f"****{self.api_key[-4:]}" if len(self.api_key) > 8 else "****"

    def values(self) -> tuple[str, ...]:
        """Every credential value, for redacting messages that came from outside."""
        return tuple(v for v in (self.api_key, self.secret, self.passphrase) if v)


@dataclass(frozen=True)
class ServerTime:
    server_ms: int
    local_ms: float
    """Our clock at the midpoint of the round trip."""
    round_trip_ms: float

    @property
    def skew_ms(self) -> float:
        """Positive when the exchange's clock is ahead of ours."""
        return self.server_ms - self.local_ms


@dataclass(frozen=True)
class Holding:
    asset: str
    free: Decimal
    used: Decimal
    total: Decimal


@dataclass(frozen=True)
class Ticker:
    symbol: str
    last: Decimal
    bid: Decimal | None
    ask: Decimal | None
    timestamp_ms: int | None
    underlying: Decimal | None = None
    """Options: the underlying's price the venue quotes with the contract
    (`OptionsProfile.underlying_field`)."""
    mark: Decimal | None = None
    """Perpetuals: the venue's mark price where its ticker carries it (Bybit's does)."""


@dataclass(frozen=True)
class Candle:
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True)
class MarketTerms:
    """A listed market's assets and trading fees (fractions: 0.001 is 0.1 %).

    What a paper engine needs to charge what the venue would: read from the shared
    markets, so no request is spent on it.
    """

    symbol: str
    base: str
    quote: str
    taker_fee: Decimal
    maker_fee: Decimal
    amount_step: Decimal | None = None
    """The lot size in base units (the venue cuts every order amount down to it)."""
    buy_fee_in_base: bool = False
    """A buy pays its fee in `base` (`ClientProfile.spot_buy_fee_in_base`, spot markets)."""
    price_step: Decimal | None = None
    """The tick: ccxt rounds every limit price to it before it is sent."""


@dataclass(frozen=True)
class Order:
    id: str
    client_id: str | None
    symbol: str
    side: str
    type: str
    status: str | None
    """ccxt's unified status: open, closed, canceled, expired, rejected; None when the
    answer does not say (Bybit and OKX acknowledge a new order with its id only)."""
    amount: Decimal | None
    filled: Decimal | None
    price: Decimal | None
    average: Decimal | None
    timestamp_ms: int | None
    fee: Decimal | None = None
    """Cumulative fee paid in `fee_asset`; None when the answer does not say (Binance's
    order query never does; its new-order answer does for spot)."""
    fee_asset: str | None = None
    reduce_only: bool = False
    trades: tuple[Trade, ...] | None = None
    """Where the venue reports only each trade's fee (`ClientProfile.per_trade_fees`):
    the order's trades the reader saw, which `fee` sums; None elsewhere."""


@dataclass(frozen=True)
class KeyPermissions:
    """What the key may do, as the exchange reports it."""

    read: bool
    trade: bool
    withdraw: bool
    ip_restricted: bool | None = None
    """Whether the key is bound to an IP whitelist, where the exchange says."""
    margin: bool | None = None
    """Whether the key may borrow and trade on margin; None where the venue has no such
    permission of its own (OKX: trading covers it) or does not report it."""
    options: bool | None = None
    """Whether the key may trade options; None as for `margin`."""


@dataclass(frozen=True)
class ApiTypeStatus:
    """Whether the account can use the connection's api type, and why (not)."""

    usable: bool
    detail: str


@dataclass(frozen=True)
class Position:
    """An open perpetual position, in base units (contracts times contract size)."""

    symbol: str
    side: str
    """"long" or "short"."""
    hedged: bool
    """A leg of a hedge-mode account (else the one-way net position)."""
    amount: Decimal
    """Unsigned size in base units."""
    entry_price: Decimal
    mark_price: Decimal | None
    leverage: Decimal | None
    margin_mode: str | None
    margin: Decimal | None
    liquidation_price: Decimal | None
    unrealized_pnl: Decimal | None


@dataclass(frozen=True)
class LeverageTier:
    """One rung of a perpetual's leverage ladder, bounds in the quote asset."""

    floor: Decimal
    cap: Decimal
    max_leverage: Decimal
    mmr: Decimal


@dataclass(frozen=True)
class FundingTerms:
    rate: Decimal
    next_time_ms: int
    mark_price: Decimal | None


@dataclass(frozen=True)
class FundingRecord:
    """A funding payment of the account (amount as the wallet moved) or, with `rate`, a
    rate the market paid at a funding time."""

    id: str
    symbol: str
    amount: Decimal
    asset: str
    timestamp_ms: int
    rate: Decimal | None = None


@dataclass(frozen=True)
class Trade:
    """One own fill, in base units."""

    id: str
    order_id: str
    symbol: str
    side: str
    amount: Decimal
    price: Decimal
    fee: Decimal
    fee_asset: str
    timestamp_ms: int
    maker: bool


@dataclass(frozen=True)
class AccountModes:
    """A perpetuals account's modes as the venue reports them; None where the venue keeps
    the mode per symbol and none was read, or takes it per order."""

    hedge: bool | None
    margin_modes: tuple[tuple[str, str], ...]
    """(symbol, "cross"/"isolated") per symbol, or one ("*", mode) for the whole account."""


@dataclass(frozen=True)
class Debt:
    """What a margin account owes in one asset."""

    asset: str
    borrowed: Decimal
    interest: Decimal


@dataclass(frozen=True)
class MarginAccount:
    """A spot-margin account as the venue reports it (a connection test, a margin engine).

    `level` is the venue's own measure of how safe the loans are, named by
    `level_name` (Binance and OKX "margin level"/"margin ratio": assets over debt;
    Bybit the account's maintenance-margin rate; Kraken the margin level in %); None
    when nothing is owed or the venue shows none.
    """

    mode: str
    """"cross" or "isolated": which account was read."""
    enabled: bool
    """The account may trade on margin now (Bybit: spot margin switched on)."""
    level: Decimal | None
    level_name: str
    debts: tuple[Debt, ...] = ()
    equity: Decimal | None = None
    """The account's net worth in `equity_asset`, where the venue states one."""
    equity_asset: str = ""
    remark: str = ""
    """What the venue needs before it lends, where `enabled` is False."""
    engine_enables: bool = False
    """An engine start turns margin on where it is off (Bybit's spot-margin switch)."""

    @property
    def owes(self) -> bool:
        return any(d.borrowed or d.interest for d in self.debts)


@dataclass(frozen=True)
class OptionsAccount:
    """An options account: what it holds in each settle asset (total is the equity)."""

    balances: tuple[Holding, ...]
    enabled: bool = True
    """Options trading is activated on the account (OKX `opAuth`)."""
    remark: str = ""
    """What the venue needs before it trades options, where `enabled` is False."""


@dataclass(frozen=True)
class OptionChain:
    """The option contracts a venue lists for a connection, in brief."""

    contracts: int
    underlyings: tuple[str, ...]
    settles: tuple[str, ...]
    next_expiry_ms: int | None


HOUR_MS = 3_600_000


@dataclass(frozen=True)
class LendingTerms:
    """How a venue lends on spot margin: what a paper account must charge and when it
    must liquidate to behave like the venue's (`ctsd.engine.brokers.paper_margin`)."""

    max_leverage: Decimal
    """A borrow may not take the margin level (assets over debt) below
    `max_leverage / (max_leverage - 1)`."""
    liquidation_level: Decimal
    """At or below this margin level the venue liquidates."""
    period_rates: tuple[tuple[str, Decimal], ...]
    """Interest per period, per borrowed asset."""
    period_ms: int = HOUR_MS
    charge_on_borrow: bool = False
    """A borrow pays its first period at once (Binance, Kraken's opening fee)."""
    liquidation_margin: Decimal | None = None
    """Liquidate instead when equity falls to this share of the margin posted (Kraken)."""
    margin_per_order: bool = False
    """Each position posts its own margin from the account (OKX, Kraken), 1/leverage of
    its cost whichever its side, instead of borrowing against the whole account."""
    order_leverage: Decimal | None = None
    """What each order posts its margin at, where it is not `max_leverage` (Kraken: the
    order's `leverage`, 2x unless configured, while the pair's maximum, 5x, bounds what
    the position may borrow)."""
    close_in_quote: bool = False
    """A position its fills take back to flat is closed whatever it still owes in the
    base (Kraken's opening fee and rollovers on a short): that is paid out of its quote
    at the closing price, "in an amount denominated in the quote currency"
    (support.kraken.com 202966956); else it stays owed with what the position left
    (OKX: a MARGIN position's liability includes its interest)."""
    close_by_liability: bool = False
    """A short is closed whole by the venue's own close (`MarginProfile.close_short`),
    which buys back all it owes, interest included, grossed up by the taker fee where
    the venue takes a buy's fee in the base (OKX), rather than by a buy of its size."""


@dataclass(frozen=True)
class InterestCharge:
    """One interest charge on a margin loan, as the venue records it (amount > 0)."""

    id: str
    asset: str
    amount: Decimal
    timestamp_ms: int
