"""Simulated exchange accounts: credentials, permissions, balances and orders.

Venue-independent on purpose: a venue module authenticates a request to an
`Account`, asks `ctsd.sim.matching` to place or cancel orders, and renders the
resulting `Order`s and balances in its own wire format. Failures are raised as
`Rejection`s with a `RejectKind`, which each venue maps to its own error code
(e.g. INSUFFICIENT_FUNDS → Binance -2010/-2019, Bybit 170131, OKX 51008,
Kraken `EOrder:Insufficient funds`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ctsd.sim.loans import LoanBook
from ctsd.sim.market import InstrumentKind
from ctsd.sim.positions import MarginMode, PerpAccount, PositionSide

if TYPE_CHECKING:
    from ctsd.sim.events import EventBus


class Permission(StrEnum):
    READ = "read"
    TRADE = "trade"
    WITHDRAW = "withdraw"
    MARGIN = "margin"
    """Borrow, repay and margin orders (Binance `enableMargin`)."""
    OPTIONS = "options"
    """Options trading (Binance `enableVanillaOptions`, Bybit `OptionsTrade`)."""


DEFAULT_PERMISSIONS = frozenset({Permission.READ, Permission.TRADE, Permission.MARGIN,
                                 Permission.OPTIONS})
SPOT_WALLET = "spot"
"""The account's main balances (`Account.spot`); the unified wallet on Bybit and OKX."""


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    NEW = "new"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        return self is OrderStatus.NEW


