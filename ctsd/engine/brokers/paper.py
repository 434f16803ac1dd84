"""PAPER trading: fills simulated against live tickers, with the venue's fees, from a paper balance.

Market orders fill at once at the ask (buys) or bid (sells), worsened by the
configured slippage, and pay the taker fee. Limit orders that would cross on
arrival fill the same way as takers; the rest reserve their funds and fill at
their own price, paying the maker fee, on the first poll whose ticker crosses
them (buy: ask <= price; sell: bid >= price). Fees are charged where the venue
charges them: a buy's in the base asset on venues that take it from what the buy
receives (`MarketInfo.buy_fee_in_base`: Binance, Bybit, OKX spot), every other in
the quote asset, so paper and live books agree. Spot semantics: a sell needs the
base asset in hand.

The paper account is not persisted separately: `reconcile` rebuilds it from the
starting balances plus the persisted fills, and re-rests persisted open orders,
so a restart continues exactly where the engine stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal

from ctsd.clock import Clock
from ctsd.engine.brokers.paper_terms import PaperBook, crosses, taker_price
from ctsd.engine.config import PaperSettings
from ctsd.engine.ledger import split_symbol
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.perpetual import FundingPayment, VenuePosition
from ctsd.strategies.model import Balance, MarketInfo, MarketSnapshot, OrderType, Side, SymbolMarket

ZERO = Decimal(0)


class PaperBroker(PaperBook):
    def __init__(self, settings: PaperSettings, clock: Clock) -> None:
        super().__init__(clock)
        self._settings = settings
        self._free: dict[str, Decimal] = {}
        self._used: dict[str, Decimal] = {}
        self._reserved: dict[str, tuple[str, Decimal]] = {}
        self._reset_balances()

    def _assets(self, symbol: str) -> tuple[str, str]:
        """(what a buy receives, what it pays): the pair's base and quote on spot."""
        return split_symbol(symbol)

    def _reset_balances(self) -> None:
        self._free = dict(self._settings.balances)
        self._used = {}

    def balances(self) -> tuple[Balance, ...]:
        assets = sorted(set(self._free) | set(self._used))
        return tuple(Balance(a, self._free.get(a, ZERO),
                             self._free.get(a, ZERO) + self._used.get(a, ZERO)) for a in assets)

    def positions(self) -> tuple[VenuePosition, ...]:
        return ()  # spot: the ledger is the position

    def positions_streamed(self) -> bool:
        return False  # computed here, never behind

    def take_funding(self) -> tuple[FundingPayment, ...]:
        return ()

    async def reconcile(
        self, known: Sequence[Order], fills: Sequence[Fill],
        funding: Sequence[FundingPayment] = (),
    ) -> tuple[Execution, ...]:
        self._reset_balances()
        self._book.clear()
        self._reserved.clear()
        for fill in fills:
            self._settle(fill)
            self._count_fill(fill.client_order_id)
        return self._reconcile_orders(known, self._rest_again)

    def _rest_again(self, order: Order) -> None:
        info = self._market.get(order.symbol) if self._market else None
        self._reserve(order, info.info.maker_fee if info else ZERO)
        self._book[order.client_order_id] = order

    def _trade(self, order: Order, market: SymbolMarket) -> Execution:
        touch = taker_price(order, market, self._settings.slippage_bps)
        if order.type is OrderType.MARKET or crosses(order, market):
            return self._fill_as_taker(order, market, touch)
        shortfall = self._shortfall(order, order.price or ZERO,
                                    _quote_fee(market.info, order, market.info.maker_fee))
        if shortfall:
            return Execution(self._finish(order, OrderStatus.REJECTED, shortfall))
        order = replace(order, status=OrderStatus.OPEN)
        self._reserve(order, market.info.maker_fee)
        self._book[order.client_order_id] = order
        return Execution(order)

    async def cancel(self, order: Order) -> Execution:
        resting = self._book.pop(order.client_order_id, None)
        if resting is None:
            return Execution(order)
        self._release(resting)
        return Execution(self._finish(resting, OrderStatus.CANCELED, "canceled"))

    async def poll(self, market: MarketSnapshot) -> tuple[Execution, ...]:
        self._market = market
        executions = []
        for order in list(self._book.values()):
            symbol_market = market.get(order.symbol)
            if symbol_market is not None and crosses(order, symbol_market):
                del self._book[order.client_order_id]
                self._release(order)
                price = order.price or ZERO
                executions.append(self._fill(order, price, symbol_market.info, True))
        return tuple(executions)

    def _fill_as_taker(self, order: Order, market: SymbolMarket, price: Decimal) -> Execution:
        shortfall = self._shortfall(order, price, _quote_fee(market.info, order,
                                                             market.info.taker_fee))
        if shortfall:
            return Execution(self._finish(order, OrderStatus.REJECTED, shortfall))
        return self._fill(order, price, market.info, False)

    def _shortfall(self, order: Order, price: Decimal, fee_rate: Decimal) -> str:
        """Why the paper account cannot pay for `order`, or "" when it can."""
        base, quote = self._assets(order.symbol)
        if order.side is Side.BUY:
            need, asset = order.amount * price * (1 + fee_rate), quote
        else:
            need, asset = order.amount, base
        have = self._free.get(asset, ZERO)
        return "" if have >= need else f"insufficient {asset}: need {need:.8f}, have {have:.8f}"

    def _fill(self, order: Order, price: Decimal, info: MarketInfo, maker: bool) -> Execution:
        """Fill all of `order` at `price`, paying the fee where the venue charges it: in the
        base asset for a buy on a venue that does so (`MarketInfo.buy_fee_in_base`), else
        in the quote asset, as the live broker would be charged."""
        base, quote = self._assets(order.symbol)
        rate = info.maker_fee if maker else info.taker_fee
        count = self._count_fill(order.client_order_id)
        if info.buy_fee_in_base and order.side is Side.BUY:
            fee, fee_asset = order.amount * rate, base
        else:
            fee, fee_asset = order.amount * price * rate, quote
        fill = Fill(f"{order.client_order_id}-{count}", order.client_order_id, order.symbol,
                    order.side, order.amount, price, fee, fee_asset, self._clock.now_ms(), maker)
        self._settle(fill)
        done = replace(self._finish(order, OrderStatus.FILLED, ""),
                       filled=order.amount, average_price=price, fee=fill.fee)
        return Execution(done, (fill,))

    def _settle(self, fill: Fill) -> None:
        """Move the paper balances for one fill; its fee leaves the asset it was paid in."""
        base, quote = self._assets(fill.symbol)
        value = fill.amount * fill.price
        if fill.side is Side.BUY:
            self._add(quote, -value)
            self._add(base, fill.amount)
        else:
            self._add(base, -fill.amount)
            self._add(quote, value)
        self._add(fill.fee_asset or quote, -fill.fee)

    def _reserve(self, order: Order, fee_rate: Decimal) -> None:
        """Hold what the order can cost: the base asset of a sell, price plus fee of a buy."""
        base, quote = self._assets(order.symbol)
        if order.side is Side.SELL:
            asset, amount = base, order.remaining
        else:
            asset, amount = quote, order.remaining * (order.price or ZERO) * (1 + fee_rate)
        self._reserved[order.client_order_id] = (asset, amount)
        self._add(asset, -amount)
        self._used[asset] = self._used.get(asset, ZERO) + amount

    def _release(self, order: Order) -> None:
        asset, amount = self._reserved.pop(order.client_order_id, ("", ZERO))
        if amount:
            self._used[asset] = self._used.get(asset, ZERO) - amount
            self._add(asset, amount)

    def _add(self, asset: str, amount: Decimal) -> None:
        self._free[asset] = self._free.get(asset, ZERO) + amount


class PaperOptionBroker(PaperBroker):
    """PAPER options: the paper account holds the contracts themselves (under their
    symbol), bought with and sold for the settle currency; a sell needs the contracts in
    hand (options engines do not write). Expiry settles through `settle`."""

    def _assets(self, symbol: str) -> tuple[str, str]:
        return symbol, split_symbol(symbol)[1]

    def settle(self, fill: Fill) -> None:
        """A contract settled at expiry (`ctsd.engine.option_session`): it leaves the
        account and its value comes in, as the venue pays it."""
        self._settle(fill)


def _quote_fee(info: MarketInfo, order: Order, rate: Decimal) -> Decimal:
    """The fee rate a buy must also pay in the quote asset (none when paid in base)."""
    return ZERO if info.buy_fee_in_base and order.side is Side.BUY else rate
