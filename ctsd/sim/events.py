"""Account events: what changed in an account, published the moment it changed.

Why an event bus and not polling: a venue's private WebSocket stream must show an
order, a fill or a balance exactly as REST shows it at that instant (the same fill,
the same trade id), and must not cost anything when nobody listens. So every
change to an account is published synchronously, right after the mutation, to the
listeners of that API key; a listener (a stream connection) renders the message at
once, reading the account as it is now, and queues the text. Publishing is a dict
lookup when no stream listens to the key.

Publishers: `Simulator.place_order`, `cancel_order` and `touch` (fills of resting
orders) publish through `publish_placed`, `publish_canceled` and `publish_filled`
below; other parts of the simulator (funding, liquidation, leverage) build an
`OrderUpdate` or `AccountUpdate` themselves and call `EventBus.publish`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from ctsd.sim.accounts import Account, Order, OrderStatus
from ctsd.sim.market import InstrumentKind, Market

log = logging.getLogger(__name__)


class ExecKind(StrEnum):
    """What happened to an order, as the venues' execution types name it."""

    NEW = "new"
    TRADE = "trade"
    CANCELED = "canceled"
    EXPIRED = "expired"


class UpdateReason(StrEnum):
    """Why balances or positions changed (Binance `m`, Bybit/OKX `eventType`, …)."""

    ORDER = "order"
    DEPOSIT = "deposit"
    FUNDING_FEE = "funding_fee"
    LIQUIDATION = "liquidation"
    ADL = "adl"
    LEVERAGE = "leverage"
    MARGIN_TYPE = "margin_type"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order: the record REST own-fill history shows too."""

    trade_id: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    maker: bool
    at_ms: int

    @property
    def cost(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order as of one execution; `order` is a copy, later changes do not touch it."""

    account: Account
    order: Order
    kind: ExecKind
    fill: Fill | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """Which balances and positions changed; renderers read their current values."""

    account: Account
    at_ms: int
    reason: UpdateReason = UpdateReason.ORDER
    spot_assets: tuple[str, ...] = ()
    derivative_assets: tuple[str, ...] = ()
    positions: tuple[str, ...] = ()
    """Unified symbols (`BTC/USDT:USDT`) whose position changed."""


AccountEvent = OrderUpdate | AccountUpdate
Listener = Callable[[AccountEvent], None]


class EventBus:
    """Listeners per API key; `publish` calls them synchronously, in subscription order.

    A listener must not block (it renders and queues). One that raises is logged and
    kept: a rendering bug must never break the REST call that caused the event.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self.published = 0

    def subscribe(self, api_key: str, listener: Listener) -> Callable[[], None]:
        """Listen to `api_key`'s account; returns the function that stops listening."""
        self._listeners.setdefault(api_key, []).append(listener)

        def unsubscribe() -> None:
            listeners = self._listeners.get(api_key)
            if listeners is not None and listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    del self._listeners[api_key]

        return unsubscribe

    def listening(self, api_key: str) -> bool:
        return api_key in self._listeners

    def listening_keys(self) -> list[str]:
        """API keys with at least one listener."""
        return list(self._listeners)

    def publish(self, event: AccountEvent) -> None:
        listeners = self._listeners.get(event.account.api_key)
        if not listeners:
            return
        self.published += 1
        for listener in tuple(listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", type(event).__name__)


def _snapshot(order: Order, **changes: object) -> Order:
    view = copy.copy(order)
    for name, value in changes.items():
        setattr(view, name, value)
    return view


def _fill_of(order: Order, *, maker: bool) -> Fill:
    """The single execution the matching engine makes of an order (its whole quantity):
    at once as taker when it crosses, later as maker when the price reaches it.

    The trade id is the order id, as Binance's REST order answer reports it, so the
    stream and REST name the same fill.
    """
    assert order.fill_ms is not None and order.filled
    return Fill(
        trade_id=str(order.id), price=order.cost / order.filled, qty=order.filled,
        fee=order.fee, fee_asset=order.fee_asset, maker=maker, at_ms=order.fill_ms,
    )


def _account_update(account: Account, market: Market, orders: Iterable[Order]) -> AccountUpdate:
    spot: set[str] = set()
    derivative: set[str] = set()
    positions: set[str] = set()
    at_ms = market.now_ms()
    for order in orders:
        inst = market.catalog.instruments[order.symbol]
        at_ms = order.updated_ms
        if inst.kind is InstrumentKind.SPOT:
            spot.update((inst.base, inst.quote))
        else:
            derivative.add(inst.quote)
            if order.filled:
                positions.add(inst.symbol)
    return AccountUpdate(account, at_ms, UpdateReason.ORDER, tuple(sorted(spot)),
                         tuple(sorted(derivative)), tuple(sorted(positions)))


def publish_placed(bus: EventBus, account: Account, order: Order, market: Market) -> None:
    """A new order: NEW, then its immediate fill or expiry, then the balances it moved."""
    if not bus.listening(account.api_key):
        return
    zero = Decimal(0)
    new = _snapshot(order, status=OrderStatus.NEW, filled=zero, cost=zero, fee=zero,
                    updated_ms=order.created_ms, fill_ms=None)
    bus.publish(OrderUpdate(account, new, ExecKind.NEW, None, order.created_ms))
    if order.status is OrderStatus.FILLED:
        bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.TRADE,
                                _fill_of(order, maker=False), order.updated_ms))
    elif order.status is OrderStatus.EXPIRED:
        bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.EXPIRED, None,
                                order.updated_ms))
    bus.publish(_account_update(account, market, (order,)))


def publish_canceled(bus: EventBus, account: Account, order: Order, market: Market) -> None:
    if not bus.listening(account.api_key):
        return
    bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.CANCELED, None,
                            order.updated_ms))
    bus.publish(_account_update(account, market, (order,)))


def publish_filled(
    bus: EventBus, account: Account, were_open: Iterable[Order], market: Market,
) -> None:
    """Resting orders that filled since `were_open` was taken (a `matching.sync`)."""
    filled = [o for o in were_open if o.status is OrderStatus.FILLED]
    if not filled or not bus.listening(account.api_key):
        return
    for order in filled:
        bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.TRADE,
                                _fill_of(order, maker=True), order.updated_ms))
    bus.publish(_account_update(account, market, filled))
