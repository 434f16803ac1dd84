"""PAPER perpetuals: orders against live tickers on a margin account that behaves like the
venue's (`ctsd.engine.brokers.perp_account`).

What a live account would do, a paper one does:

- orders fill like PAPER spot (market and crossing limits as takers at the
  touch worsened by the slippage, resting limits as makers at their price), pay
  the venue's fee on the notional, and need the initial margin of what they
  open (`increase * price / leverage` plus the fee) out of the available margin;
- reduce-only orders never open, grow or flip a position; in hedge mode a
  closing order never closes more than its leg holds; a position may not pass
  the notional cap of its leverage's tier;
- funding is paid at each funding time the venue announces, at the rate it
  announced for it: `-size * mark * rate` (longs pay a positive rate);
- a position the mark takes to its maintenance margin is liquidated at the
  mark as a taker (an order `autoclose-…` with one fill), losing what the venue
  takes: isolated its whole margin, cross its maintenance margin. That loss is
  carried in the liquidation fill's fee, so the persisted fills alone rebuild
  the account.

Like PAPER spot, nothing is persisted apart from orders, fills and funding
payments: `reconcile` replays them onto the starting wallet (at the configured
leverage), so a restart continues where the engine stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.brokers.paper_terms import PaperBook, crosses, taker_price
from ctsd.engine.brokers.perp_account import PNL_STEP, ZERO, PerpLedger, Slot, closes
from ctsd.engine.config import PaperSettings
from ctsd.engine.ledger import split_symbol
from ctsd.engine.market_ports import PerpetualMarketData
from ctsd.engine.orders import Execution, Fill, Order, OrderRequest, OrderStatus
from ctsd.engine.perpetual import (
    AccountModes,
    FundingPayment,
    LeverageTier,
    VenuePosition,
    max_leverage,
)
from ctsd.strategies.model import (
    Balance,
    MarketSnapshot,
    OrderType,
    PositionSide,
    Side,
    SymbolMarket,
)

DEFAULT_LEVERAGE = 1
"""A symbol without configured leverage trades at 1x on paper: the margin is the notional."""
LIQUIDATION_PREFIX = "autoclose-"


class PaperPerpBroker(PaperBook):
    def __init__(self, settings: PaperSettings, clock: Clock, modes: AccountModes,
                 leverage: Mapping[str, int], market: PerpetualMarketData,
                 symbols: Sequence[str]) -> None:
        super().__init__(clock)
        self._settings = settings
        self._modes = modes
        self._leverage = dict(leverage)
        self._perp_market = market
        self._symbols = tuple(symbols)
        self._quote = split_symbol(self._symbols[0])[1] if self._symbols else "USDT"
        self._account = PerpLedger(self._start_wallet(), modes.margin_mode)
        self._tier_cache: dict[str, tuple[LeverageTier, ...]] = {}
        self._held: dict[str, Decimal] = {}
        """Margin each resting order holds."""
        self._marks: dict[str, Decimal] = {}
        self._next_funding: dict[str, tuple[int, Decimal]] = {}
        self._funding: list[FundingPayment] = []
        self._paid: set[str] = set()
        self.liquidations = 0

    def _start_wallet(self) -> Decimal:
        return next((amount for asset, amount in self._settings.balances
                     if asset == self._quote), ZERO)

    def leverage(self, symbol: str) -> Decimal:
        return Decimal(self._leverage.get(symbol, DEFAULT_LEVERAGE))

    # --- what the engine reads --------------------------------------------------------

    def balances(self) -> tuple[Balance, ...]:
        held = sum(self._held.values(), ZERO)
        free = self._account.available(self._marks, held)
        return (Balance(self._quote, max(free, ZERO), self._account.wallet),)

    def positions(self) -> tuple[VenuePosition, ...]:
        return self._account.views(self._marks)

    def positions_streamed(self) -> bool:
        return False  # computed here, never behind

    def take_funding(self) -> tuple[FundingPayment, ...]:
        taken, self._funding = tuple(self._funding), []
        return taken

    def equity(self) -> Decimal:
        return self._account.equity(self._marks)

    # --- the session ------------------------------------------------------------------

    async def reconcile(self, known: Sequence[Order], fills: Sequence[Fill],
                        funding: Sequence[FundingPayment] = ()) -> tuple[Execution, ...]:
        for symbol in self._symbols:
            if symbol not in self._tier_cache:
                self._tier_cache[symbol] = await self._perp_market.tiers(symbol)
        self._account = PerpLedger(self._start_wallet(), self._modes.margin_mode)
        self._account.tiers = self._tier_cache
        self._book.clear()
        self._held.clear()
        for fill in fills:
            self._account.fill((fill.symbol, fill.position_side), fill.side, fill.amount,
                               fill.price, self._fee_in_quote(fill),
                               self.leverage(fill.symbol))
            self._count_fill(fill.client_order_id)
        for payment in funding:
            self._account.wallet += payment.amount
            self._paid.add(payment.funding_id)
        return self._reconcile_orders(known, self._rest)

    def _tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        return self._tier_cache.get(symbol, ())

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        """Funding first (the position held at the funding time), then resting orders the
        prices cross, then liquidations at the new marks."""
        self._market = market
        self._marks = {m.info.symbol: m.funding.mark if m.funding and m.funding.mark
                       else m.ticker.last for m in market.symbols}
        for each in market.symbols:
            self._settle_funding(each)
        executions = []
        for order in list(self._book.values()):
            found = market.get(order.symbol)
            if found is not None and crosses(order, found):
                self._unrest(order)
                executions.append(self._execute(order, order.price or ZERO,
                                                found.info.maker_fee, maker=True))
        executions += self._liquidate()
        return tuple(executions)

    # --- orders -----------------------------------------------------------------------

    def _trade(self, order: Order, market: SymbolMarket) -> Execution:
        if order.type is OrderType.MARKET or crosses(order, market):
            price = taker_price(order, market, self._settings.slippage_bps)
            refusal = self._refusal(order, price, market.info.taker_fee)
            if refusal:
                return Execution(self._finish(order, OrderStatus.REJECTED, refusal))
            return self._execute(order, price, market.info.taker_fee, maker=False)
        refusal = self._refusal(order, order.price or ZERO, market.info.maker_fee)
        if refusal:
            return Execution(self._finish(order, OrderStatus.REJECTED, refusal))
        order = replace(order, status=OrderStatus.OPEN)
        self._rest(order)
        return Execution(order)

    async def cancel(self, order: Order) -> Execution:
        resting = self._book.get(order.client_order_id)
        if resting is None:
            return Execution(order)
        self._unrest(resting)
        return Execution(self._finish(resting, OrderStatus.CANCELED, "canceled"))

    def _refusal(self, order: Order, price: Decimal, fee_rate: Decimal) -> str:
        """Why the venue would refuse `order` at `price` now, or "" when it would take it."""
        slot = (order.symbol, order.position_side)
        before = self._account.held(slot)
        after = before + (order.amount if order.side is Side.BUY else -order.amount)
        if (order.position_side is PositionSide.LONG and after < 0) or (
                order.position_side is PositionSide.SHORT and after > 0):
            return f"reduce only: closes more than the {order.position_side.value} leg holds"
        if order.reduce_only and not closes(before, after):
            return "reduce only: the order would open or grow a position"
        increase = max(abs(after) - abs(before), ZERO)
        leverage = self.leverage(order.symbol)
        tiers = self._tiers(order.symbol)
        if increase and tiers and leverage > max_leverage(tiers, abs(after) * price):
            return (f"position limit: {abs(after) * price:.2f} notional is above the "
                    f"{leverage}x tier cap")
        need = increase * price / leverage + order.amount * price * fee_rate
        held = sum(self._held.values(), ZERO)
        have = self._account.available(self._marks, held)
        if need > have:
            return f"insufficient margin: need {need:.8f} {self._quote}, have {have:.8f}"
        return ""

    def _execute(self, order: Order, price: Decimal, fee_rate: Decimal, *,
                 maker: bool, extra_fee: Decimal = ZERO) -> Execution:
        fee = order.amount * price * fee_rate + extra_fee
        self._account.fill((order.symbol, order.position_side), order.side, order.amount,
                           price, fee, self.leverage(order.symbol))
        count = self._count_fill(order.client_order_id)
        fill = Fill(f"{order.client_order_id}-{count}", order.client_order_id, order.symbol,
                    order.side, order.amount, price, fee, self._quote, self._clock.now_ms(),
                    maker, order.position_side)
        done = replace(self._finish(order, OrderStatus.FILLED, ""), filled=order.amount,
                       average_price=price, fee=fee)
        return Execution(done, (fill,))


    def _rest(self, order: Order) -> None:
        slot = (order.symbol, order.position_side)
        before = self._account.held(slot)
        after = before + (order.remaining if order.side is Side.BUY else -order.remaining)
        increase = max(abs(after) - abs(before), ZERO)
        self._held[order.client_order_id] = (
            increase * (order.price or ZERO) / self.leverage(order.symbol))
        self._book[order.client_order_id] = order

    def _unrest(self, order: Order) -> None:
        self._book.pop(order.client_order_id, None)
        self._held.pop(order.client_order_id, None)

    def _fee_in_quote(self, fill: Fill) -> Decimal:
        return fill.fee if fill.fee_asset == self._quote else fill.fee * fill.price

    # --- funding and liquidation ----------------------------------------------------------

    def _settle_funding(self, market: SymbolMarket) -> None:
        """A funding time passed when the venue announces a later one: pay the rate it
        announced for the time that passed, on what is held now (nothing has traded since
        the last cycle, which ran before the funding time)."""
        funding, symbol = market.funding, market.info.symbol
        if funding is None:
            return
        known = self._next_funding.get(symbol)
        self._next_funding[symbol] = (funding.next_time_ms, funding.rate)
        if known is None or funding.next_time_ms <= known[0]:
            return
        at_ms, rate = known
        funding_id = f"paper:{symbol}:{at_ms}"
        held = sum((p.qty for (s, _), p in self._account.positions.items() if s == symbol),
                   ZERO)
        if not held or funding_id in self._paid:
            return
        mark = funding.mark or market.ticker.last
        amount = (-held * mark * rate).quantize(Decimal("0.00000001"))
        self._paid.add(funding_id)
        self._account.wallet += amount
        self._funding.append(FundingPayment(funding_id, symbol, amount, self._quote, at_ms))

    def _liquidate(self) -> list[Execution]:
        executions = []
        for pos in self._account.due_for_liquidation(self._marks):
            mark = self._marks.get(pos.symbol, pos.entry)
            market = self._market.get(pos.symbol) if self._market else None
            fee_rate = market.info.taker_fee if market else ZERO
            fee = pos.size * mark * fee_rate
            slot: Slot = (pos.symbol, pos.side)
            maintenance = self._account.maintenance(pos, mark)
            pnl = (pos.qty * (mark - pos.entry)).quantize(PNL_STEP)  # as the fill books it
            extra = self._account.clearance(pos, pos.isolated_margin, pnl, fee, maintenance)
            now = self._clock.now_ms()
            request = OrderRequest(
                f"{LIQUIDATION_PREFIX}{pos.symbol.replace('/', '').replace(':', '')}{now}",
                pos.symbol, Side.SELL if pos.qty > 0 else Side.BUY, OrderType.MARKET,
                pos.size, None, "liquidation", 0, reduce_only=True, position_side=slot[1])
            executions.append(self._execute(Order.pending(request, now), mark, fee_rate,
                                            maker=False, extra_fee=extra))
            self.liquidations += 1
        return executions

