"""LIVE trading through an injected `ExchangeOrderClient`: real orders, never placed twice.

Idempotency rests on the client order id. Before sending, the broker asks the
venue whether an order with that id exists and adopts it if so; when a send
fails in a way that may still have reached the venue (timeout, 5xx, rate
limit), the next attempt asks again before resending. Across a crash the same
holds through `reconcile`, which resolves every persisted order still PENDING
by asking the venue for its id. Fills are derived from the cumulative filled
amount, average price and fee the venue reports, so polling twice never books a
fill twice (trade ids are `<client id>-<cumulative filled>`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.orders import Execution, Fill, Order, OrderRequest, OrderStatus, is_engine_order
from ctsd.engine.perpetual import FundingPayment, VenuePosition
from ctsd.engine.ports import ExchangeOrder, ExchangeOrderClient
from ctsd.errors import ClientError, NotFound, TemporaryError, Unavailable
from ctsd.strategies.model import Balance, MarketSnapshot

ZERO = Decimal(0)


class LiveBroker:
    def __init__(
        self, client: ExchangeOrderClient, symbols: Sequence[str], clock: Clock, *,
        attempts: int = 2, check_before_place: bool = True,
    ) -> None:
        self._client = client
        self._symbols = tuple(symbols)
        self._clock = clock
        self._attempts = max(1, attempts)
        self._check_before_place = check_before_place
        self._book: dict[str, Order] = {}
        self._balances: tuple[Balance, ...] = ()

    def open_orders(self) -> tuple[Order, ...]:
        return tuple(self._book.values())

    def balances(self) -> tuple[Balance, ...]:
        return self._balances

    def positions(self) -> tuple[VenuePosition, ...]:
        return ()  # spot: the ledger is the position (`LivePerpBroker` reads the venue's)

    def take_funding(self) -> tuple[FundingPayment, ...]:
        return ()

    async def reconcile(
        self, known: Sequence[Order], fills: Sequence[Fill],
        funding: Sequence[FundingPayment] = (),
    ) -> tuple[Execution, ...]:
        self._book.clear()
        changed: list[Execution] = []
        for order in known:
            remote = await self._client.fetch_order(order.symbol, order.client_order_id)
            if remote is None:
                pending = order.status is OrderStatus.PENDING
                status = OrderStatus.REJECTED if pending else OrderStatus.CANCELED
                reason = "never reached the venue" if pending else "unknown to the venue"
                changed.append(self._track(Execution(self._finish(order, status, reason))))
            else:
                changed.append(self._track(self._merge(order, remote)))
        known_ids = {o.client_order_id for o in known}
        for symbol in self._symbols:
            for remote in await self._client.fetch_open_orders(symbol):
                cid = remote.client_order_id
                if is_engine_order(cid) and cid not in known_ids:
                    changed.append(self._track(self._merge(self._adopted(remote), remote)))
        self._balances = await self._client.fetch_balance()
        return tuple(changed)

    async def place(self, request: OrderRequest) -> Execution:
        order = Order.pending(request, self._clock.now_ms())
        for attempt in range(self._attempts):
            if self._check_before_place or attempt > 0:
                existing = await self._client.fetch_order(order.symbol, order.client_order_id)
                if existing is not None:
                    return self._track(self._merge(order, existing))
            try:
                remote = await self._client.create_order(
                    order.symbol, order.type, order.side, order.amount, order.price,
                    order.client_order_id, reduce_only=order.reduce_only,
                    position_side=order.position_side)
            except ClientError as exc:
                return Execution(self._finish(order, OrderStatus.REJECTED, exc.message))
            except TemporaryError:
                if attempt + 1 == self._attempts:
                    raise  # left PENDING in the store; reconciliation resolves it
                continue
            return self._track(self._merge(order, remote))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def cancel(self, order: Order) -> Execution:
        try:
            remote: ExchangeOrder | None = await self._client.cancel_order(
                order.symbol, order.client_order_id)
        except NotFound:
            remote = await self._client.fetch_order(order.symbol, order.client_order_id)
        if remote is None:
            return self._track(Execution(
                self._finish(order, OrderStatus.CANCELED, "unknown to the venue")))
        return self._track(self._merge(order, remote))

    async def fetch_order(self, order: Order) -> Execution:
        remote = await self._client.fetch_order(order.symbol, order.client_order_id)
        return Execution(order) if remote is None else self._track(self._merge(order, remote))

    async def refresh(self) -> tuple[Execution, ...]:
        """Every read first, then the book updated at once: a refresh cancelled midway
        (a stop does not wait for reads) leaves the book as it was."""
        seen: list[tuple[Order, ExchangeOrder | None]] = []
        for symbol in sorted({o.symbol for o in self._book.values()}):
            listed = await self._client.fetch_open_orders(symbol)
            still_open = {r.client_order_id: r for r in listed}
            for order in [o for o in self._book.values() if o.symbol == symbol]:
                remote = still_open.get(order.client_order_id)
                if remote is None:
                    remote = await self._client.fetch_order(symbol, order.client_order_id)
                seen.append((order, remote))
        balances = await self._client.fetch_balance()
        changed: list[Execution] = []
        for order, remote in seen:
            if remote is None:
                changed.append(self._track(Execution(
                    self._finish(order, OrderStatus.CANCELED, "vanished from the venue"))))
                continue
            execution = self._merge(order, remote)
            if execution.fills or execution.order.status is not order.status:
                changed.append(self._track(execution))
        self._balances = balances
        return tuple(changed)

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        return ()  # the venue matches live orders; `refresh` reports what it did

    def _track(self, execution: Execution) -> Execution:
        order = execution.order
        if order.status is OrderStatus.OPEN:
            self._book[order.client_order_id] = order
        else:
            self._book.pop(order.client_order_id, None)
        return execution

    def _merge(self, order: Order, remote: ExchangeOrder) -> Execution:
        """The order updated to what the venue reports, with a fill for any new filled amount."""
        fills: tuple[Fill, ...] = ()
        delta = remote.filled - order.filled
        if delta > 0:
            average = remote.average or remote.price or order.price
            if average is None:
                raise Unavailable(
                    f"venue reported a fill of {order.client_order_id} without a price")
            value = average * remote.filled - (order.average_price or ZERO) * order.filled
            fills = (Fill(f"{order.client_order_id}-{remote.filled}", order.client_order_id,
                          order.symbol, order.side, delta, value / delta,
                          remote.fee - order.fee, remote.fee_asset, self._clock.now_ms(),
                          position_side=order.position_side),)
        updated = replace(
            order, status=remote.status, filled=max(remote.filled, order.filled),
            average_price=remote.average or order.average_price,
            fee=max(remote.fee, order.fee), exchange_order_id=remote.exchange_order_id,
            updated_ms=self._clock.now_ms())
        return Execution(updated, fills)

    def _adopted(self, remote: ExchangeOrder) -> Order:
        """A record for an order of ours the store lost; its tag says where it came from."""
        return Order(remote.client_order_id, remote.symbol, remote.side, remote.type,
                     remote.amount, remote.price, "adopted", 0, OrderStatus.PENDING,
                     created_ms=remote.timestamp_ms, updated_ms=remote.timestamp_ms,
                     reduce_only=remote.reduce_only, position_side=remote.position_side)

    def _finish(self, order: Order, status: OrderStatus, reason: str) -> Order:
        return replace(order, status=status, reason=reason, updated_ms=self._clock.now_ms())
