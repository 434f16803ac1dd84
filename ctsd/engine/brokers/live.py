"""LIVE trading through an injected `ExchangeOrderClient`: real orders, never placed twice.

Idempotency rests on the client order id. Before sending, the broker asks the
venue whether an order with that id exists and adopts it if so; when a send
fails in a way that may still have reached the venue (timeout, 5xx, rate
limit), the next attempt asks again before resending. Across a crash the same
holds through `reconcile`, which resolves every persisted order still PENDING
by asking the venue for its id. Fills are derived from the cumulative filled
amount, average price and fee the venue reports, so polling twice never books a
fill twice (trade ids are `<client id>-<cumulative filled>`). Where the venue reports
only each trade's fee (Binance), a fill's fee is summed from the order's trades by trade
id (`ctsd.engine.brokers.fees`); a stream update whose trades cannot account for its new
amount (a message lost) is not booked: it is a gap, and REST's own-fill read settles it.

With a private order stream (`OrderUpdates`, a WebSocket connection) fills and
order states arrive by stream and `refresh` makes no request; REST becomes
reconciliation: at the start (`reconcile`), after any gap in the stream
(reconnect, failed login, an order placed or traded through whose update never
came: a silent stall), and every `reconcile_s` — that last one once the cycle's orders
have left (`after_cycle`), since nothing then doubts the stream. Both paths go
through the same merge of cumulative amounts, so a fill seen on both is booked
once (same trade id; the store ignores a trade id it holds), and an update older
than what the broker knows changes nothing.

Each engine reconciles periodically at an interval of its own, `reconcile_s` shortened
by its `reconcile_phase`: engines that reconciled together (started together by a
daemon start or a fleet failover, or all doubting their streams after one socket
dropped) drift apart instead of reading every account's balance and open orders in
the same instant every interval, a burst of request weight on a shared account and a
stretch of parsing that holds every engine's next order back.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.brokers.fees import TradeFees
from ctsd.engine.order_ports import ExchangeOrder, ExchangeOrderClient, OrderUpdates
from ctsd.engine.orders import Execution, Fill, Order, OrderRequest, OrderStatus, is_engine_order
from ctsd.engine.perpetual import FundingPayment, VenuePosition
from ctsd.errors import (
    ClientError,
    ExchangeFailure,
    FailedPrecondition,
    NotFound,
    OrderRejection,
    TemporaryError,
    Unavailable,
)
from ctsd.strategies.model import Balance, MarketSnapshot, Side

log = logging.getLogger("ctsd.engine")

ZERO = Decimal(0)
UNLISTED = "unlisted"
"""`_look_up`'s answer for a market the venue no longer lists."""
MAX_PHASE = 0.5
"""An engine's periodic reconciliation interval is `reconcile_s` shortened by up to
this share."""


def reconcile_phase(key: str) -> float:
    """A fixed share in [0, MAX_PHASE) for an engine keyed `key` (its connection id):
    stable across restarts, spread evenly over engines."""
    return zlib.crc32(key.encode()) / 2**32 * MAX_PHASE


