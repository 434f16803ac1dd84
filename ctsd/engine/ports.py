"""What the engine needs from the rest of the daemon: the protocols integrators implement.

The engine imports no exchange, gRPC or SQL code. It reaches the outside only
through these seams, each injected by the daemon's wiring:

- `MarketDataSource`: tickers, candles and market facts for one connection,
  through the shared rate limiter (the exchange layer).
- `ExchangeOrderClient`: order calls keyed by client order id (the exchange
  layer, on ccxt; LIVE only).
- `PerpetualMarketData` (perpetuals: leverage tiers, funding terms and rates)
  and `PerpetualAccount` (LIVE perpetuals: account settings, the venue's
  positions, funding payments and fill history).
- `EngineStore`: desired state, orders and fills (`ctsd/store`, SQL).
- `EngineBackend`: per connection, checks it may run an engine and hands out
  the two clients above.

Error contract for every method: raise `ctsd.errors.TemporaryError` subclasses
(Unavailable, ResourceExhausted) for what may succeed on retry, `ClientError`
subclasses when the venue refuses the request itself (an order rejected for
funds or size; NotFound for an order it does not know), and nothing raw from
ccxt or aiohttp. The exchange layer's `ExchangeFailure`s already are these.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from ctsd.engine.config import EngineConfig, TradingMode
from ctsd.engine.margin import InterestCharge, LendingTerms
from ctsd.engine.options import OptionTerms
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import (
    AccountModes,
    AppliedSetting,
    FundingPayment,
    FundingRate,
    LeverageTier,
    SymbolSettings,
    VenuePosition,
    VenueTrade,
)
from ctsd.engine.status import EngineStatus
from ctsd.strategies.base import DataNeeds, PriceBand
from ctsd.strategies.model import (
    Balance,
    Candle,
    Funding,
    MarketInfo,
    MarketKind,
    MarketSnapshot,
    OrderBookTop,
    OrderType,
    PositionSide,
    Side,
    Ticker,
    Trade,
)

T = TypeVar("T")


class MarketDataSource(Protocol):
    async def market(self, symbol: str) -> MarketInfo:
        """Assets and taker/maker fees of `symbol`; read once per engine session."""
        ...

    async def ticker(self, symbol: str) -> Ticker: ...

    async def candles(self, symbol: str, timeframe: str, limit: int) -> tuple[Candle, ...]:
        """The last `limit` CLOSED candles, oldest first (drop the still-forming one)."""
        ...

    async def order_book(self, symbol: str, depth: int) -> OrderBookTop: ...

    async def trades(self, symbol: str, limit: int) -> tuple[Trade, ...]:
        """The last `limit` public trades, oldest first."""
        ...


class MarketEvents(Protocol):
    """What wakes an engine on a WebSocket connection instead of a fixed interval."""

    def follow(self, symbols: tuple[str, ...], needs: DataNeeds) -> None:
        """Subscribe to what the strategy reads; events are what it reacts to."""
        ...

    async def next_event(self, timeout_s: float) -> float | None:
        """Monotonic time of the first market event not yet taken (taking it), or None
        when `timeout_s` passed without one."""
        ...

    def snapshot_now(self, infos: Mapping[str, MarketInfo], needs: DataNeeds, now_ms: int,
                     ) -> MarketSnapshot | None:
        """The market from memory if every stream the strategy reads is live and holds
        enough, else None (then the engine reads through `MarketDataSource`). Called at
        the start of each cycle: the bands of the last one (`quiet`) are dropped."""
        ...

    def interrupt(self) -> None:
        """End a pending `next_event` now (the engine is stopping)."""
        ...

    def wake_after(self, delay_s: float) -> None:
        """An event in `delay_s` whatever the market does (a check that falls due then);
        a later call replaces an earlier one, `close` cancels it."""
        ...

    def quiet(self, bands: Mapping[str, tuple[PriceBand, ...]], until: float) -> None:
        """After a cycle: a ticker change that keeps its symbol inside every one of its
        bands wakes nothing until the monotonic time `until`, when the bands lapse with an
        event (`ctsd.engine.wakes`). The next market read (`snapshot_now`) drops them;
        {} drops them now. Only ticker changes are filtered (see `quiet_events`)."""
        ...

    @property
    def quiet_events(self) -> int:
        """Ticker changes that woke nothing: they stayed inside the engine's bands."""
        ...

    @property
    def streaming(self) -> bool:
        """False while any stream the engine reads is not live: it runs on REST."""
        ...

    @property
    def problem(self) -> str:
        """Why a stream is not live ("" when all are): a refusal names the venue's reason."""
        ...

    @property
    def fallbacks(self) -> int:
        """Reads served by REST because a stream was not live."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OrderTrade:
    """One of an order's trades as the venue numbered it: its amount and its own fee."""

    trade_id: str
    amount: Decimal
    fee: Decimal
    fee_asset: str


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An order as the venue reports it, already translated from ccxt's dict.

    `status` uses the engine's vocabulary: OPEN, FILLED ("closed"), CANCELED
    (also "expired"), REJECTED. `filled`, `average` and `fee` are cumulative.
    """

    client_order_id: str
    exchange_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    status: OrderStatus
    filled: Decimal
    average: Decimal | None
    fee: Decimal
    fee_asset: str
    timestamp_ms: int
    reduce_only: bool = False
    position_side: PositionSide = PositionSide.BOTH
    trades: tuple[OrderTrade, ...] | None = None
    """None: `fee` is the venue's own cumulative fee (Bybit `cumExecFee`, OKX `fee`,
    Kraken `fee_usd_equiv`). Otherwise the venue reports only each trade's fee (Binance)
    and these are the order's trades the reader saw, `fee` their sum: every trade when
    their amounts add up to `filled` (REST reads the order's own fills), else some (a
    stream message lost, a fresh cache after a resubscribe): see `ctsd.engine.brokers.fees`."""


class ExchangeOrderClient(Protocol):
    """Order calls for one connection; every order carries the engine's client order id."""

    async def create_order(
        self, symbol: str, type: OrderType, side: Side, amount: Decimal,
        price: Decimal | None, client_order_id: str, *, reduce_only: bool = False,
        position_side: PositionSide = PositionSide.BOTH,
    ) -> ExchangeOrder:
        """`reduce_only` and `position_side` concern perpetuals: the client sends them as
        its venue names them (and the margin mode where the venue takes it per order)."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> ExchangeOrder:
        """The order after cancelling; `ctsd.errors.NotFound` if the venue has no open order
        under that id (unknown, or already filled)."""
        ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> ExchangeOrder | None:
        """The order, or None when the venue has never seen this client order id."""
        ...

    async def fetch_open_orders(self, symbol: str) -> tuple[ExchangeOrder, ...]: ...

    async def fetch_balance(self) -> tuple[Balance, ...]: ...


class OrderUpdates(Protocol):
    """A LIVE connection's private order stream, as the broker reads it.

    `drain` hands over every update received since the last call, oldest first, and
    whether the stream had a gap meanwhile (a reconnect, a failed login, a stall):
    after a gap the broker reconciles over REST, since updates may have been missed."""

    def drain(self) -> tuple[list[ExchangeOrder], bool]: ...

    @property
    def gap(self) -> bool:
        """A gap happened since the last `drain` (what `drain` will say)."""
        ...

    @property
    def live(self) -> bool: ...

    @property
    def problem(self) -> str:
        """Why the stream is not live; a refused login names the venue's reason."""
        ...

    @property
    def refused(self) -> bool:
        """The venue refused the login: retrying will not help, the key must be fixed."""
        ...

    def suspect(self) -> None:
        """An update the broker expected never came: resubscribe (a gap follows)."""
        ...


