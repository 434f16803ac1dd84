"""Order placement and fills against the simulated book and tape.

Deterministic, and faithful where a client can tell:

- A market order, or a limit that crosses the book, fills at once at the touch
  (`ctsd.sim.book`): a buy at the best ask, a sell at the best bid, as a taker.
  The touch is as deep as the order needs.
- A resting limit fills at its limit price, as a maker, when the public tape
  (`ctsd.sim.tape`) trades through it: a buy when a trade prints below its price,
  a sell above. Every trade since the order was last looked at counts, not just
  the price now, so a dip between two polls fills the order as it would on the
  exchange. The trade the price stands at is always re-read, so an admin
  `set_price` takes effect at once.
- A stop or take-profit (`Order.trigger`) waits until a trade prints at or
  through its trigger; it then works as the market or limit order it carries,
  against the book as it was at that trade.

Spot orders hold their funds while open; perpetual orders hold initial margin at
their position's leverage and move positions through `ctsd.sim.derivatives`.

An order fills in one trade unless the simulator's `fill_split` N says otherwise: then
in parts of at most ⌈qty/N⌉ (on the lot step), each a trade of its own with its own id
and fee, as an order filled against several counterparties is. A taker takes every
part at once (several makers at the touch); a resting order one part per public trade
through its price (`Order.filled_by`: a trade re-read fills nothing twice), so its
fills come apart in time as the tape moves. Fees
are charged in the quote (settle) asset, or, for a spot buy on a venue whose
`FeeSchedule.base_fee_on_buy` says so, in the base asset out of what the buy receives.
Every execution is recorded as a `Fill`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_HALF_UP, Decimal

from ctsd.sim import derivatives, lending, reversal
from ctsd.sim.accounts import (
    SPOT_WALLET,
    Account,
    DerivativesBalance,
    FeeSchedule,
    Fill,
    Order,
    OrderStatus,
    OrderType,
    Rejection,
    RejectKind,
    Side,
    TimeInForce,
    Trigger,
)
from ctsd.sim.market import Instrument, InstrumentKind, Market
from ctsd.sim.positions import MarginMode, PositionSide
from ctsd.sim.tape import PublicTrade

_ZERO = Decimal(0)
MARKET_STOP_BUY_HOLD = Decimal("1.05")
"""A stop market buy holds 5 % over its trigger: it fills wherever the price is then."""

TradeIds = Callable[[], int]
"""The source of fill ids (`AccountStore.next_trade_id`)."""


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A venue-neutral order, after the venue has parsed its own parameters."""

    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal | None = None
    client_id: str | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    quote_qty: Decimal | None = None
    """Spot market buys by quote amount (Binance `quoteOrderQty`); `qty` is then ignored."""
    note: object = None
    """Venue-specific detail kept on the order (`Order.note`)."""
    trigger: Trigger | None = None
    """Stops and take-profits: the order works once a trade reaches the trigger."""
    post_only: bool = False
    """Maker only: refused (WOULD_TAKE) if it would cross the book when it starts working."""
    trigger_now: bool = False
    """A trigger the price already reached fires at once (Kraken), instead of the
    WOULD_TRIGGER rejection (Binance, Bybit, OKX)."""
    wallet: str = SPOT_WALLET
    """Spot orders: the wallet traded; a margin wallet (`ctsd.sim.lending`) lends."""
    auto_borrow: bool = False
    auto_repay: bool = False
    leverage: Decimal | None = None
    """Position wallets: the account's own share of what the order borrows is 1/leverage."""
    position_side: PositionSide | None = None
    """Perpetuals: the hedge-mode side the order trades (None: one-way)."""
    margin_mode: MarginMode | None = None
    """Perpetuals: set per order on OKX (`tdMode`); None takes the account's setting."""
    closes_position: bool = False
    """The venue's close of a whole position wallet (OKX `close-position`): sized by what
    the position owes, to the satoshi rather than the lot (no lot or minimum checks)."""


def validate(inst: Instrument, qty: Decimal, price: Decimal | None, ref_price: Decimal) -> None:
    """The exchange filters: tick, lot size and minimum notional."""
    if qty <= 0 or qty % inst.step_size != 0 or not inst.min_qty <= qty <= inst.max_qty:
        raise Rejection(RejectKind.LOT_SIZE, f"quantity {qty}")
    if price is not None and (
        price <= 0 or price % inst.tick_size != 0 or not inst.min_price <= price <= inst.max_price
    ):
        raise Rejection(RejectKind.PRICE_FILTER, f"price {price}")
    if qty * (price if price is not None else ref_price) < inst.min_notional:
        raise Rejection(RejectKind.MIN_NOTIONAL, f"notional below {inst.min_notional}")


