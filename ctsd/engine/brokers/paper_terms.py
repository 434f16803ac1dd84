"""How a paper order meets the market, and the order book every paper broker keeps
(PAPER spot, options, margin and perpetuals).

An order's amount is first cut down to the venue's lot size and its limit price
rounded to the venue's tick, as the venue (and ccxt before it) does with a live one.

Market orders and limits that cross on arrival fill as takers at the touch
(ask for buys, bid for sells) worsened by the configured slippage, but never
past a limit's own price; resting limits fill at their price on the first
ticker that crosses them (buy: ask <= price; sell: bid >= price).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from ctsd.clock import Clock
from ctsd.engine.brokers.base import PaperVenue
from ctsd.engine.orders import Execution, Order, OrderRequest, OrderStatus
from ctsd.strategies.model import MarketSnapshot, Side, SymbolMarket

BPS = Decimal(10_000)


def taker_price(order: Order, market: SymbolMarket, slippage_bps: Decimal) -> Decimal:
    """The touch price worsened by slippage, but never past a limit order's own price."""
    slip = slippage_bps / BPS
    if order.side is Side.BUY:
        price = market.ticker.ask * (1 + slip)
        return min(price, order.price) if order.price is not None else price
    price = market.ticker.bid * (1 - slip)
    return max(price, order.price) if order.price is not None else price


def crosses(order: Order, market: SymbolMarket) -> bool:
    if order.price is None:
        return False
    if order.side is Side.BUY:
        return market.ticker.ask <= order.price
    return market.ticker.bid >= order.price


def finished(order: Order, status: OrderStatus, reason: str, now_ms: int) -> Order:
    return replace(order, status=status, reason=reason, updated_ms=now_ms)


def on_lot(order: Order, market: SymbolMarket) -> Order | None:
    """The order with its amount cut down to the lot size and its limit price rounded to
    the tick, as ccxt sends a live one; None when no amount is left."""
    step, tick = market.info.amount_step, market.info.price_step
    if tick and order.price is not None:
        price = (order.price / tick).to_integral_value(ROUND_HALF_UP) * tick
        order = replace(order, price=price if price > 0 else tick)
    if not step:
        return order
    amount = (order.amount / step).to_integral_value(ROUND_DOWN) * step
    return replace(order, amount=amount) if amount > 0 else None


def admitted(request: OrderRequest, book: Mapping[str, Order], snapshot: MarketSnapshot | None,
             now_ms: int, lot: bool = True) -> Execution | tuple[Order, SymbolMarket]:
    """The order a paper broker goes on with (cut to the lot size unless `lot` is False:
    the venue's own close of a position, sized by its debt) and its market, or the
    answer at once: the resting order of an id already placed (placed once), or a
    rejection (no market data yet, an amount below the lot size)."""
    existing = book.get(request.client_order_id)
    if existing is not None:
        return Execution(existing)
    order = Order.pending(request, now_ms)
    market = snapshot.get(order.symbol) if snapshot else None
    if market is None:
        return Execution(finished(order, OrderStatus.REJECTED, "no market data yet", now_ms))
    cut = on_lot(order, market) if lot else order
    if cut is None:
        return Execution(finished(order, OrderStatus.REJECTED,
                                  "amount below the venue's lot size", now_ms))
    return cut, market


class PaperBook(PaperVenue, ABC):
    """The order book of a paper broker, kept alike by every kind (spot, margin,
    perpetuals): resting orders by client order id, the cycle's prices, and how many fills
    each order had. The fill count names a fill (`<client order id>-<n>`), so the replay
    at `reconcile` must count the persisted fills to keep new trade ids unique.

    A subclass says how an admitted order trades (`_trade`) and how an open one rests
    again after a restart (the `rest` given to `_reconcile_orders`)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._book: dict[str, Order] = {}
        self._market: MarketSnapshot | None = None
        self._fills_per_order: dict[str, int] = {}

    def open_orders(self) -> tuple[Order, ...]:
        return tuple(self._book.values())

    async def place(self, request: OrderRequest) -> Execution:
        return await self._place(request)

    async def _place(self, request: OrderRequest, on_lot: bool = True) -> Execution:
        """`on_lot` False: the amount is the venue's own, not cut to the lot."""
        found = admitted(request, self._book, self._market, self._clock.now_ms(), on_lot)
        if isinstance(found, Execution):
            return found
        return self._trade(*found)

    @abstractmethod
    def _trade(self, order: Order, market: SymbolMarket) -> Execution:
        """Fill or rest an order already cut to the lot size, priced against `market`."""

    async def fetch_order(self, order: Order) -> Execution:
        return Execution(self._book.get(order.client_order_id, order))

    def _count_fill(self, client_order_id: str) -> int:
        """One more fill of the order: its number, 1 for the first."""
        count = self._fills_per_order.get(client_order_id, 0) + 1
        self._fills_per_order[client_order_id] = count
        return count

    def _reconcile_orders(self, known: Sequence[Order],
                          rest: Callable[[Order], object]) -> tuple[Execution, ...]:
        """The persisted non-final orders after the fills were replayed: a PENDING one
        never reached this paper venue (the engine stopped before it was placed) and is
        rejected; an OPEN one rests again through `rest`."""
        changed = []
        for order in known:
            if order.status is OrderStatus.PENDING:
                changed.append(Execution(self._finish(
                    order, OrderStatus.REJECTED, "not placed: stopped before acknowledgement")))
            elif order.status is OrderStatus.OPEN:
                rest(order)
        return tuple(changed)

    def _finish(self, order: Order, status: OrderStatus, reason: str) -> Order:
        return finished(order, status, reason, self._clock.now_ms())
