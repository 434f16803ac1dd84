"""Liquidation: close what the mark price has taken below maintenance margin.

Checked whenever an account is touched (every signed request, after funding and
resting fills) and after every admin price move, like resting orders: the
simulator sees the price path when it looks, not in between. The test is the one
the liquidation price is solved from (`ctsd.sim.derivatives`):

- an isolated position is liquidated when its margin plus unrealized PnL is at or
  below its maintenance margin;
- the cross positions of a settle asset are liquidated together when the cross
  wallet plus their unrealized PnL is at or below their maintenance margin.

`Simulator.touch` announces a liquidation on the event bus (`ctsd.sim.events`): the
liquidation order's fill as an order update, then a LIQUIDATION account update.

A liquidation is an order placed by the venue (`Order.liquidation`, client id
`autoclose-…` as Binance names them): reduce-only market, the whole position,
filled through `ctsd.sim.matching` at the mark price as a taker, so the fill, its
fee and the order show in the account's histories. What the liquidation takes
beyond that fill is one `LIQUIDATION_FEE` ledger entry: an isolated position loses
its whole margin (what is left goes to the insurance fund; a gap past the
bankruptcy price is covered by it, so the loss stops at the margin), a cross
position forfeits its maintenance margin, bounded by what the cross wallet still
holds, and a cross wallet left negative is brought back to zero.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from ctsd.sim import derivatives, matching
from ctsd.sim.accounts import Account, FeeSchedule, Order, OrderType, Side, TimeInForce
from ctsd.sim.derivatives import PositionView
from ctsd.sim.market import InstrumentKind, Market
from ctsd.sim.positions import LedgerEntry, LedgerKind, MarginMode

CLIENT_ID_PREFIX = "autoclose-"
_ZERO = Decimal(0)


def check(
    account: Account, market: Market, next_order_id: Callable[[], int],
    next_trade_id: Callable[[], int],
) -> int:
    """Liquidate what is due; returns how many positions were closed."""
    if not account.perp.positions:
        return 0
    closed = 0
    for asset in sorted({p.settle for p in account.perp.positions.values()}):
        held = derivatives.views(account, market, settle=asset)
        for view in held:
            if view.isolated and view.margin_balance <= view.maintenance:
                _liquidate(account, market, view, next_order_id, next_trade_id)
                closed += 1
        cross = [v for v in held if not v.isolated]
        equity = derivatives.cross_wallet(account, asset) + sum(
            (v.unrealized_pnl for v in cross), _ZERO)
        if cross and equity <= sum((v.maintenance for v in cross), _ZERO):
            for view in cross:
                _liquidate(account, market, view, next_order_id, next_trade_id)
                closed += 1
            shortfall = -derivatives.cross_wallet(account, asset)
            if shortfall > 0 and not any(p.settle == asset for p in account.perp.positions
                                         .values() if p.margin_mode is MarginMode.CROSS):
                _book(account, cross[-1], shortfall, market.now_ms())
    return closed


def _liquidate(account: Account, market: Market, view: PositionView,
               next_order_id: Callable[[], int], next_trade_id: Callable[[], int]) -> None:
    pos, inst = view.position, view.inst
    now = market.now_ms()
    order_id = next_order_id()
    order = Order(
        id=order_id, client_id=f"{CLIENT_ID_PREFIX}{now}{order_id % 1000:03d}",
        symbol=inst.symbol, kind=InstrumentKind.LINEAR,
        side=Side.SELL if pos.qty > 0 else Side.BUY, type=OrderType.MARKET, qty=pos.size,
        price=None, time_in_force=TimeInForce.IOC,
        fees=FeeSchedule(maker=pos.taker_fee, taker=pos.taker_fee), created_ms=now,
        updated_ms=now, reduce_only=True, fee_asset=inst.quote,
        position_side=pos.side, margin_mode=pos.margin_mode, liquidation=True,
    )
    account.add_order(order)
    margin_before, maintenance = pos.isolated_margin, view.maintenance
    fills_before = len(account.perp.ledger)
    matching.fill_liquidation(account, market, order, view.mark, next_trade_id)
    fill = account.perp.ledger[fills_before]
    if view.isolated:
        remaining = margin_before + fill.pnl - fill.fee
        taken = -remaining
    else:
        left = derivatives.cross_wallet(account, pos.settle)
        taken = -min(maintenance, max(left, _ZERO))
    _book(account, view, taken, now, fill)


def _book(account: Account, view: PositionView, amount: Decimal, now: int,
          fill: LedgerEntry | None = None) -> None:
    """The liquidation's own ledger entry (negative: taken; positive: insurance)."""
    if not amount:
        return
    pos = view.position
    wallet = account.derivatives.get(pos.settle, _ZERO) + amount
    account.derivatives[pos.settle] = wallet
    perp = account.perp
    perp.cum_realized[pos.symbol] = perp.cum_realized.get(pos.symbol, _ZERO) + amount
    entry = LedgerEntry(
        perp.next_id(), now, LedgerKind.LIQUIDATION_FEE, pos.settle, pos.symbol, amount,
        wallet, pnl=amount, qty=fill.qty if fill else _ZERO,
        price=fill.price if fill else view.mark, side=fill.side if fill else "",
        position_side=pos.side, margin_mode=pos.margin_mode,
        order_id=fill.order_id if fill else None, trade_id=fill.trade_id if fill else None)
    perp.record(entry)
