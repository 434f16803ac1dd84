"""PAPER spot margin: orders against live tickers on a margin account that lends like the
venue's (`ctsd.engine.brokers.margin_account`).

What a live margin account does, the paper one does:

- a buy that closes a whole short buys back all it owes where the venue closes so
  (OKX's close-position: the interest and the fee it takes in the base included);
- orders fill like PAPER spot (market and crossing limits as takers at the touch
  worsened by the slippage, resting limits as makers at their price) and pay the
  venue's fee where the venue takes it (a buy's in the base on Binance, Bybit, OKX);
- an order borrows what its wallet lacks, when it is placed (a resting one holds it
  until it fills; cancelled, it gives back what it borrowed), within the venue's
  borrow limit; what a fill brings in repays the asset's loan first, interest first;
- interest is charged once per period of the clock (and at the borrow where the
  venue charges so), in the borrowed asset, and booked at the last price as an
  interest payment (realized PnL, `interest_pnl`);
- a wallet the prices take to the venue's liquidation level is closed out as the
  venue does: its orders cancelled, what it holds sold at the bid, what it owes
  bought back at the ask, as one order `autoclose-…` per symbol tagged
  `liquidation`.

Nothing is persisted apart from orders, fills and payments: `reconcile` replays the
fills onto the starting balances, charging interest between them as it went, so a
restart continues where the engine stopped (interest charges keep their ids and
are booked once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.brokers.margin_account import ZERO, MarginBook, Wallet
from ctsd.engine.brokers.paper_terms import PaperBook, crosses, taker_price
from ctsd.engine.config import PaperSettings
from ctsd.engine.ledger import split_symbol
from ctsd.engine.margin import LendingTerms
from ctsd.engine.market_ports import MarginMarketData
from ctsd.engine.orders import Execution, Fill, Order, OrderRequest, OrderStatus
from ctsd.engine.perpetual import FundingPayment, PaymentKind, VenuePosition
from ctsd.strategies.model import (
    Balance,
    MarketInfo,
    MarketSnapshot,
    OrderType,
    Side,
    SymbolMarket,
)

LIQUIDATION_PREFIX = "autoclose-"


class PaperMarginBroker(PaperBook):
    def __init__(self, settings: PaperSettings, clock: Clock, market: MarginMarketData,
                 symbols: Sequence[str], leverage: Mapping[str, int]) -> None:
        super().__init__(clock)
        self._settings = settings
        self._source = market
        self._symbols = tuple(symbols)
        self._leverage = dict(leverage)
        self._terms: LendingTerms | None = None
        self._account = MarginBook(dict(settings.balances), _NO_TERMS)
        self._held: dict[str, tuple[str, str, Decimal, Decimal]] = {}
        """Resting order → (its wallet, the asset it locked, how much, how much it borrowed)."""
        self._marks: dict[str, Decimal] = {}
        self._infos: dict[str, MarketInfo] = {}
        self._payments: list[FundingPayment] = []
        self.liquidations = 0

    # --- what the engine reads ------------------------------------------------------

    def balances(self) -> tuple[Balance, ...]:
        """Per asset: free in the account, and net worth (held less owed) over every wallet."""
        wallets = self._account.all_wallets()
        assets = sorted({a for w in wallets for a in w.assets()})
        return tuple(Balance(a, self._account.account.free.get(a, ZERO),
                             sum((w.held(a) - w.debt(a) for w in wallets), ZERO))
                     for a in assets)

    def positions(self) -> tuple[VenuePosition, ...]:
        return ()  # the ledger is the position

    def positions_streamed(self) -> bool:
        return False  # computed here, never behind

    def take_funding(self) -> tuple[FundingPayment, ...]:
        """Interest charged since the last call, each valued at the last price."""
        for charge in self._account.take_charges():
            symbol = self._symbol_of(charge.asset)
            price = self._prices().get(charge.asset, ZERO)
            quote = split_symbol(symbol)[1]
            self._payments.append(FundingPayment(
                charge.charge_id, symbol, -(charge.amount * price).quantize(Decimal("1e-8")),
                quote, charge.timestamp_ms, PaymentKind.INTEREST))
        taken, self._payments = tuple(self._payments), []
        return taken

    def level(self, symbol: str) -> Decimal | None:
        """The margin level of the wallet `symbol` trades on (None while nothing is owed)."""
        return self._account.level(self._account.wallet(symbol), self._prices())

    # --- the session ----------------------------------------------------------------

    async def reconcile(self, known: Sequence[Order], fills: Sequence[Fill],
                        funding: Sequence[FundingPayment] = ()) -> tuple[Execution, ...]:
        if self._terms is None:
            self._terms = await self._source.terms(self._symbols)
        self._account = MarginBook(dict(self._settings.balances), self._terms)
        self._book.clear()
        self._held.clear()
        for fill in fills:  # as it went: interest up to each fill, then the fill
            self._account.accrue(fill.timestamp_ms)
            self._marks[fill.symbol] = fill.price
            wallet = self._account.wallet(fill.symbol)
            self._cover(wallet, fill.symbol, fill.side, fill.amount, fill.price,
                        self._quote_fee(fill), fill.timestamp_ms, check=False)
            self._settle(wallet, fill)
            self._count_fill(fill.client_order_id)
        self._account.accrue(self._clock.now_ms())
        return self._reconcile_orders(known, lambda order: self._rest(order, check=False))

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        """Interest for the periods passed, then resting orders the prices cross, then
        liquidations at the new prices."""
        self._market = market
        for each in market.symbols:
            self._marks[each.info.symbol] = each.ticker.last
            self._infos[each.info.symbol] = each.info
        self._account.accrue(self._clock.now_ms())
        executions = []
        for order in list(self._book.values()):
            found = market.get(order.symbol)
            if found is not None and crosses(order, found):
                executions.append(self._fill_resting(order, found))
        executions += self._liquidate(market)
        return tuple(executions)

    # --- orders ---------------------------------------------------------------------

    async def place(self, request: OrderRequest) -> Execution:
        """A buy that closes a whole short buys back all its wallet owes where the venue
        closes so (`LendingTerms.close_by_liability`: OKX's close-position), the fee it
        takes in the base included; a buy of the short's size left that owed."""
        found = self._market.get(request.symbol) if self._market else None
        if (request.closes and request.side is Side.BUY and found is not None
                and self._terms is not None and self._terms.close_by_liability):
            info = found.info
            amount = self._account.buy_back(
                self._account.wallet(request.symbol), split_symbol(request.symbol)[0],
                info.taker_fee if info.buy_fee_in_base else ZERO)
            if amount > 0:  # the venue's own order: sized by the debt, not to the lot
                return await self._place(replace(request, amount=amount), on_lot=False)
        return await super().place(request)

    def _trade(self, order: Order, market: SymbolMarket) -> Execution:
        self._infos[order.symbol] = market.info
        if order.type is OrderType.MARKET or crosses(order, market):
            price = taker_price(order, market, self._settings.slippage_bps)
            wallet = self._account.wallet(order.symbol)
            refusal = self._cover(wallet, order.symbol, order.side, order.amount, price,
                                  self._fee_quote(order, price, market.info.taker_fee),
                                  self._clock.now_ms())
            if refusal:
                return Execution(self._finish(order, OrderStatus.REJECTED, refusal))
            return self._execute(order, price, market.info, maker=False)
        refusal = self._rest(replace(order, status=OrderStatus.OPEN))
        if refusal:
            return Execution(self._finish(order, OrderStatus.REJECTED, refusal))
        return Execution(self._book[order.client_order_id])

    async def cancel(self, order: Order) -> Execution:
        resting = self._book.get(order.client_order_id)
        if resting is None:
            return Execution(order)
        self._unrest(resting, give_back=True)
        return Execution(self._finish(resting, OrderStatus.CANCELED, "canceled"))

    def _rest(self, order: Order, check: bool = True) -> str:
        """Borrow what the order lacks now and lock what it will spend."""
        wallet = self._account.wallet(order.symbol)
        price = order.price or ZERO
        info = self._infos.get(order.symbol)
        fee = self._fee_quote(order, price, info.maker_fee if info else ZERO)
        before = self._debts(wallet)
        refusal = self._cover(wallet, order.symbol, order.side, order.remaining, price, fee,
                              self._clock.now_ms(), check=check)
        if refusal:
            return refusal
        base, quote = split_symbol(order.symbol)
        asset, need = (quote, order.remaining * price + fee) if order.side is Side.BUY else (
            base, order.remaining)
        wallet.add(asset, -need)
        wallet.locked[asset] = wallet.locked.get(asset, ZERO) + need
        borrowed = self._debts(wallet).get(asset, ZERO) - before.get(asset, ZERO)
        self._held[order.client_order_id] = (wallet.name, asset, need, max(borrowed, ZERO))
        self._book[order.client_order_id] = order
        return ""

    def _unrest(self, order: Order, give_back: bool) -> Wallet:
        self._book.pop(order.client_order_id, None)
        _, asset, need, borrowed = self._held.pop(order.client_order_id, ("", "", ZERO, ZERO))
        wallet = self._account.wallet(order.symbol)
        if need:
            wallet.locked[asset] = wallet.locked.get(asset, ZERO) - need
            wallet.add(asset, need)
        if give_back and borrowed:
            self._account.repay_unused(wallet, asset, borrowed)
            self._account.sweep_if_flat(wallet)
        return wallet

    def _fill_resting(self, order: Order, market: SymbolMarket) -> Execution:
        self._unrest(order, give_back=False)
        return self._execute(order, order.price or ZERO, market.info, maker=True)

    def _cover(self, wallet: Wallet, symbol: str, side: Side, amount: Decimal,
               price: Decimal, fee_quote: Decimal, now_ms: int, check: bool = True) -> str:
        """Borrow (after posting margin, per position) what `wallet` lacks for the order."""
        base, quote = split_symbol(symbol)
        asset, need = (quote, amount * price + fee_quote) if side is Side.BUY else (base, amount)
        shortfall = need - wallet.free.get(asset, ZERO)
        if shortfall <= 0:
            return ""
        leverage = Decimal(2)
        if self._terms is not None:
            leverage = self._terms.order_leverage or self._terms.max_leverage
        if symbol in self._leverage:
            leverage = Decimal(self._leverage[symbol])
        return self._account.fund(wallet, asset, shortfall, price, quote, leverage,
                                  self._prices() | {base: price}, now_ms, check=check)

    def _execute(self, order: Order, price: Decimal, info: MarketInfo, *,
                 maker: bool) -> Execution:
        rate = info.maker_fee if maker else info.taker_fee
        base, quote = split_symbol(order.symbol)
        if info.buy_fee_in_base and order.side is Side.BUY:
            fee, fee_asset = order.amount * rate, base
        else:
            fee, fee_asset = order.amount * price * rate, quote
        count = self._count_fill(order.client_order_id)
        fill = Fill(f"{order.client_order_id}-{count}", order.client_order_id, order.symbol,
                    order.side, order.amount, price, fee, fee_asset, self._clock.now_ms(), maker)
        self._settle(self._account.wallet(order.symbol), fill)
        done = replace(self._finish(order, OrderStatus.FILLED, ""), filled=order.amount,
                       average_price=price, fee=fee)
        return Execution(done, (fill,))

    def _settle(self, wallet: Wallet, fill: Fill) -> None:
        """Spend what the fill costs and receive what it brings in (repaying first)."""
        base, quote = split_symbol(fill.symbol)
        value = fill.amount * fill.price
        base_fee = fill.fee if fill.fee_asset == base else ZERO
        quote_fee = fill.fee if fill.fee_asset == quote else ZERO
        if fill.side is Side.BUY:
            wallet.add(quote, -(value + quote_fee))
            self._account.receive(wallet, base, fill.amount - base_fee)
            wallet.size += fill.amount - base_fee
        else:
            wallet.add(base, -fill.amount)
            self._account.receive(wallet, quote, value - quote_fee)
            wallet.size -= fill.amount
        if not fill.client_order_id.startswith(LIQUIDATION_PREFIX):
            self._account.close_if_flat(wallet, base, quote, fill.price)
        self._account.sweep_if_flat(wallet)

    # --- liquidation ----------------------------------------------------------------

    def _liquidate(self, market: MarketSnapshot) -> list[Execution]:
        executions: list[Execution] = []
        prices = self._prices()
        for wallet in self._account.all_wallets():
            if not self._account.due(wallet, prices):
                continue
            for order in list(self._book.values()):
                if self._account.wallet(order.symbol) is wallet:
                    self._unrest(order, give_back=True)
                    executions.append(Execution(self._finish(
                        order, OrderStatus.CANCELED, "canceled by a liquidation")))
            for symbol in self._symbols:
                found = market.get(symbol)
                if found is not None and self._account.wallet(symbol) is wallet:
                    closing = self._close_out(wallet, found)
                    if closing is not None:
                        executions.append(closing)
            self._account.write_off(wallet)
            self.liquidations += 1
        return executions

    def _close_out(self, wallet: Wallet, market: SymbolMarket) -> Execution | None:
        """Sell what the wallet holds of the symbol's base, or buy back what it owes."""
        symbol = market.info.symbol
        base = split_symbol(symbol)[0]
        self._account.settle_debt(wallet, base)  # what it holds of the base repays first
        owed, held = wallet.debt(base), wallet.free.get(base, ZERO)
        side, amount = (Side.BUY, owed) if owed else (Side.SELL, held)
        if amount <= 0:
            return None
        now = self._clock.now_ms()
        price = market.ticker.ask if side is Side.BUY else market.ticker.bid
        request = OrderRequest(f"{LIQUIDATION_PREFIX}{base}{now}", symbol, side,
                               OrderType.MARKET, amount, None, "liquidation", 0)
        return self._execute(Order.pending(request, now), price, replace(
            market.info, buy_fee_in_base=False), maker=False)

    # --- helpers --------------------------------------------------------------------

    def _prices(self) -> dict[str, Decimal]:
        prices: dict[str, Decimal] = {}
        for symbol in self._symbols:
            base, quote = split_symbol(symbol)
            prices[quote] = Decimal(1)
            if symbol in self._marks:
                prices[base] = self._marks[symbol]
        return prices

    def _symbol_of(self, asset: str) -> str:
        for symbol in self._symbols:
            if asset in split_symbol(symbol):
                return symbol
        return self._symbols[0] if self._symbols else asset

    def _debts(self, wallet: Wallet) -> dict[str, Decimal]:
        return {a: loan.borrowed for a, loan in wallet.loans.items()}

    def _fee_quote(self, order: Order, price: Decimal, rate: Decimal) -> Decimal:
        info = self._infos.get(order.symbol)
        if order.side is Side.BUY and info is not None and info.buy_fee_in_base:
            return ZERO
        return order.amount * price * rate if order.side is Side.BUY else ZERO

    @staticmethod
    def _quote_fee(fill: Fill) -> Decimal:
        quote = split_symbol(fill.symbol)[1]
        return fill.fee if fill.side is Side.BUY and fill.fee_asset == quote else ZERO


_NO_TERMS = LendingTerms(Decimal(2), Decimal(1), ())
"""Until the venue's terms are read (at the first reconcile) nothing may borrow."""