class PositionUpdates(Protocol):
    """A LIVE perpetuals connection's private positions stream, as the broker reads it.

    `drain_positions` hands over each leg's updates since the last call, oldest first
    (a flat leg has amount 0), and whether the stream had a gap meanwhile: then the
    broker reads the positions over REST, since updates may have been missed."""

    def drain_positions(self) -> tuple[list[VenuePosition], bool]: ...

    @property
    def positions_gap(self) -> bool: ...

    @property
    def live(self) -> bool: ...


class PerpetualMarketData(Protocol):
    """Public facts of perpetuals: what PAPER computes margin and funding from, and what
    bounds an engine's leverage."""

    async def tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        """The symbol's leverage tiers, lowest notional first."""
        ...

    async def funding(self, symbol: str) -> Funding:
        """The rate due at the next funding time, that time, and the mark price."""
        ...

    async def funding_rates(self, symbol: str, since_ms: int) -> tuple[FundingRate, ...]:
        """Rates paid at funding times from `since_ms` on, oldest first."""
        ...


class PerpetualAccount(Protocol):
    """A LIVE perpetuals account: its settings, positions and histories."""

    async def apply(self, settings: SymbolSettings) -> tuple[AppliedSetting, ...]:
        """Make position mode, margin mode and leverage of one symbol what `settings` say,
        treating the venue's "already set" as success. Raises FailedPrecondition with the
        venue's reason when it refuses (e.g. a position is open)."""
        ...

    async def positions(self, symbols: tuple[str, ...]) -> tuple[VenuePosition, ...]:
        """The open positions of `symbols` (none of them empty)."""
        ...

    async def funding_payments(self, symbol: str, since_ms: int,
                               ) -> tuple[FundingPayment, ...]:
        """Funding the account paid or received on `symbol` from `since_ms` on."""
        ...

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        """Every fill of the account on `symbol` from `since_ms` on, any order's."""
        ...

    async def liquidations(self, symbol: str, since_ms: int) -> int:
        """How many liquidations of `symbol` the venue records from `since_ms` on."""
        ...