class LiveBroker:
    def __init__(
        self, client: ExchangeOrderClient, symbols: Sequence[str], clock: Clock, *,
        attempts: int = 2, check_before_place: bool = True,
        updates: OrderUpdates | None = None, reconcile_s: float = 60.0, echo_s: float = 5.0,
        reconcile_phase: float = 0.0,
    ) -> None:
        self._client = client
        self._symbols = tuple(symbols)
        self._clock = clock
        self._attempts = max(1, attempts)
        self._check_before_place = check_before_place
        self._updates = updates
        self._reconcile_s = reconcile_s * (1 - reconcile_phase)
        """This engine's own interval (see the module doc)."""
        self._reconciled = -float("inf")
        """Monotonic time of the last REST reconciliation (the stream is trusted between)."""
        self._gap = False
        """The stream had a gap not yet reconciled."""
        self._echo_s = echo_s
        self._echoes: dict[str, float] = {}
        """Orders placed whose first stream update is still awaited, by deadline: a
        private stream that stalls silently (pings go on, nothing else) shows as a
        missing echo, since an idle account's stream has no data age to watch."""
        self._traded_through: dict[str, Decimal] = {}
        """Resting orders the market traded through, by the filled amount they had then:
        their fill is awaited (`poll`), once per amount."""
        self.reconciliations = 0
        self._fees = TradeFees()
        self._unreported: list[Execution] = []
        """Booked from the stream by a `refresh_now` that then doubted it: the next
        `refresh` hands them over."""
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

    def positions_streamed(self) -> bool:
        return False

    async def reconcile(
        self, known: Sequence[Order], fills: Sequence[Fill],
        funding: Sequence[FundingPayment] = (),
    ) -> tuple[Execution, ...]:
        self._book.clear()
        changed: list[Execution] = []
        for order in known:
            remote = await self._look_up(order.symbol, order.client_order_id)
            if not isinstance(remote, ExchangeOrder):
                pending = order.status is OrderStatus.PENDING
                status = OrderStatus.REJECTED if pending else OrderStatus.CANCELED
                reason = (f"{order.symbol} is no longer listed by the venue"
                          if remote == UNLISTED else "never reached the venue" if pending
                          else "unknown to the venue")
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
        if self._updates is not None:
            self._updates.drain()  # what the stream said before is in what REST just said
            self._reconciled = self._clock.monotonic()
        return tuple(changed)

    async def place(self, request: OrderRequest) -> Execution:
        order = Order.pending(request, self._clock.now_ms())
        for attempt in range(self._attempts):
            if self._check_before_place or attempt > 0:
                existing = await self._client.fetch_order(order.symbol, order.client_order_id)
                if existing is not None:
                    return self._track(self._merge(order, existing))
            try:
                remote = await self._send(request)
            except ClientError as exc:
                return Execution(self._finish(order, OrderStatus.REJECTED, exc.message))
            except TemporaryError:
                if attempt + 1 == self._attempts:
                    raise  # left PENDING in the store; reconciliation resolves it
                continue
            placed = self._track(self._merge(order, remote))
            if self._updates is not None and placed.order.status is OrderStatus.OPEN:
                self._echoes[order.client_order_id] = self._clock.monotonic() + self._echo_s
            return placed
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _send(self, request: OrderRequest) -> ExchangeOrder:
        """The request as one order to the venue (a margin broker may close a whole short
        the venue's own way: `LiveMarginBroker`)."""
        return await self._client.create_order(
            request.symbol, request.type, request.side, request.amount, request.price,
            request.client_order_id, reduce_only=request.reduce_only,
            position_side=request.position_side)

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

    async def recover(self, client_order_id: str, cycle: int,
                      symbols: tuple[str, ...] = ()) -> tuple[Execution, ...]:
        """`ctsd.engine.rounds.SendsAhead`: an order sent before its record committed, as
        the venue has it (reconciliation adopted it already if it rests); one still
        open is cancelled, since the intent it carried is lost (`ctsd.engine.rounds`)."""
        held = self._book.get(client_order_id)
        if held is not None:
            return (await self.cancel(replace(held, tag="recovered", cycle=cycle)),)
        for symbol in symbols or self._symbols:
            remote = await self._look_up(symbol, client_order_id)
            if not isinstance(remote, ExchangeOrder):
                continue
            order = replace(self._adopted(remote), tag="recovered", cycle=cycle)
            found = self._track(self._merge(order, remote))
            if found.order.status is not OrderStatus.OPEN:
                return (found,)
            return (found, await self.cancel(found.order))
        return ()

    async def refresh_from_venue(self) -> tuple[Execution, ...]:
        """`refresh` over REST whatever the stream says (a gap as far as the stream is
        concerned): what the stream delivered since is merged too, never backwards."""
        if self._updates is not None:  # left set if cancelled midway: the next one reads REST
            self._gap = True
        return await self.refresh()

    async def refresh(self) -> tuple[Execution, ...]:
        """From the stream while it is live and gapless; otherwise (and every
        `reconcile_s`) from REST too. Every read first, then the book updated at once:
        a refresh cancelled midway (a stop does not wait for reads) changes nothing and
        loses no stream update (they are drained after the last await)."""
        stream = self._updates
        polled = None
        if stream is None or self._must_reconcile(stream):
            polled = await self._read_venue()
        changed, self._unreported = self._unreported, []
        doubted = False
        if stream is not None:
            updates, gap = stream.drain()
            applied, doubted = self._apply(updates)
            changed += applied
            self._gap = self._gap or gap
            if polled is not None:
                self._gap, self._reconciled = False, self._clock.monotonic()
                self.reconciliations += 1
        if polled is not None:
            applied, doubted_read = self._apply_read(*polled)
            changed += applied
            doubted = doubted or doubted_read
        self._gap = self._gap or doubted  # what REST read may predate: read again
        if stream is not None and stream.refused:
            raise FailedPrecondition(f"private order stream: {stream.problem}")
        return tuple(changed)

    def refresh_now(self) -> tuple[Execution, ...] | None:
        """The stream's updates, unless it may have missed some (a gap, a missing echo,
        not live): then None and `refresh` reconciles before the engine decides. The
        periodic reconciliation is not a doubt: `after_cycle` runs it."""
        stream = self._updates
        if stream is None or self._doubtful(stream) or stream.refused:
            return None
        updates, gap = stream.drain()
        applied, doubted = self._apply(updates)
        self._gap = gap or doubted
        if doubted:  # a fill the stream cannot account for: REST before deciding
            self._unreported += applied
            return None
        return tuple(applied)

    def quiet_until(self) -> float | None:
        """With a live, trusted stream: until the next echo deadline or periodic
        reconciliation (both are checked on a cycle only); without one, None."""
        stream = self._updates
        if (stream is None or stream.refused or self._gap or stream.gap or not stream.live
                or self._unreported):
            return None
        return min((self._reconciled + self._reconcile_s, *self._echoes.values()))

    async def after_cycle(self) -> tuple[Execution, ...]:
        """The periodic reconciliation, after the cycle's orders left (see `refresh`)."""
        if self._updates is None or not self._stale():
            return ()
        return await self.refresh()

    def _must_reconcile(self, stream: OrderUpdates) -> bool:
        return self._doubtful(stream) or self._stale()

    def _doubtful(self, stream: OrderUpdates) -> bool:
        """The stream may have missed an update: its state is not to be traded on."""
        now = self._clock.monotonic()
        if any(deadline <= now for deadline in self._echoes.values()):
            self._echoes.clear()
            stream.suspect()  # silent: resubscribe, and trust REST until it is back
            self._gap = True
        return self._gap or stream.gap or not stream.live

    def _stale(self) -> bool:
        return self._clock.monotonic() - self._reconciled >= self._reconcile_s

    def _apply(self, updates: Sequence[ExchangeOrder]) -> tuple[list[Execution], bool]:
        """Stream updates of orders in the book; others (final ones, not ours) are none of
        its business, and one older than the book's state adds nothing. Whether one could
        not be booked (its fee unaccounted for)."""
        changed = []
        doubted = False
        for remote in updates:
            self._echoed(remote)
            order = self._book.get(remote.client_order_id)
            if order is not None and self._unaccounted(order, remote):
                doubted = True
                continue
            execution = None if order is None else self._advance(order, remote)
            if execution is not None:
                changed.append(execution)
        return changed, doubted

    def _echoed(self, remote: ExchangeOrder) -> None:
        """An awaited update came: any for an order just placed; for one the market traded
        through, only one that filled more than it had then (or ended it). Venues send
        several messages an execution (Kraken: the order's and the trade's), and a late
        one of an earlier part must not stand for the part still awaited."""
        cid = remote.client_order_id
        awaited = self._traded_through.get(cid)
        if awaited is None or remote.filled > awaited or remote.status is not OrderStatus.OPEN:
            self._echoes.pop(cid, None)

    def _unaccounted(self, order: Order, remote: ExchangeOrder) -> bool:
        """`remote` filled more than `order` booked, but its trades cannot say what that
        paid (a stream message lost; an own-fill history that lags the order)."""
        return remote.filled > order.filled and not self._fees.delta(order, remote).consistent

    def _advance(self, order: Order, remote: ExchangeOrder) -> Execution | None:
        """`order` moved to what the venue reports, if that is news (never backwards)."""
        if remote.filled < order.filled:
            return None
        execution = self._merge(order, remote)
        if execution.fills or execution.order.status is not order.status:
            return self._track(execution)
        return None

    async def _read_venue(
        self,
    ) -> tuple[list[tuple[Order, ExchangeOrder | None]], tuple[Balance, ...]]:
        seen: list[tuple[Order, ExchangeOrder | None]] = []
        for symbol in sorted({o.symbol for o in self._book.values()}):
            listed = await self._client.fetch_open_orders(symbol)
            still_open = {r.client_order_id: r for r in listed}
            for order in [o for o in self._book.values() if o.symbol == symbol]:
                remote = still_open.get(order.client_order_id)
                if remote is None:
                    remote = await self._client.fetch_order(symbol, order.client_order_id)
                seen.append((order, remote))
        return seen, await self._client.fetch_balance()

    def _apply_read(self, seen: list[tuple[Order, ExchangeOrder | None]],
                    balances: tuple[Balance, ...]) -> tuple[list[Execution], bool]:
        """What REST read, against the book as it is now (the stream may have moved it
        on while the reads were under way: an order it closed stays closed)."""
        changed: list[Execution] = []
        doubted = False
        for read, remote in seen:
            order = self._book.get(read.client_order_id)
            if order is None:
                continue
            if remote is None:
                changed.append(self._track(Execution(
                    self._finish(order, OrderStatus.CANCELED, "vanished from the venue"))))
                continue
            if self._unaccounted(order, remote):  # the own-fill history lags: read again
                doubted = True
                continue
            execution = self._advance(order, remote)
            if execution is not None:
                changed.append(execution)
        self._balances = balances
        return changed, doubted

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        """No venue call: the venue matches live orders and `refresh` reports what it did.

        With a private stream, a resting limit order the market traded through has
        filled (no trade prints beyond the price of an order still resting), so its
        update is due within `echo_s`; one that never comes is a silent stall the next
        refresh reconciles. Once per filled amount: no trade prints through the price of
        an order still resting, so one the market is through that the stream reports
        filled in part has more to come (parts lost in a stall that swallowed the rest
        of it are found `echo_s` later, not at the next periodic reconciliation), and
        an order the venue keeps partly filled costs one reconciliation a part, not one
        a cycle."""
        if self._updates is not None:
            self._expect_fills(market)
        return ()

    def _expect_fills(self, market: MarketSnapshot) -> None:
        last = {m.info.symbol: m.ticker.last for m in market.symbols}
        deadline = self._clock.monotonic() + self._echo_s
        for cid, order in self._book.items():
            mark, price = last.get(order.symbol), order.price
            if mark is None or price is None or self._traded_through.get(cid) == order.filled:
                continue
            if mark < price if order.side is Side.BUY else mark > price:
                self._traded_through[cid] = order.filled
                self._echoes.setdefault(cid, deadline)

    def _track(self, execution: Execution) -> Execution:
        order = execution.order
        if order.status is OrderStatus.OPEN:
            self._book[order.client_order_id] = order
        else:
            self._book.pop(order.client_order_id, None)
            self._traded_through.pop(order.client_order_id, None)
            self._fees.forget(order.client_order_id)
        return execution

    def _merge(self, order: Order, remote: ExchangeOrder) -> Execution:
        """The order updated to what the venue reports, with a fill for any new filled amount
        (its fee as far as the venue's answer says: `_advance` books none it cannot
        account for; a placement or cancel answer is booked as it stands)."""
        fills: tuple[Fill, ...] = ()
        delta = remote.filled - order.filled
        fee = ZERO
        if delta > 0:
            average = remote.average or remote.price or order.price
            if average is None:
                raise Unavailable(
                    f"venue reported a fill of {order.client_order_id} without a price")
            value = average * remote.filled - (order.average_price or ZERO) * order.filled
            fee = self._fees.delta(order, remote).fee
            fills = (Fill(f"{order.client_order_id}-{remote.filled}", order.client_order_id,
                          order.symbol, order.side, delta, value / delta,
                          fee, remote.fee_asset, self._clock.now_ms(),
                          position_side=order.position_side),)
            self._fees.book(remote)
        filled = max(remote.filled, order.filled)
        # A venue's close of a whole short (reduce-only) buys what it owes, more than the
        # order's amount; any other order's amount is what the engine asked for.
        amount = max(order.amount, filled) if order.reduce_only else order.amount
        updated = replace(
            order, amount=amount, status=remote.status, filled=filled,
            average_price=remote.average or order.average_price,
            fee=order.fee + fee, exchange_order_id=remote.exchange_order_id,
            updated_ms=self._clock.now_ms())
        return Execution(updated, fills)

    def _adopted(self, remote: ExchangeOrder) -> Order:
        """A record for an order of ours the store lost; its tag says where it came from."""
        return Order(remote.client_order_id, remote.symbol, remote.side, remote.type,
                     remote.amount, remote.price, "adopted", 0, OrderStatus.PENDING,
                     created_ms=remote.timestamp_ms, updated_ms=remote.timestamp_ms,
                     reduce_only=remote.reduce_only, position_side=remote.position_side)

    async def _look_up(self, symbol: str, client_order_id: str) -> ExchangeOrder | str | None:
        """The venue's order, None, or `UNLISTED` where the venue no longer lists
        `symbol`: an order kept from an earlier engine or session cannot be looked up
        there any more (a venue cancels what rests on a market it delists), and refusing
        to go on would leave the connection unable to start any engine. Logged, since a
        fill it had before the delisting is not booked."""
        try:
            return await self._client.fetch_order(symbol, client_order_id)
        except ExchangeFailure as exc:
            if exc.rejection is not OrderRejection.BAD_SYMBOL:
                raise
            log.warning("order not looked up: the venue no longer lists its market", extra={
                "symbol": symbol, "client_order_id": client_order_id, "error": exc.detail})
            return UNLISTED

    def _finish(self, order: Order, status: OrderStatus, reason: str) -> Order:
        return replace(order, status=status, reason=reason, updated_ms=self._clock.now_ms())
