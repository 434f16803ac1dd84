"""LIVE spot margin: `LiveBroker`'s orders (which borrow and repay as the venue names it),
plus the interest the venue charges and the fills it makes on its own.

Interest comes from the venue's own records (Binance's interest history, Bybit's
borrow history, OKX's accrued interest, Kraken's positions), read at session start
and then at most every `poll_s`, from a little before the newest charge already
booked; each keeps the venue's id, so reading it twice books it once. A charge is in
the borrowed asset and is booked at the last price, as an interest payment.

With a private order stream (a WebSocket connection) the engine's own orders and fills
arrive by stream as `LiveBroker` describes; interest and the venue's own fills stay
REST reads at `poll_s`, which the periodic reconciliation (`after_cycle`) reaches
even while the stream alone moves the book.

A short the engine closes whole (`OrderRequest.closes`) is closed the venue's own way
where it has one (OKX `close-position`): one market order under the request's client
order id that buys back all the short owes, interest included, grossed up by the fee
taken in the base; a buy of the short's size left that owed and the position open.

The venue may also trade the account by itself: a liquidation when the margin level
falls to its limit. Every `poll_s` the symbols' own fills since the session began
are read; a fill of an order that is not the engine's is the venue's liquidation
where the venue records it so (it is booked, tagged `liquidation`, whatever the
policy: the position is gone), and otherwise an outside trade, which stops the
engine (policy STOP, the default) or is booked (ADOPT).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.account_ports import MarginAccount
from ctsd.engine.brokers.live import LiveBroker
from ctsd.engine.ledger import split_symbol
from ctsd.engine.margin import InterestCharge
from ctsd.engine.order_ports import ExchangeOrder, ExchangeOrderClient, OrderUpdates
from ctsd.engine.orders import Execution, Fill, Order, OrderRequest, OrderStatus
from ctsd.engine.perpetual import FundingPayment, MismatchPolicy, PaymentKind, VenueTrade
from ctsd.engine.position_check import PositionMismatch
from ctsd.errors import Unavailable
from ctsd.strategies.model import MarketSnapshot, OrderType, Side

DEFAULT_POLL_S = 300.0
"""How often interest and the account's own fills are read while an engine trades."""
LOOKBACK_MS = 3_600_000
"""Interest is read from an hour before the newest booked charge (venues stamp late)."""
PAYMENT_STEP = Decimal("0.00000001")