class RejectKind(StrEnum):
    """Why an account operation failed; venues map each to their own code and body."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_ORDER = "unknown_order"
    ORDER_NOT_OPEN = "order_not_open"
    UNKNOWN_SYMBOL = "unknown_symbol"
    PRICE_FILTER = "price_filter"
    LOT_SIZE = "lot_size"
    MIN_NOTIONAL = "min_notional"
    BAD_PARAMETER = "bad_parameter"
    DUPLICATE_CLIENT_ID = "duplicate_client_id"
    WOULD_TAKE = "would_take"
    """A post-only (maker-only) order that would cross the book."""
    WOULD_TRIGGER = "would_trigger"
    """A stop or take-profit whose trigger the price has already reached."""
    BORROW_LIMIT = "borrow_limit"
    """A borrow (or a margin order's) beyond what the wallet may borrow."""
    REDUCE_ONLY = "reduce_only"
    """A reduce-only (or hedge-mode closing) order that would open or grow a position."""
    POSITION_SIDE = "position_side"
    """A hedge-mode side on a one-way account, or none on a hedge-mode one."""
    POSITION_LIMIT = "position_limit"
    """The position would pass the notional cap of its leverage tier."""


class Rejection(Exception):
    """An expected, venue-mappable failure of an account operation."""

    def __init__(self, kind: RejectKind, detail: str = "") -> None:
        super().__init__(f"{kind.value}: {detail}" if detail else kind.value)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fee rates as fractions (0.001 = 0.1 %); each venue passes its own."""

    maker: Decimal
    taker: Decimal
    base_fee_on_buy: bool = False
    """Spot buys pay the fee in the base asset, out of what they receive (Binance, Bybit,
    OKX); otherwise every fee is in the quote (settle) asset (Kraken, all perpetuals)."""
    decimals: int | None = None
    """Each trade's fee is charged rounded (half up) to this many decimals, where the
    venue reports fees no finer (Kraken's 5): the trades' fees then add up to the order's
    as the venue reports both. None: charged exactly."""


def _decimals(raw: Mapping[str, Any] | None) -> dict[str, Decimal]:
    return {str(k): Decimal(str(v)) for k, v in (raw or {}).items()}


@dataclass(frozen=True)
class AccountSpec:
    """What provisioning needs: from the accounts file, the admin API or a test."""

    api_key: str
    secret: str
    passphrase: str | None = None
    spot: Mapping[str, Decimal] = field(default_factory=dict)
    derivatives: Mapping[str, Decimal] = field(default_factory=dict)
    margin: Mapping[str, Decimal] = field(default_factory=dict)
    """A separate cross-margin wallet's opening balances (Binance); empty elsewhere."""
    options: Mapping[str, Decimal] = field(default_factory=dict)
    """A separate options wallet's opening balances (Binance); Bybit and OKX trade
    options from the unified balance (`spot`)."""
    permissions: frozenset[Permission] = DEFAULT_PERMISSIONS
    ip_whitelist: tuple[str, ...] = ()
    """Empty means any address may use the key."""
    uid: int | None = None
    leverage: int = 10
    """Default leverage of every perpetual until the account sets its own."""

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> AccountSpec:
        """Parse the JSON shape used by `--accounts FILE` and `POST /admin/accounts`."""
        balances = raw.get("balances", {})
        perms = raw.get("permissions", [p.value for p in DEFAULT_PERMISSIONS])
        return cls(
            api_key=str(raw["api_key"]),
            secret=str(raw["secret"]),
            passphrase=None if raw.get("passphrase") is None else str(raw["passphrase"]),
            spot=_decimals(balances.get("spot")),
            derivatives=_decimals(balances.get("derivatives")),
            margin=_decimals(balances.get("margin")),
            options=_decimals(balances.get("options")),
            permissions=frozenset(Permission(p) for p in perms),
            ip_whitelist=tuple(str(ip) for ip in raw.get("ip_whitelist", ())),
            uid=None if raw.get("uid") is None else int(raw["uid"]),
            leverage=int(raw.get("leverage", 10)),
        )


@dataclass(slots=True)
class Holding:
    """A balance of one asset in one wallet: what is free, what open orders hold, and
    (margin wallets) what is borrowed and the interest accrued on it, both owed."""

    free: Decimal = Decimal(0)
    locked: Decimal = Decimal(0)
    borrowed: Decimal = Decimal(0)
    interest: Decimal = Decimal(0)
    interest_index: int = 0
    """The last interest period (`ctsd.sim.interest`) already charged on `borrowed`."""

    @property
    def total(self) -> Decimal:
        return self.free + self.locked

    @property
    def debt(self) -> Decimal:
        return self.borrowed + self.interest

    @property
    def net(self) -> Decimal:
        """What the asset is worth to the account: held minus owed."""
        return self.free + self.locked - self.borrowed - self.interest


@dataclass(frozen=True, slots=True)
class Trigger:
    """A stop or take-profit condition on the last traded price."""

    price: Decimal
    rises: bool
    """True: fires when a trade prints at or above `price`; False: at or below."""


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of the account's orders (what own-trade endpoints list)."""

    trade_id: int
    """The account store's sequence: unique across accounts, not on the public tape."""
    order_id: int
    client_id: str
    symbol: str
    kind: InstrumentKind
    side: Side
    qty: Decimal
    price: Decimal
    fee: Decimal
    """Positive: a charge, in `fee_asset`."""
    fee_asset: str
    maker: bool
    time_ms: int
    realized_pnl: Decimal = Decimal(0)
    """Perpetuals: profit or loss this fill realised by reducing a position (before fee)."""
    wallet: str = SPOT_WALLET
    """The order's wallet (`Order.wallet`): margin fills list apart from spot ones."""

    @property
    def quote_qty(self) -> Decimal:
        return self.qty * self.price


@dataclass(slots=True)
class Order:
    id: int
    client_id: str
    symbol: str
    kind: InstrumentKind
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None
    time_in_force: TimeInForce
    fees: FeeSchedule
    created_ms: int
    updated_ms: int
    reduce_only: bool = False
    status: OrderStatus = OrderStatus.NEW
    filled: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    """Quote amount filled (sum of qty * fill price)."""
    fee: Decimal = Decimal(0)
    fee_asset: str = ""
    locked: Decimal = Decimal(0)
    """Funds held by this order while open: quote (spot buy), base (spot sell) or margin."""
    fill_ms: int | None = None
    quote_qty: Decimal | None = None
    """The quote amount a market order was placed by (Binance `quoteOrderQty`)."""
    note: object = None
    """What a venue keeps about the order beyond the core fields (OKX's ordType and
    tdMode), set at placement so every renderer of the order (REST, streams) sees it."""
    trigger: Trigger | None = None
    """Stops and take-profits: the order works only once this fires."""
    triggered_ms: int | None = None
    post_only: bool = False
    checked_trade: int = 0
    """The last public trade this open order has been matched against (`matching.sync`)."""
    wallet: str = SPOT_WALLET
    """Which of the account's wallets a spot order trades (`Account.wallet`): margin
    orders trade a margin wallet."""
    auto_borrow: bool = False
    """Margin: borrow what the order needs beyond the wallet's free balance."""
    auto_repay: bool = False
    """Margin: what the order brings in repays the wallet's debt in that asset first."""
    leverage: Decimal | None = None
    """Position wallets (OKX margin, Kraken): the account funds 1/leverage of what the
    order borrows, moved from the spot wallet when it is placed."""
    borrowed: Decimal = Decimal(0)
    """What placing the order borrowed (Binance `marginBuyBorrowAmount`)."""
    margin: Decimal = Decimal(0)
    """Position wallets: the margin placing the order posted for what it opens, less the
    share its fills have opened so far (`ctsd.sim.reversal`)."""
    split: int = 1
    """Fills in parts of at most ⌈qty/split⌉ (`ctsd.sim.matching`, `Simulator.fill_split`)."""
    filled_by: int = -1
    """The last public trade that filled a part of this resting order: none fills twice."""

    @property
    def untriggered(self) -> bool:
        return self.trigger is not None and self.triggered_ms is None

    @property
    def stop_loss(self) -> bool:
        """A trigger against the position it protects: a sell that fires on a fall or a
        buy on a rise (else, with a trigger, a take-profit)."""
        return self.trigger is not None and self.trigger.rises is (self.side is Side.BUY)
    position_side: PositionSide = PositionSide.BOTH
    margin_mode: MarginMode = MarginMode.CROSS
    liquidation: bool = False
    """Placed by the venue's liquidation engine, not by the account."""

    @property
    def average(self) -> Decimal | None:
        return self.cost / self.filled if self.filled else None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled


@dataclass(frozen=True, slots=True)
class DerivativesBalance:
    """One settle asset of the derivatives wallet, in the terms every venue reports."""

    asset: str
    wallet: Decimal
    unrealized_pnl: Decimal
    position_margin: Decimal
    """Initial margin of cross positions (at the mark price) plus isolated margins."""
    order_margin: Decimal
    isolated_upnl: Decimal = Decimal(0)
    """The isolated positions' share of `unrealized_pnl`, which is not available."""
    maintenance_margin: Decimal = Decimal(0)

    @property
    def equity(self) -> Decimal:
        return self.wallet + self.unrealized_pnl

    @property
    def available(self) -> Decimal:
        return self.equity - self.position_margin - self.order_margin - self.isolated_upnl


class Account:
    """One API key's state. Mutated only through `ctsd.sim.matching` (orders, balances)
    and `ctsd.sim.derivatives`/`funding`/`liquidation` (the `perp` state), which
    announce what they change on `events` (`ctsd.sim.events`)."""

    def __init__(self, spec: AccountSpec, uid: int, events: EventBus) -> None:
        self.spec = spec
        self.uid = uid
        self.events = events
        """The simulator's bus, shared by every account (`ctsd.sim.events`)."""
        self.spot: dict[str, Holding] = {a: Holding(free=v) for a, v in spec.spot.items()}
        self.wallets: dict[str, dict[str, Holding]] = {
            SPOT_WALLET: self.spot,
            "margin": {a: Holding(free=v) for a, v in spec.margin.items()},
            "options": {a: Holding(free=v) for a, v in spec.options.items()},
        }
        """Every wallet by name: `spot`, Binance's cross `margin` and `options`, and the
        margin wallets opened on demand (`ctsd.sim.lending`)."""
        self.loans = LoanBook()
        self.extras: dict[str, object] = {}
        """State other modules keep per account (`ctsd.sim.option_trading`'s book)."""
        self.derivatives: dict[str, Decimal] = dict(spec.derivatives)
        """Derivatives wallet balance per settle asset (isolated margins included)."""
        self.perp = PerpAccount(Decimal(spec.leverage))
        self.orders: dict[int, Order] = {}
        self.fills: list[Fill] = []
        """Every fill, oldest first (append-only)."""
        self._fills_by_order: dict[int, list[Fill]] = {}
        self._by_client_id: dict[str, int] = {}
        self.last_nonce = 0
        """Highest nonce seen (Kraken-style replay protection)."""

    @property
    def api_key(self) -> str:
        return self.spec.api_key

    def holding(self, asset: str, wallet: str = SPOT_WALLET) -> Holding:
        return self.wallet(wallet).setdefault(asset, Holding())

    def wallet(self, name: str) -> dict[str, Holding]:
        """A wallet by name, opened empty on first use."""
        return self.wallets.setdefault(name, {})

    def add_order(self, order: Order) -> None:
        if order.client_id in self._by_client_id:
            raise Rejection(RejectKind.DUPLICATE_CLIENT_ID, order.client_id)
        self.orders[order.id] = order
        self._by_client_id[order.client_id] = order.id

    def record_fill(self, fill: Fill) -> None:
        self.fills.append(fill)
        self._fills_by_order.setdefault(fill.order_id, []).append(fill)

    def fills_of(self, order_id: int) -> list[Fill]:
        return list(self._fills_by_order.get(order_id, ()))

    def has_client_id(self, client_id: str) -> bool:
        return client_id in self._by_client_id

    def find_order(self, order_id: int | None = None, client_id: str | None = None) -> Order:
        """The order by exchange id or client id, open or not."""
        if order_id is None and client_id is not None:
            order_id = self._by_client_id.get(client_id)
        order = self.orders.get(order_id) if order_id is not None else None
        if order is None:
            raise Rejection(RejectKind.UNKNOWN_ORDER, str(order_id or client_id))
        return order

    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [
            o for o in self.orders.values()
            if o.status.is_open and (symbol is None or o.symbol == symbol)
        ]


class AccountStore:
    """Every provisioned account, indexed by API key; owns the order-id sequence."""

    def __init__(self, events: EventBus) -> None:
        self.events = events
        self._by_key: dict[str, Account] = {}
        self._uids = itertools.count(100_000_001)
        self._order_ids = itertools.count(1_000_000_001)
        self._trade_ids = itertools.count(500_000_001)

    def provision(self, spec: AccountSpec) -> Account:
        """Add (or replace) the account for `spec.api_key`, with fresh balances."""
        account = Account(spec, spec.uid if spec.uid is not None else next(self._uids),
                          self.events)
        self._by_key[spec.api_key] = account
        return account

    def remove(self, api_key: str) -> bool:
        return self._by_key.pop(api_key, None) is not None

    def get(self, api_key: str) -> Account | None:
        return self._by_key.get(api_key)

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._by_key.values()))

    def __len__(self) -> int:
        return len(self._by_key)

    def next_order_id(self) -> int:
        return next(self._order_ids)

    def next_trade_id(self) -> int:
        return next(self._trade_ids)

    def reset(self) -> None:
        """Re-provision every account from its spec: balances back, orders gone."""
        specs = [a.spec for a in self._by_key.values()]
        uids = {a.spec.api_key: a.uid for a in self._by_key.values()}
        self._by_key.clear()
        for spec in specs:
            self._by_key[spec.api_key] = Account(spec, uids[spec.api_key], self.events)