def place(
    account: Account, market: Market, req: OrderRequest, fees: FeeSchedule, order_id: int,
    trade_ids: TradeIds, split: int = 1,
) -> Order:
    """Validate, hold funds, and fill what crosses; the order is stored even when filled."""
    inst = market.catalog.get(req.symbol)
    if inst is None:
        raise Rejection(RejectKind.UNKNOWN_SYMBOL, req.symbol)
    now = market.now_ms()
    last = market.price(inst.symbol)
    ask = last + inst.tick_size
    qty = req.qty
    if req.quote_qty is not None and req.type is OrderType.MARKET:
        qty = (req.quote_qty / ask).quantize(inst.step_size, rounding=ROUND_DOWN)
    if req.type is OrderType.LIMIT and req.price is None:
        raise Rejection(RejectKind.BAD_PARAMETER, "price")
    ref = req.trigger.price if req.trigger is not None else last
    if not req.closes_position:  # the venue's own close: sized by what the position owes
        validate(inst, qty, req.price if req.type is OrderType.LIMIT else None, ref)
    if req.trigger is not None:
        if req.trigger.price <= 0 or req.trigger.price % inst.tick_size != 0:
            raise Rejection(RejectKind.PRICE_FILTER, f"trigger {req.trigger.price}")
        if _reached(req.trigger, last) and not req.trigger_now:
            raise Rejection(RejectKind.WOULD_TRIGGER, f"trigger {req.trigger.price}, last {last}")
    if req.client_id is not None and account.has_client_id(req.client_id):
        raise Rejection(RejectKind.DUPLICATE_CLIENT_ID, req.client_id)
    if req.post_only and req.trigger is None and req.price is not None and (
            req.price >= ask if req.side is Side.BUY else req.price <= last):
        raise Rejection(RejectKind.WOULD_TAKE, f"price {req.price}")
    order = Order(
        id=order_id, client_id=req.client_id or uuid.uuid4().hex[:20], symbol=inst.symbol,
        kind=inst.kind, side=req.side, type=req.type, qty=qty,
        price=req.price if req.type is OrderType.LIMIT else None,
        time_in_force=req.time_in_force, fees=fees, created_ms=now, updated_ms=now,
        reduce_only=req.reduce_only, fee_asset=_fee_asset(inst, req.side, fees),
        trigger=req.trigger, post_only=req.post_only, checked_trade=market.tape.last_id(),
        quote_qty=req.quote_qty if req.type is OrderType.MARKET else None, note=req.note,
        wallet=req.wallet, auto_borrow=req.auto_borrow, auto_repay=req.auto_repay,
        leverage=req.leverage, split=max(1, split),
    )
    if inst.kind is InstrumentKind.LINEAR:
        derivatives.assign(account, order, req.position_side, req.margin_mode)
    _hold(account, inst, order, _hold_price(order, ask), market)
    account.add_order(order)
    if order.trigger is None or _reached(order.trigger, last):
        if order.trigger is not None:
            order.triggered_ms = now
        _work(account, market, inst, order, last, now, trade_ids)
    return order


def cancel(account: Account, market: Market, order: Order) -> Order:
    if not order.status.is_open:
        raise Rejection(RejectKind.ORDER_NOT_OPEN, str(order.id))
    inst = market.catalog.instruments[order.symbol]
    _release(account, inst, order, OrderStatus.CANCELED, market.now_ms())
    return order


def sync(account: Account, market: Market, trade_ids: TradeIds) -> None:
    """Fire the triggers and fill the resting limits the tape has reached since the last
    look (and always re-read the trade the price stands at)."""
    orders = account.open_orders()
    if not orders:
        return
    tape = market.tape
    now_id = tape.last_id()
    for order in orders:
        inst = market.catalog.instruments[order.symbol]
        after = min(order.checked_trade, now_id - 1)
        order.checked_trade = now_id
        if order.untriggered:
            assert order.trigger is not None
            level = _ticks(inst, order.trigger.price)
            hit = tape.first_through(inst, after, now_id, **(
                {"at_or_above": level} if order.trigger.rises else {"at_or_below": level}))
            if hit is None:
                continue
            order.triggered_ms = max(hit.time_ms, order.created_ms)
            _work(account, market, inst, order, hit.price, order.triggered_ms, trade_ids)
            after = hit.id
        if order.status.is_open and order.price is not None:
            _fill_resting(account, market, inst, order, after, now_id, trade_ids)