class MarginMarketData(Protocol):
    """What a paper margin account lends on: the venue's terms (the account's own rates
    where the connection has a key, else the venue's published or default ones)."""

    async def terms(self, symbols: tuple[str, ...]) -> LendingTerms:
        """Terms for the assets of `symbols` (leverage as the engine is configured)."""
        ...

    def check_leverage(self, leverage: Mapping[str, int]) -> None:
        """InvalidArgument naming `config.leverage["<symbol>"]` for leverage the venue does
        not let a margin engine choose."""
        ...


class OptionMarketData(Protocol):
    """What an options engine reads besides tickers: the contracts' terms and, once
    expired, the price the venue settled them at."""

    async def contract(self, symbol: str, field: str) -> OptionTerms:
        """InvalidArgument naming `field` for a symbol the venue lists as no option."""
        ...

    async def settlement_price(self, symbol: str) -> Decimal | None:
        """The underlying's price `symbol` settled at; None until the venue publishes it."""
        ...


class OptionAccount(Protocol):
    """A LIVE options account: what it holds of each contract, to check the ledger."""

    async def positions(self, symbols: tuple[str, ...]) -> Mapping[str, Decimal]:
        """Contracts held per symbol of `symbols` (negative: written), none for the rest."""
        ...


class MarginAccount(Protocol):
    """A LIVE spot-margin account: its settings, interest charges and own fills."""

    async def prepare(self, symbols: tuple[str, ...], leverage: Mapping[str, int],
                      ) -> tuple[AppliedSetting, ...]:
        """What the venue needs before a margin engine trades (Bybit's spot-margin switch,
        the configured leverage). Raises FailedPrecondition with the venue's reason when
        it refuses, InvalidArgument naming `config.leverage` when out of its range."""
        ...

    async def interest(self, symbols: tuple[str, ...], since_ms: int,
                       ) -> tuple[InterestCharge, ...]:
        """Interest charged on the account's loans in the symbols' assets from `since_ms`."""
        ...

    async def trades(self, symbol: str, since_ms: int) -> tuple[VenueTrade, ...]:
        """Every fill of the account on `symbol` from `since_ms` on, any order's."""
        ...

    async def liquidation_orders(self, symbol: str, since_ms: int) -> frozenset[str] | None:
        """Venue order ids of the liquidations of `symbol` from `since_ms` on; None where
        the venue keeps no such record."""
        ...


