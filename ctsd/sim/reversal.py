"""An order on a position wallet (OKX margin, Kraken) that reverses the position: a close,
then an open.

The venues net an order against the position it opposes: up to the position's size it
closes it (the proceeds repay the loan first, and the profit or loss left is the
account's), and the rest opens a position the other way on margin of its own ("the
leverage amount will apply to the new position and determine the collateral withheld",
Kraken's "What is closing a position"; OKX auto-transfers margin in on opening and out
on closing). So, over `ctsd.sim.lending`:

- at placement (`usable`): the wallet's funds count only for the closing part (a buy
  that covers a short pays the buy-back from what the short holds, and no more of it),
  and the opening remainder posts its own margin and is checked as a position of its
  own (`lending.fund_order(alone=True)`): the closed position's debt, which the closing
  part repays, does not count against it. Checked on the whole wallet, a 5x long could
  not flip at 5x.
- at the fill that takes the position through flat (`settle`), between its closing and
  its opening part: what the closed position still owes is paid from what it left, then
  from spot; what it left goes back to spot; the posted margin is the open orders' only.
  Before, the closed position's margin and profit stayed in the wallet as collateral of
  the new one, and its margin in the new one's posted margin (Kraken `margin` and `m`,
  OKX `margin`, `imr`).
- an order that ends (`give_back_margin`) returns the margin of what it did not open.

The closing part is where `lending.position` goes through flat: the position's size, or
for a buy whose fee is taken in the base (OKX) that much more. A position or a remainder
worth less than the pair's minimum order is dust, and the order is as any other; so are
orders that only close or only open, and the venue's liquidation orders. A flipping
order's fills stay one trade each, as the venues report them.

A fill that closes a position exactly (an order for its size) is not a flip: on Kraken
`lending.close_if_flat` pays what the short still owes in the base (its fees) out of its
quote and `lending.sweep_if_flat` empties the wallet, as Kraken settles a closed
position in the quote; on OKX the wallet keeps it, owing, as OKX's MARGIN position lasts
while it owes (`MarginTerms.close_in_quote`; the PAPER margin account,
`ctsd.engine.brokers.margin_account`, does the same).
"""

from __future__ import annotations

from decimal import Decimal

from ctsd.sim import lending
from ctsd.sim.accounts import SPOT_WALLET, Account, Order, Side
from ctsd.sim.market import Instrument

_ZERO = Decimal(0)


def closing_part(account: Account, order: Order, qty: Decimal, inst: Instrument,
                 price: Decimal, base_fee_rate: Decimal) -> tuple[Decimal, bool]:
    """If the order reverses its wallet's position (closes all of it and goes on to open
    at least the pair's minimum order the other way): how much of `qty`, this fill's,
    closes it, and whether this fill reaches flat; else (0, False), and the order is as
    any other. A buy whose fee is taken in the base (`base_fee_rate`, OKX) brings in that
    much less, so it takes more to close a short (as `lending.position` counts it).

    A position or an opening remainder worth less than the pair's minimum order is dust
    (interest or fees owed in the base, rounding), not a position: the order closes or
    opens as any other."""
    terms = account.loans.terms.get(order.wallet)
    if terms is None or not terms.position or order.liquidation:
        return _ZERO, False
    size = lending.position(account, order.wallet).size
    if not size or (size > 0) == (order.side is Side.BUY):
        return _ZERO, False
    need = abs(size) / (1 - base_fee_rate) if order.side is Side.BUY else abs(size)
    dust = inst.min_notional / price
    if abs(size) < dust or order.remaining - need < dust:
        return _ZERO, False
    return min(qty, need), qty >= need


def usable(account: Account, order: Order, free: Decimal, amount: Decimal,
           inst: Instrument, price: Decimal, base_fee_rate: Decimal,
           ) -> tuple[Decimal, bool]:
    """What of the wallet's `free` funds the order may hold towards its `amount`, and
    whether it reverses the position (then only the closing part's share of `amount`)."""
    closing, _ = closing_part(account, order, order.qty, inst, price, base_fee_rate)
    if not closing:
        return free, False
    return min(free, amount * closing / order.qty), True


def _hold_asset(order: Order) -> str:
    base, quote = order.symbol.split("/")
    return quote if order.side is Side.BUY else base


def settle(account: Account, now: int, wallet: str, owed: str) -> None:
    """Settle the position a fill has just closed, before the fill opens the other way:
    its remaining debt in `owed` (interest charged in the base: Kraken's opening fee and
    rollovers; a loss past its margin) is paid from the wallet's free `owed`, then from
    spot's, and what spot cannot pay the opening part repays as it comes in; what the
    wallet holds free beyond what open sells posted as margin goes back to spot; the
    posted margin is then what the open orders posted and have not opened yet."""
    orders = [o for o in account.open_orders() if o.wallet == wallet]
    keep: dict[str, Decimal] = {}
    for o in orders:
        if o.side is Side.SELL and o.margin:  # a sell's margin waits free, in the quote
            quote = o.symbol.split("/")[1]
            keep[quote] = keep.get(quote, _ZERO) + o.margin
    lent = sum((o.borrowed * o.remaining / o.qty for o in orders if _hold_asset(o) == owed),
               _ZERO)
    held = account.holding(owed, wallet)
    due = held.debt - lent
    spot = account.holding(owed, SPOT_WALLET)
    for source in (held, spot):
        pay = min(due, max(source.free - (keep.get(owed, _ZERO) if source is held else _ZERO),
                           _ZERO))
        if pay > 0:
            source.free -= pay
            lending.receive(account, now, wallet, owed, pay, auto_repay=True)
            due -= pay
    for asset, h in list(account.wallet(wallet).items()):
        back = h.free - keep.get(asset, _ZERO)
        if back > 0:
            lending.transfer(account, now, wallet, SPOT_WALLET, asset, back)
    account.loans.posted[wallet] = sum((o.margin for o in orders), _ZERO)


def give_back_margin(account: Account, now: int, order: Order) -> None:
    """An order that ends (cancelled, expired) before it opened all it posted margin for
    returns the rest to spot: a resting flip's margin counted as its wallet's position's
    once the order was gone, and a flip cancelled after crossing kept the margin of all
    it would have opened."""
    if not order.margin:
        return
    quote = order.symbol.split("/")[1]
    back = min(order.margin, account.holding(quote, order.wallet).free)
    order.margin = _ZERO
    if back > 0:
        lending.transfer(account, now, order.wallet, SPOT_WALLET, quote, back)
        posted = lending.posted_margin(account, order.wallet)
        account.loans.posted[order.wallet] = max(posted - back, _ZERO)


def consume_margin(order: Order, opened: Decimal, opening_left: Decimal) -> None:
    """A fill opened `opened` of the `opening_left` the order had yet to open: that
    share of its margin is now its position's."""
    if order.margin and opened > 0:
        order.margin -= order.margin * min(opened / opening_left, Decimal(1))