def _fill_resting(
    account: Account, market: Market, inst: Instrument, order: Order, after: int, now_id: int,
    trade_ids: TradeIds,
) -> None:
    """One part (all of it, unsplit) per public trade through the price, each trade once."""
    assert order.price is not None
    level = _ticks(inst, order.price)
    after = max(after, order.filled_by)
    while order.status.is_open:
        hit: PublicTrade | None
        if order.side is Side.BUY:
            hit = market.tape.first_through(inst, after, now_id, at_or_below=level - 1)
        else:
            hit = market.tape.first_through(inst, after, now_id, at_or_above=level + 1)
        if hit is None:
            return
        at = max(hit.time_ms, order.created_ms, order.triggered_ms or 0)
        qty = _part(inst, order)
        if inst.kind is InstrumentKind.LINEAR and not derivatives.fill_allowed(
                account, order, qty):
            _release(account, inst, order, OrderStatus.EXPIRED, at)
            return
        _fill(account, market, inst, order, order.price, True, at, trade_ids, qty)
        order.filled_by = after = hit.id


def _work(
    account: Account, market: Market, inst: Instrument, order: Order, last: Decimal,
    at_ms: int, trade_ids: TradeIds,
) -> None:
    """The order is live against the book whose bid is `last`: take what crosses, rest
    (GTC) or expire (IOC/FOK) the rest."""
    ask = last + inst.tick_size
    touch = ask if order.side is Side.BUY else last
    crosses = order.price is None or (
        order.price >= ask if order.side is Side.BUY else order.price <= last)
    if crosses:
        while order.status.is_open:  # every part at once: several makers at the touch
            _fill(account, market, inst, order, touch, False, at_ms, trade_ids,
                  _part(inst, order))
    elif order.time_in_force is not TimeInForce.GTC:
        _release(account, inst, order, OrderStatus.EXPIRED, at_ms)


def _part(inst: Instrument, order: Order) -> Decimal:
    """The next fill's quantity: ⌈qty/split⌉ on the lot step, at most what remains."""
    if order.split <= 1:
        return order.remaining
    steps = max((order.qty / (inst.step_size * order.split)).to_integral_value(ROUND_CEILING),
                Decimal(1))
    return min(order.remaining, steps * inst.step_size)


def _charged(fees: FeeSchedule, fee: Decimal) -> Decimal:
    """A trade's fee as the venue charges it (`FeeSchedule.decimals`)."""
    if fees.decimals is None:
        return fee
    return fee.quantize(Decimal(1).scaleb(-fees.decimals), rounding=ROUND_HALF_UP)


def _reached(trigger: Trigger, last: Decimal) -> bool:
    return last >= trigger.price if trigger.rises else last <= trigger.price


def _ticks(inst: Instrument, price: Decimal) -> int:
    return int(price / inst.tick_size)


def _hold_price(order: Order, ask: Decimal) -> Decimal:
    if order.price is not None:
        return max(order.price, ask) if order.trigger is None else order.price
    if order.trigger is not None:
        return order.trigger.price * MARKET_STOP_BUY_HOLD
    return ask


def _fee_asset(inst: Instrument, side: Side, fees: FeeSchedule) -> str:
    if inst.kind is InstrumentKind.SPOT and side is Side.BUY and fees.base_fee_on_buy:
        return inst.base
    return inst.quote


def fill_liquidation(
    account: Account, market: Market, order: Order, price: Decimal, trade_ids: TradeIds,
) -> Fill:
    """Fill a liquidation order (built by `ctsd.sim.liquidation`) at `price`, as a taker;
    returns its fill record."""
    inst = market.catalog.instruments[order.symbol]
    _fill(account, market, inst, order, price, False, market.now_ms(), trade_ids)
    return account.fills[-1]


def derivatives_balances(account: Account, market: Market) -> list[DerivativesBalance]:
    """Wallet, unrealised PnL and margins per settle asset (`ctsd.sim.derivatives.balances`)."""
    return derivatives.balances(account, market)


def _hold(account: Account, inst: Instrument, order: Order, price: Decimal, market: Market) -> None:
    if inst.kind is InstrumentKind.SPOT:
        if order.side is Side.BUY:
            fee_share = _ZERO if order.fee_asset == inst.base else order.fees.taker
            asset, amount = inst.quote, order.qty * price * (1 + fee_share)
        else:
            asset, amount = inst.base, order.qty
        holding = account.holding(asset, order.wallet)
        usable, reverses = reversal.usable(account, order, holding.free, amount, inst, price,
                                           _base_fee_rate(inst, order, market))
        if usable < amount:
            if not order.auto_borrow:
                raise Rejection(RejectKind.INSUFFICIENT_FUNDS,
                                f"{asset} {holding.free} < {amount}")
            lending.fund_order(account, market, order, asset, amount - usable, price,
                               inst.quote, alone=reverses)
        holding.free -= amount
        holding.locked += amount
        order.locked = amount
        return
    order.locked = derivatives.order_margin(account, market, inst, order, price)


def _base_fee_rate(inst: Instrument, order: Order, market: Market) -> Decimal:
    """The fee rate a buy paying its fee in the base will pay: the maker's if it rests,
    the taker's if it takes (or waits for a trigger, then works at the touch)."""
    if order.fee_asset != inst.base:
        return _ZERO
    rests = order.price is not None and order.trigger is None and (
        order.price < market.price(inst.symbol) + inst.tick_size)
    return order.fees.maker if rests else order.fees.taker


