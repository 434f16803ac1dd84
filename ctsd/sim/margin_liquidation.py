"""Forced liquidation of margin wallets: at the liquidation level, sell and buy back.

Checked whenever the account is touched, after interest and fills, like
perpetual liquidations (`ctsd.sim.liquidation`): the simulator sees the path when
it looks. A wallet whose margin level (assets over liabilities, `ctsd.sim.lending`)
is at or below its terms' liquidation level is closed out by the venue:

1. its open orders are cancelled;
2. every asset it holds that it does not owe is sold for the quote at the bid;
3. every asset it owes is bought back with the quote at the ask, and every debt
   (interest first) is repaid;
4. a shortfall left after that is written off (the venue's insurance fund), and a
   position wallet (OKX, Kraken) returns what is left to spot.

The orders are the venue's (`Order.liquidation`, client id `autoclose-…`), filled
through `ctsd.sim.matching` as a taker, so their fills show in the account's trade
history and Binance lists them in its force-liquidation record.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import ROUND_UP, Decimal

from ctsd.sim import lending, matching
from ctsd.sim.accounts import (
    Account,
    FeeSchedule,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from ctsd.sim.liquidation import CLIENT_ID_PREFIX
from ctsd.sim.loans import LoanKind
from ctsd.sim.market import Instrument, Market

_ZERO = Decimal(0)
LIQUIDATION_FEE = FeeSchedule(maker=Decimal("0.001"), taker=Decimal("0.001"))


def check(account: Account, market: Market, next_order_id: Callable[[], int],
          trade_ids: matching.TradeIds) -> list[str]:
    """Liquidate every margin wallet at or below its level; returns the wallets closed."""
    closed = []
    for wallet in lending.margin_wallets(account):
        terms = account.loans.terms[wallet]
        value = lending.value(account, market, wallet)
        if value.level is None:
            continue
        if terms.liquidation_margin is not None:
            due = value.equity <= terms.liquidation_margin * lending.posted_margin(account,
                                                                                  wallet)
        else:
            due = value.level <= terms.liquidation_level
        if due:
            _liquidate(account, market, wallet, next_order_id, trade_ids)
            closed.append(wallet)
    return closed


def _liquidate(account: Account, market: Market, wallet: str,
               next_order_id: Callable[[], int], trade_ids: matching.TradeIds) -> None:
    quote = market.catalog.quote
    for order in account.open_orders():
        if order.wallet == wallet:
            matching.cancel(account, market, order)
    holdings = account.wallet(wallet)
    for asset, h in list(holdings.items()):
        inst = market.catalog.get(f"{asset}/{quote}")
        if inst is not None and h.free > h.debt:
            qty = ((h.free - h.debt) // inst.step_size) * inst.step_size
            if qty > 0:
                _close(account, market, inst, wallet, Side.SELL, qty, next_order_id, trade_ids)
    for asset, h in list(holdings.items()):
        inst = market.catalog.get(f"{asset}/{quote}")
        owed = h.debt - h.free
        if inst is not None and owed > 0:
            qty = (owed / inst.step_size).to_integral_value(ROUND_UP) * inst.step_size
            _close(account, market, inst, wallet, Side.BUY, qty, next_order_id, trade_ids)
    now = market.now_ms()
    for asset, h in holdings.items():
        pay = min(h.free, h.debt)
        if pay > 0:
            h.free -= pay
            lending.receive(account, now, wallet, asset, pay, auto_repay=True)
        if h.debt > 0:  # the insurance fund takes what is left
            written_off = h.debt
            h.borrowed = h.interest = _ZERO
            lending.record(account, now, wallet, asset, LoanKind.LIQUIDATION, written_off)
        if h.free < 0:
            h.free = _ZERO
    lending.sweep_if_flat(account, now, wallet)


def _close(account: Account, market: Market, inst: Instrument, wallet: str, side: Side,
           qty: Decimal, next_order_id: Callable[[], int], trade_ids: matching.TradeIds,
           ) -> None:
    now = market.now_ms()
    order_id = next_order_id()
    order = Order(
        id=order_id, client_id=f"{CLIENT_ID_PREFIX}{now}{order_id % 1000:03d}",
        symbol=inst.symbol, kind=inst.kind, side=side, type=OrderType.MARKET, qty=qty,
        price=None, time_in_force=TimeInForce.IOC, fees=LIQUIDATION_FEE, created_ms=now,
        updated_ms=now, fee_asset=inst.quote, liquidation=True, wallet=wallet,
        auto_repay=True,
    )
    account.add_order(order)
    if side is Side.SELL:  # what a sell order would have held
        held = account.holding(inst.base, wallet)
        held.free -= qty
        held.locked += qty
        order.locked = qty
    last = market.price(inst.symbol)
    price = last + inst.tick_size if side is Side.BUY else last
    matching.fill_liquidation(account, market, order, price, trade_ids)
    order.status = OrderStatus.FILLED