class DesiredState(enum.Enum):
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class EngineRecord:
    """What survives a daemon restart: which engine should run, with what, and how far it got.

    `engine_id` is minted at each explicit start and is part of every client order
    id; `cycle` is the last cycle that placed an order, persisted with that cycle's
    first PENDING order (`save_execution`) before anything is sent, so a resumed engine
    (numbering on from it) never reuses a client order id. Cycles that place nothing
    are not stored: they need no id.
    """

    connection_id: str
    engine_id: str
    config: EngineConfig
    desired: DesiredState
    cycle: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class Fence:
    """Who holds an engine's lease and under which token (fleet; `ctsd.fleet`).

    A write passed a fence commits only if, in the same transaction, the lease row
    still names this owner and token and has not expired by the database's clock:
    a daemon that lost the lease (paused, partitioned) can no longer write a
    PENDING order, so it can no longer place one."""

    owner: str
    token: int


class Lease(Protocol):
    """An engine's lease as its engine sees it; held by `ctsd.fleet`, renewed there."""

    @property
    def fence(self) -> Fence: ...

    @property
    def lost(self) -> bool:
        """Another daemon may own the engine now: end it here, touching nothing."""
        ...

    def check(self) -> None:
        """Raise `LeaseLost` once the lease is lost or its renewal deadline passed, by this
        daemon's own clock: before anything is placed, cancelled or written."""
        ...

    def deadline_ms(self) -> int:
        """Wall-clock ms until which a request sent now may be acted upon."""
        ...

    async def ready(self) -> None:
        """Return once the lease may be relied on (renewed in time); raise `LeaseLost` if
        it was lost. Cycles wait here while a renewal is overdue."""
        ...


class EngineLeases(Protocol):
    """Engine ownership in a fleet: an explicit start takes the lease, a stop gives it back."""

    async def acquire(self, connection_id: str) -> Lease:
        """The lease of `connection_id` for this daemon (a new token); FailedPrecondition
        naming the owner when another live daemon holds it."""
        ...

    async def release(self, connection_id: str) -> None:
        """Give up the lease (the engine stopped): nobody adopts a stopped engine."""
        ...

    async def place(self, connection_id: str, config: EngineConfig) -> EngineStatus | None:
        """Start the engine on the member the fleet's load picks: its status, or its
        refusal raised; None to start it here."""
        ...

    async def stop_elsewhere(self, connection_id: str) -> EngineStatus | None:
        """Stop the engine on the live member that owns it, once it did; None to stop
        it here."""
        ...