def _release(
    account: Account, inst: Instrument, order: Order, status: OrderStatus, now: int,
) -> None:
    if inst.kind is InstrumentKind.SPOT:
        asset = inst.quote if order.side is Side.BUY else inst.base
        holding = account.holding(asset, order.wallet)
        holding.locked -= order.locked
        holding.free += order.locked
        back = min(order.borrowed, holding.free, holding.debt) if order.auto_repay else _ZERO
        if back > 0:  # what the order borrowed goes back when it ends unfilled
            holding.free -= back
            lending.receive(account, now, order.wallet, asset, back, auto_repay=True)
        if order.wallet != SPOT_WALLET:
            reversal.give_back_margin(account, now, order)
            lending.sweep_if_flat(account, now, order.wallet)
    order.locked = _ZERO
    order.status = status
    order.updated_ms = now


def _spot_fill(
    account: Account, inst: Instrument, order: Order, qty: Decimal, price: Decimal,
    fee: Decimal, release: Decimal, now: int,
) -> None:
    """Move a spot fill's funds; a fill that takes a position wallet through flat (and an
    order that goes on past flat) closes the position, settles it and then opens the
    rest (`ctsd.sim.reversal`)."""
    rate = fee / qty if order.fee_asset == inst.base else _ZERO
    closing, ends = reversal.closing_part(account, order, qty, inst, price, rate)
    opened, opening_left = qty - closing, order.remaining - closing
    if ends and order.remaining > closing:
        share = closing / qty
        _exchange(account, inst, order, closing, price, fee * share, release * share, now)
        reversal.settle(account, now, order.wallet,
                        inst.quote if order.side is Side.SELL else inst.base)
        if opened:
            _exchange(account, inst, order, opened, price, fee - fee * share,
                      release - release * share, now)
    else:
        _exchange(account, inst, order, qty, price, fee, release, now)
    reversal.consume_margin(order, opened, opening_left)


def _exchange(
    account: Account, inst: Instrument, order: Order, qty: Decimal, price: Decimal,
    fee: Decimal, release: Decimal, now: int,
) -> None:
    """Spend what `qty` at `price` costs out of what the order held (`release`) and
    receive what it brings in, less `fee` (what comes in repays first, `auto_repay`)."""
    wallet = order.wallet
    cost = qty * price
    if order.side is Side.BUY:
        quote = account.holding(inst.quote, wallet)
        quote.locked -= release
        quote.free += release - cost - (fee if order.fee_asset == inst.quote else 0)
        lending.receive(account, now, wallet, inst.base,
                        qty - (fee if order.fee_asset == inst.base else 0),
                        auto_repay=order.auto_repay)
    else:
        account.holding(inst.base, wallet).locked -= release
        lending.receive(account, now, wallet, inst.quote, cost - fee,
                        auto_repay=order.auto_repay)


def _fill(
    account: Account, market: Market, inst: Instrument, order: Order, price: Decimal,
    maker: bool, now: int, trade_ids: TradeIds, qty: Decimal | None = None,
) -> None:
    """Fill `qty` (default: all that remains) as one trade; what the order held is
    released in proportion, the rest of it when the last part fills."""
    qty = order.remaining if qty is None else min(qty, order.remaining)
    release = order.locked if qty == order.remaining else order.locked * qty / order.remaining
    cost = qty * price
    rate = order.fees.maker if maker else order.fees.taker
    pnl = _ZERO
    trade_id = trade_ids()
    if inst.kind is InstrumentKind.SPOT:
        fee = _charged(order.fees, qty * rate if order.fee_asset == inst.base else cost * rate)
        _spot_fill(account, inst, order, qty, price, fee, release, now)
    else:
        fee = _charged(order.fees, cost * rate)
        pnl = derivatives.apply_fill(account, market, inst, order, qty, price, fee, now,
                                     maker=maker, trade_id=trade_id).pnl
    order.locked -= release
    order.filled += qty
    order.cost += cost
    order.fee += fee
    if order.remaining == 0:
        order.status = OrderStatus.FILLED
    order.updated_ms = order.fill_ms = now
    account.record_fill(Fill(
        trade_id=trade_id, order_id=order.id, client_id=order.client_id, symbol=order.symbol,
        kind=order.kind, side=order.side, qty=qty, price=price, fee=fee,
        fee_asset=order.fee_asset, maker=maker, time_ms=now, realized_pnl=pnl,
        wallet=order.wallet))
    if order.wallet != SPOT_WALLET:
        if not order.liquidation:
            lending.close_if_flat(account, now, order.wallet, inst, price)
        lending.sweep_if_flat(account, now, order.wallet)