class LiveMarginBroker(LiveBroker):
    def __init__(
        self, client: ExchangeOrderClient, account: MarginAccount, symbols: Sequence[str],
        clock: Clock, *, poll_s: float = DEFAULT_POLL_S,
        policy: MismatchPolicy = MismatchPolicy.STOP, check_before_place: bool = True,
        updates: OrderUpdates | None = None, reconcile_phase: float = 0.0,
    ) -> None:
        super().__init__(client, symbols, clock, check_before_place=check_before_place,
                         updates=updates, reconcile_phase=reconcile_phase)
        self._account = account
        self._poll_s = poll_s
        self._policy = policy
        self._checked_at: float | None = None
        self._interest_since_ms = 0
        self._trades_since_ms = 0
        self._seen: set[str] = set()
        self._own: set[str] = set()
        """Venue order ids of the engine's orders this session."""
        self._marks: dict[str, Decimal] = {}
        self._payments: list[FundingPayment] = []
        self.liquidations = 0

    def take_funding(self) -> tuple[FundingPayment, ...]:
        taken, self._payments = tuple(self._payments), []
        return taken

    async def reconcile(self, known: Sequence[Order], fills: Sequence[Fill],
                        funding: Sequence[FundingPayment] = ()) -> tuple[Execution, ...]:
        interest = [p for p in funding if p.kind is PaymentKind.INTEREST]
        self._seen = {p.funding_id for p in interest}
        starts = [p.timestamp_ms for p in interest] or [f.timestamp_ms for f in fills[:1]]
        self._interest_since_ms = max(starts, default=self._clock.now_ms()) - LOOKBACK_MS
        self._trades_since_ms = self._clock.now_ms()
        self._own |= {o.exchange_order_id for o in known if o.exchange_order_id}
        changed = await super().reconcile(known, fills, funding)
        if fills:
            self._keep(await self._account.interest(self._symbols, self._interest_since_ms))
            self._checked_at = self._clock.monotonic()
        return changed

    async def refresh(self) -> tuple[Execution, ...]:
        """Interest and the account's own fills (when due), then the orders; what was read
        is kept only once every read is done."""
        due = self._checked_at is None or (
            self._clock.monotonic() - self._checked_at >= self._poll_s)
        charges: tuple[InterestCharge, ...] = ()
        outside: list[tuple[VenueTrade, bool]] = []
        if due:
            charges = await self._account.interest(self._symbols, self._interest_since_ms)
            outside = await self._outside()
        changed = list(await super().refresh())
        if due:
            self._checked_at = self._clock.monotonic()
            self._keep(charges)
            changed += self._book_outside(outside)
        return tuple(changed)

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        for each in market.symbols:
            self._marks[each.info.symbol] = each.ticker.last
        return ()

    async def _send(self, request: OrderRequest) -> ExchangeOrder:
        """A buy that closes a whole short goes as the venue's own close where it has one,
        then is read by its client order id (the close's answer names no order)."""
        if not (request.closes and request.side is Side.BUY) or not (
                await self._account.close_short(request.symbol, request.client_order_id)):
            return await super()._send(request)
        closed = await self._client.fetch_order(request.symbol, request.client_order_id)
        if closed is None:  # the next attempt asks for it again before sending anything
            raise Unavailable(f"the venue closed {request.symbol} under "
                              f"{request.client_order_id} but shows no such order yet")
        return closed

    def _track(self, execution: Execution) -> Execution:
        if execution.order.exchange_order_id:
            self._own.add(execution.order.exchange_order_id)
        return super()._track(execution)

    # --- interest -------------------------------------------------------------------

    def _keep(self, charges: Sequence[InterestCharge]) -> None:
        fresh = [c for c in charges if c.charge_id not in self._seen]
        self._seen |= {c.charge_id for c in fresh}
        for charge in fresh:
            symbol, price = self._valued(charge.asset)
            quote = split_symbol(symbol)[1]
            self._payments.append(FundingPayment(
                charge.charge_id, symbol, -(charge.amount * price).quantize(PAYMENT_STEP),
                quote, charge.timestamp_ms, PaymentKind.INTEREST))
        if fresh:
            newest = max(c.timestamp_ms for c in fresh)
            self._interest_since_ms = max(self._interest_since_ms, newest - LOOKBACK_MS)

    def _valued(self, asset: str) -> tuple[str, Decimal]:
        """The symbol a charge in `asset` belongs to, and the asset's last price in its
        quote (1 for the quote itself)."""
        for symbol in self._symbols:
            base, quote = split_symbol(symbol)
            if asset == quote:
                return symbol, Decimal(1)
            if asset == base:
                return symbol, self._marks.get(symbol, Decimal(0))
        return self._symbols[0], Decimal(0)

    # --- the venue's own fills ---------------------------------------------------------

    async def _outside(self) -> list[tuple[VenueTrade, bool]]:
        """Fills of orders not the engine's since the session began, each with whether
        the venue records its order as a liquidation."""
        found: list[tuple[VenueTrade, bool]] = []
        for symbol in self._symbols:
            trades = [t for t in await self._account.trades(symbol, self._trades_since_ms)
                      if t.order_id not in self._own and t.trade_id not in self._seen]
            if not trades:
                continue
            liquidated = await self._account.liquidation_orders(symbol, self._trades_since_ms)
            found += [(t, liquidated is not None and t.order_id in liquidated) for t in trades]
        return found

    def _book_outside(self, outside: Sequence[tuple[VenueTrade, bool]]) -> list[Execution]:
        others = [t for t, liquidation in outside if not liquidation]
        if others and self._policy is MismatchPolicy.STOP:
            orders = ", ".join(sorted({t.order_id for t in others})[:3])
            raise PositionMismatch(
                f"{others[0].symbol}: the venue filled orders that are not the engine's "
                f"(venue order {orders}): a liquidation or a trade by hand")
        executions = []
        by_order: dict[str, list[tuple[VenueTrade, bool]]] = {}
        for trade, liquidation in outside:
            by_order.setdefault(trade.order_id, []).append((trade, liquidation))
        for order_id, trades in sorted(by_order.items()):
            liquidation = trades[0][1]
            self._seen |= {t.trade_id for t, _ in trades}
            executions.append(_outside_execution(order_id, [t for t, _ in trades], liquidation))
            self.liquidations += liquidation
        return executions


def _outside_execution(order_id: str, trades: Sequence[VenueTrade],
                       liquidation: bool) -> Execution:
    """The venue's fills of one order that is not the engine's, as a filled order."""
    first = trades[0]
    prefix = "autoclose-" if liquidation else "external-"
    cid = f"{prefix}{order_id}"
    filled = sum((t.amount for t in trades), Decimal(0))
    value = sum((t.amount * t.price for t in trades), Decimal(0))
    fee = sum((t.fee for t in trades), Decimal(0))
    tag = "liquidation" if liquidation else "adopted"
    order = Order(cid, first.symbol, first.side, OrderType.MARKET, filled, None, tag, 0,
                  OrderStatus.FILLED, filled, value / filled if filled else None, fee, order_id,
                  "the venue's liquidation" if liquidation else "adopted from the venue",
                  first.timestamp_ms, first.timestamp_ms)
    fills = tuple(Fill(f"venue-{t.trade_id}", cid, t.symbol, t.side, t.amount, t.price, t.fee,
                       t.fee_asset, t.timestamp_ms, t.maker) for t in trades)
    return Execution(order, fills)