class EngineStore(Protocol):
    async def load_engines(self) -> list[EngineRecord]: ...

    async def load_engine(self, connection_id: str) -> EngineRecord | None:
        """The record of one connection's engine (a start reads it: not every record)."""
        ...

    async def create_engine(self, record: EngineRecord) -> None:
        """Insert or replace the record of `record.connection_id` (an explicit start)."""
        ...

    async def set_desired(
        self, connection_id: str, desired: DesiredState, last_error: str,
        fence: Fence | None = None,
    ) -> None:
        """Change only the desired state and last error; never the cycle.

        Every write taking a `fence` refuses with `LeaseLost` (nothing written) when the
        fence no longer holds (see `Fence`)."""
        ...

    async def save_cycle(self, connection_id: str, cycle: int,
                         fence: Fence | None = None) -> None:
        """Raise the stored round (`ctsd.engine.rounds`) to `cycle`, never lower it: a
        round reserved before any of its orders goes out."""
        ...

    async def save_execution(self, connection_id: str, execution: Execution,
                             fence: Fence | None = None) -> None:
        """Upsert the order by client order id and insert its fills, ignoring trade ids
        already stored, in one transaction (with the fence check, and the fence's token
        recorded on the order); a PENDING order (written ahead of its placement) also
        raises the engine's stored cycle to the order's, in the same transaction, so one
        write makes both durable before the order is sent."""
        ...

    async def save_executions(self, connection_id: str, executions: Sequence[Execution],
                              fence: Fence | None = None) -> None:
        """`save_execution` of each, in order, in one transaction: fills the engine
        booked from its order stream ride with the next write (an order's PENDING
        record) instead of a commit of their own before the decision."""
        ...

    async def list_orders(
        self, connection_id: str, *, open_only: bool = False
    ) -> list[Order]:
        """Orders oldest first; `open_only` means status PENDING or OPEN."""
        ...

    async def count_orders(self, connection_id: str, id_prefix: str) -> int:
        """How many orders are stored under a client order id starting with `id_prefix`
        (one engine's round: `ctsd.engine.rounds`)."""
        ...

    async def list_fills(self, connection_id: str) -> list[Fill]:
        """Every fill of the connection, oldest first."""
        ...

    async def save_funding(self, connection_id: str, payments: tuple[FundingPayment, ...],
                           fence: Fence | None = None) -> None:
        """Insert funding payments, ignoring funding ids already stored."""
        ...

    async def list_funding(self, connection_id: str) -> list[FundingPayment]:
        """Every funding payment of the connection, oldest first."""
        ...

    async def page_orders(self, connection_id: str, *, open_only: bool, after: int,
                          limit: int) -> Page[Order]:
        """Up to `limit` orders stored after position `after` (0: from the first)."""
        ...

    async def page_fills(self, connection_id: str, *, after: int, limit: int) -> Page[Fill]:
        """Up to `limit` fills stored after position `after` (0: from the first)."""
        ...


@dataclass(frozen=True)
class Page(Generic[T]):
    """Rows in storage order and where the next page starts.

    Positions grow with every row stored and never move, so paging by them stays
    exact while an engine keeps trading, and an order that closes while a client
    pages through the open ones shifts nothing."""

    items: tuple[T, ...]
    next_after: int | None
    """The position to continue after; None when this page is the last."""


@dataclass(frozen=True)
class EngineResources:
    market_data: MarketDataSource
    orders: ExchangeOrderClient | None = None
    """Required for LIVE; PAPER never touches it."""
    kind: MarketKind = MarketKind.SPOT
    modes: AccountModes = field(default_factory=AccountModes)
    """The connection's margin mode and position mode (perpetuals)."""
    perp_market: PerpetualMarketData | None = None
    """Required for perpetuals."""
    perp_account: PerpetualAccount | None = None
    """Required for LIVE perpetuals."""
    margin_market: MarginMarketData | None = None
    """Required for spot margin."""
    margin_account: MarginAccount | None = None
    """Required for LIVE spot margin."""
    option_market: OptionMarketData | None = None
    """Required for options."""
    option_account: OptionAccount | None = None
    """LIVE options: the venue's positions, checked against the ledger each cycle."""
    events: MarketEvents | None = None
    """On a WebSocket connection: market events drive the cycles; None: a fixed interval."""
    order_updates: OrderUpdates | None = None
    """LIVE on a WebSocket connection: fills and order states by stream, REST reconciles."""
    position_updates: PositionUpdates | None = None
    """LIVE perpetuals on a WebSocket connection: positions by stream, REST reconciles."""


class EngineBackend(Protocol):
    async def open(self, connection_id: str, mode: TradingMode) -> EngineResources:
        """Clients for one connection. Raises NotFound, or FailedPrecondition with the reason
        when the connection may not run an engine (disabled, last test failed, LIVE without
        trade permission)."""
        ...

    async def close(self, connection_id: str, resources: EngineResources) -> None:
        """Release exactly the clients of `resources` (one `open`'s answer): a dry run and
        the engine on the same connection each hold their own."""
        ...
