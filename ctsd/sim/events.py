"""Account events: what changed in an account, published the moment it changed.

Why an event bus and not polling: a venue's private WebSocket stream must show an
order, a fill or a balance exactly as REST shows it at that instant (the same fill,
the same trade id), and must not cost anything when nobody listens. So every
change to an account is published synchronously, right after the mutation, to the
listeners of that API key; a listener (a stream connection) renders the message at
once, reading the account as it is now, and queues the text. Publishing is a dict
lookup when no stream listens to the key.

This is the simulator's one event mechanism. Publishers: `Simulator.place_order`,
`cancel_order` and `touch` (fills of resting orders, and after a liquidation its
orders' fills with reason LIQUIDATION) publish through `publish_placed`,
`publish_canceled` and `publish_synced` below; the perpetuals model publishes
where it mutates, through `publish_account`: `ctsd.sim.funding` (FUNDING_FEE),
`ctsd.sim.derivatives` (LEVERAGE, MARGIN_TYPE). Every account carries the bus
(`Account.events`), so a module that changes an account needs nothing else to
announce it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from ctsd.sim.accounts import SPOT_WALLET, Account, Fill, Order, OrderStatus
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
class OrderUpdate:
    """An order as of one execution; `order` is a copy, later changes do not touch it."""

    account: Account
    order: Order
    kind: ExecKind
    fill: Fill | None
    """The execution this update reports (`account.fills` holds the same record)."""
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
    wallets: tuple[str, ...] = (SPOT_WALLET,)
    """The spot-type wallets `spot_assets` moved in (a margin order's is its margin
    wallet): a venue streams each wallet's balances to its own account's stream."""


AccountEvent = OrderUpdate | AccountUpdate
Listener = Callable[[AccountEvent], None]


class EventBus:
    """Listeners per API key; `publish` calls them synchronously, in subscription order.

    A listener must not block (it renders and queues). One that raises is logged and
    kept: a rendering bug must never break the REST call that caused the event.
    """

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self.published = 0
        self.now_ms = now_ms
        """The market's clock: the time of a change published without one."""

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


def _as_of(order: Order, fills: list[Fill], upto: Fill) -> Order:
    """The order as it stood right after `upto`, one of its `fills` (oldest first)."""
    done = fills[: fills.index(upto) + 1]
    filled = sum((f.qty for f in done), Decimal(0))
    if filled == order.filled:
        return _snapshot(order)
    return _snapshot(
        order, filled=filled, cost=sum((f.quote_qty for f in done), Decimal(0)),
        fee=sum((f.fee for f in done), Decimal(0)), status=OrderStatus.NEW,
        updated_ms=upto.time_ms, fill_ms=upto.time_ms)


def _trades(bus: EventBus, account: Account, fills: list[Fill]) -> list[Order]:
    """TRADE updates for `fills`, each with its order as of that fill; the orders."""
    orders: dict[int, Order] = {}
    for fill in fills:
        order = orders.setdefault(fill.order_id, account.orders[fill.order_id])
        view = _as_of(order, account.fills_of(order.id), fill)
        bus.publish(OrderUpdate(account, view, ExecKind.TRADE, fill, fill.time_ms))
    return list(orders.values())


def _account_update(account: Account, market: Market, orders: Iterable[Order]) -> AccountUpdate:
    spot: set[str] = set()
    wallets: set[str] = set()
    derivative: set[str] = set()
    positions: set[str] = set()
    at_ms = market.now_ms()
    for order in orders:
        inst = market.catalog.instruments[order.symbol]
        at_ms = order.updated_ms
        if inst.kind is InstrumentKind.SPOT:
            spot.update((inst.base, inst.quote))
            wallets.add(order.wallet)
        else:
            derivative.add(inst.quote)
            if order.filled:
                positions.add(inst.symbol)
    return AccountUpdate(account, at_ms, UpdateReason.ORDER, tuple(sorted(spot)),
                         tuple(sorted(derivative)), tuple(sorted(positions)),
                         tuple(sorted(wallets)) or (SPOT_WALLET,))


def publish_placed(bus: EventBus, account: Account, order: Order, market: Market) -> None:
    """A new order: NEW, then its immediate fills or expiry, then the balances it moved."""
    if not bus.listening(account.api_key):
        return
    zero = Decimal(0)
    new = _snapshot(order, status=OrderStatus.NEW, filled=zero, cost=zero, fee=zero,
                    updated_ms=order.created_ms, fill_ms=None)
    bus.publish(OrderUpdate(account, new, ExecKind.NEW, None, order.created_ms))
    _trades(bus, account, account.fills_of(order.id))
    if order.status is OrderStatus.EXPIRED:
        bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.EXPIRED, None,
                                order.updated_ms))
    bus.publish(_account_update(account, market, (order,)))


def publish_canceled(bus: EventBus, account: Account, order: Order, market: Market) -> None:
    if not bus.listening(account.api_key):
        return
    bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.CANCELED, None,
                            order.updated_ms))
    bus.publish(_account_update(account, market, (order,)))


def publish_synced(
    bus: EventBus, account: Account, were_open: list[Order], fills_before: int,
    market: Market, reason: UpdateReason = UpdateReason.ORDER,
) -> None:
    """What a `matching.sync` (or a liquidation) did: the fills recorded after index
    `fills_before` of `account.fills`, expiries of `were_open`, the balances moved."""
    if not bus.listening(account.api_key):
        return
    changed = _trades(bus, account, account.fills[fills_before:])
    for order in were_open:
        if order.status is OrderStatus.EXPIRED and order not in changed:
            bus.publish(OrderUpdate(account, _snapshot(order), ExecKind.EXPIRED, None,
                                    order.updated_ms))
            changed.append(order)
    if changed:
        update = _account_update(account, market, changed)
        bus.publish(replace(update, reason=reason))


def publish_account(
    account: Account, reason: UpdateReason, *, derivative_assets: tuple[str, ...] = (),
    positions: tuple[str, ...] = (), at_ms: int | None = None,
) -> None:
    """A change of derivatives balances or positions made outside an order (funding,
    liquidation, a setting); free when nobody listens to the account."""
    bus = account.events
    if bus.listening(account.api_key):
        bus.publish(AccountUpdate(account, bus.now_ms() if at_ms is None else at_ms, reason,
                                  (), derivative_assets, positions))

