"""Option orders, positions and cash settlement, venue-neutral.

Limit orders only (as Binance's European options): a buy at or above the ask, or a
sell at or below the bid, fills at once as a taker; otherwise it rests and fills at
its limit as a maker the first time the account is touched with the book through
it. The book is the model's mark (`ctsd.sim.options`) with a 2 % spread each side,
on the contract's tick. Amounts are in units of the underlying (a venue's contract
size converts); premiums and fees are paid in the contract's settle currency from
the wallet the venue trades options from (Binance's `options` wallet, the unified
balance on Bybit and OKX).

A buy holds its premium and fee while open; a sell that opens or grows a short holds
15 % of the underlying's value (in the settle currency) as margin, kept by the short
position until it is closed or settles. At expiry, reached on the path clock, every
position is settled in cash at the underlying's path price: a long is paid its
intrinsic value, a short pays it out of its margin; open orders on the contract
expire. Each settlement is kept for the venues' exercise and bill histories.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ctsd.sim import accounts
from ctsd.sim.market import InstrumentKind, Market
from ctsd.sim.options import OptionChain, OptionContract

_ZERO = Decimal(0)
SPREAD = Decimal("0.02")
SHORT_MARGIN = Decimal("0.15")
AMOUNT_STEP = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """How a venue trades a contract family: tick, step, minimum and wallet."""

    tick: Decimal
    step: Decimal
    """Quantity step in units of the underlying."""
    min_qty: Decimal
    wallet: str


_TICKS = {"BTC": Decimal(5), "ETH": Decimal("0.1")}


def tick_and_step_spec(contract: OptionContract, wallet: str) -> OptionSpec:
    """Binance's and Bybit's options as the simulator lists them, alike: a price tick of 5
    (BTC) or 0.1 (others), a quantity step and minimum of 0.01; only the wallet differs."""
    step = Decimal("0.01")
    return OptionSpec(_TICKS.get(contract.underlying, Decimal("0.1")), step, step, wallet)


@dataclass(slots=True)
class OptionPosition:
    contract: OptionContract
    qty: Decimal = _ZERO
    """Signed units of the underlying: long > 0."""
    entry: Decimal = _ZERO
    margin: Decimal = _ZERO
    """Held from the wallet while short (in its `locked` balance)."""
    fees: Decimal = _ZERO
    realized: Decimal = _ZERO
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True, slots=True)
class Settlement:
    id: int
    time_ms: int
    contract: OptionContract
    qty: Decimal
    """The position settled (signed)."""
    settle_price: Decimal
    """The underlying's price at expiry."""
    payout: Decimal
    """What the position received (negative: paid), in the settle currency."""


@dataclass
class OptionBook:
    """An account's option orders, fills, positions and settlements."""

    orders: dict[int, accounts.Order] = field(default_factory=dict)
    contracts: dict[str, OptionContract] = field(default_factory=dict)
    """Every contract the account has traded, by unified symbol."""
    fills: list[accounts.Fill] = field(default_factory=list)
    positions: dict[str, OptionPosition] = field(default_factory=dict)
    settlements: list[Settlement] = field(default_factory=list)
    wallets: dict[str, str] = field(default_factory=dict)
    """Symbol → the wallet its premiums and margin come from."""
    specs: dict[str, OptionSpec] = field(default_factory=dict)
    """Symbol → how its venue trades it (the tick its book is quoted on)."""
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(300_000_001))

    def next_id(self) -> int:
        return next(self._ids)

    def open_orders(self, symbol: str | None = None) -> list[accounts.Order]:
        return [o for o in self.orders.values() if o.status.is_open
                and symbol in (None, o.symbol)]

    def open_positions(self) -> list[OptionPosition]:
        return [p for p in self.positions.values() if p.qty]


def book_of(account: accounts.Account) -> OptionBook:
    found = account.extras.get("options")
    if not isinstance(found, OptionBook):
        found = account.extras["options"] = OptionBook()
    return found


def quote(chain: OptionChain, contract: OptionContract, spec: OptionSpec,
          ) -> tuple[Decimal, Decimal, Decimal]:
    """(mark, bid, ask) on the spec's tick; the bid is at least one tick."""
    value, _ = chain.value(contract)
    tick = spec.tick
    mark = max((value / tick).to_integral_value() * tick, tick)
    bid = max((value * (1 - SPREAD) / tick).to_integral_value(ROUND_FLOOR) * tick, tick)
    ask = max((value * (1 + SPREAD) / tick).to_integral_value(ROUND_CEILING) * tick, bid + tick)
    return mark, bid, ask


def _margin(chain: OptionChain, contract: OptionContract, qty: Decimal) -> Decimal:
    per_unit = SHORT_MARGIN if contract.coin_margined else chain.spot(contract) * SHORT_MARGIN
    return (qty * per_unit).quantize(AMOUNT_STEP)


def place(account: accounts.Account, market: Market, chain: OptionChain, contract: OptionContract,
          spec: OptionSpec, side: accounts.Side, qty: Decimal, price: Decimal,
          fees: accounts.FeeSchedule, order_id: int, client_id: str, *,
          post_only: bool = False) -> accounts.Order:
    """Validate, hold, and fill what crosses; the order is kept even when filled."""
    if contract.expiry_ms <= market.path_ms():
        raise accounts.Rejection(accounts.RejectKind.UNKNOWN_SYMBOL, contract.symbol)
    if qty < spec.min_qty or qty % spec.step:
        raise accounts.Rejection(accounts.RejectKind.LOT_SIZE, str(qty))
    if price <= 0 or price % spec.tick:
        raise accounts.Rejection(accounts.RejectKind.PRICE_FILTER, str(price))
    book = book_of(account)
    if any(o.client_id == client_id for o in book.orders.values()):
        raise accounts.Rejection(accounts.RejectKind.DUPLICATE_CLIENT_ID, client_id)
    _, bid, ask = quote(chain, contract, spec)
    crosses = price >= ask if side is accounts.Side.BUY else price <= bid
    if crosses and post_only:
        raise accounts.Rejection(accounts.RejectKind.WOULD_TAKE, str(price))
    now = market.now_ms()
    order = accounts.Order(id=order_id, client_id=client_id, symbol=contract.symbol,
                           kind=InstrumentKind.OPTION, side=side, type=accounts.OrderType.LIMIT,
                           qty=qty, price=price, time_in_force=accounts.TimeInForce.GTC, fees=fees,
                           created_ms=now, updated_ms=now, fee_asset=contract.settle,
                           post_only=post_only, wallet=spec.wallet)
    held = account.holding(contract.settle, spec.wallet)
    order.locked = _hold_amount(chain, contract, book, order)
    if held.free < order.locked:
        raise accounts.Rejection(accounts.RejectKind.INSUFFICIENT_FUNDS,
                                 f"{held.free} < {order.locked}")
    held.free -= order.locked
    held.locked += order.locked
    book.orders[order.id] = order
    book.contracts[contract.symbol] = contract
    book.wallets[contract.symbol] = spec.wallet
    book.specs[contract.symbol] = spec
    if crosses:
        _fill(account, book, contract, order, ask if side is accounts.Side.BUY else bid, False, now)
    return order


def _hold_amount(chain: OptionChain, contract: OptionContract, book: OptionBook,
                 order: accounts.Order) -> Decimal:
    assert order.price is not None
    if order.side is accounts.Side.BUY:
        return (order.qty * order.price * (1 + order.fees.taker)).quantize(AMOUNT_STEP)
    pos = book.positions.get(contract.symbol)
    held_long = max(pos.qty, _ZERO) if pos else _ZERO
    pending = sum((o.qty for o in book.open_orders(contract.symbol)
                   if o.side is accounts.Side.SELL), _ZERO)
    opening = max(order.qty - max(held_long - pending, _ZERO), _ZERO)
    return _margin(chain, contract, opening)


def cancel(account: accounts.Account, market: Market, order: accounts.Order) -> None:
    if not order.status.is_open:
        raise accounts.Rejection(accounts.RejectKind.ORDER_NOT_OPEN, str(order.id))
    _release(account, book_of(account), order, accounts.OrderStatus.CANCELED, market.now_ms())


def _release(account: accounts.Account, book: OptionBook, order: accounts.Order,
             status: accounts.OrderStatus, now: int) -> None:
    held = account.holding(order.fee_asset, order.wallet)
    held.locked -= order.locked
    held.free += order.locked
    order.locked = _ZERO
    order.status = status
    order.updated_ms = now


def _fill(account: accounts.Account, book: OptionBook, contract: OptionContract,
          order: accounts.Order, price: Decimal, maker: bool, now: int) -> None:
    qty = order.qty - order.filled
    premium = qty * price
    fee = (premium * (order.fees.maker if maker else order.fees.taker)).quantize(AMOUNT_STEP)
    held = account.holding(contract.settle, order.wallet)
    held.locked -= order.locked
    held.free += order.locked
    opening_margin = order.locked if order.side is accounts.Side.SELL else _ZERO
    pos = book.positions.setdefault(contract.symbol, OptionPosition(contract, created_ms=now))
    signed = qty if order.side is accounts.Side.BUY else -qty
    held.free -= fee + (premium if order.side is accounts.Side.BUY else -premium)
    _move(pos, held, signed, price, opening_margin)
    pos.fees += fee
    pos.updated_ms = now
    order.locked = _ZERO
    order.filled += qty
    order.cost += premium
    order.fee += fee
    order.status = accounts.OrderStatus.FILLED
    order.updated_ms = order.fill_ms = now
    book.fills.append(accounts.Fill(
        trade_id=book.next_id(), order_id=order.id, client_id=order.client_id,
        symbol=order.symbol, kind=order.kind, side=order.side, qty=qty, price=price, fee=fee,
        fee_asset=contract.settle, maker=maker, time_ms=now, wallet=order.wallet))


def _move(pos: OptionPosition, held: accounts.Holding, signed: Decimal, price: Decimal,
          opening_margin: Decimal) -> None:
    """Size and entry; a short that grew keeps the sell's hold as its margin, one that
    shrank gives back its share."""
    before, after = pos.qty, pos.qty + signed
    if not before or (before > 0) == (signed > 0):
        pos.entry = (before * pos.entry + signed * price) / after
    else:
        closing = min(abs(before), abs(signed))
        pos.realized += closing * (price - pos.entry) * (1 if before > 0 else -1)
        if after and (after > 0) != (before > 0):
            pos.entry = price
    pos.qty = after
    short_before, short_after = max(-before, _ZERO), max(-after, _ZERO)
    if short_after < short_before:
        freed = (pos.margin * (short_before - short_after) / short_before).quantize(AMOUNT_STEP)
        pos.margin -= freed
        held.locked -= freed
        held.free += freed
    elif short_after > short_before:
        pos.margin += opening_margin
        held.free -= opening_margin
        held.locked += opening_margin


def sync(account: accounts.Account, market: Market, chain: OptionChain) -> int:
    """Fill resting orders the book reached and settle expired contracts; returns how
    many positions settled."""
    book = account.extras.get("options")
    if not isinstance(book, OptionBook):
        return 0
    now, path_now = market.now_ms(), market.path_ms()
    for order in book.open_orders():
        contract = book.contracts[order.symbol]
        if contract.expiry_ms <= path_now:
            _release(account, book, order, accounts.OrderStatus.EXPIRED, now)
            continue
        assert order.price is not None
        # the venue's book (on its tick), not one quoted on the order's price as a tick
        _, bid, ask = quote(chain, contract, book.specs[order.symbol])
        if (order.side is accounts.Side.BUY and ask <= order.price) or (
                order.side is accounts.Side.SELL and bid >= order.price):
            _fill(account, book, contract, order, order.price, True, now)
    settled = 0
    for pos in book.open_positions():
        if pos.contract.expiry_ms <= path_now:
            _settle(account, market, chain, book, pos)
            settled += 1
    return settled


def _settle(account: accounts.Account, market: Market, chain: OptionChain, book: OptionBook,
            pos: OptionPosition) -> None:
    contract = pos.contract
    spot = chain.settlement_price(contract)
    per_unit = contract.intrinsic(spot)
    if contract.coin_margined:
        per_unit = per_unit / spot
    payout = (pos.qty * per_unit).quantize(AMOUNT_STEP)
    held = account.holding(contract.settle, book.wallets[contract.symbol])
    held.locked -= pos.margin
    held.free += pos.margin + payout
    stamp = min(max(contract.expiry_ms - market.path_offset_ms, pos.updated_ms), market.now_ms())
    book.settlements.append(Settlement(book.next_id(), stamp, contract, pos.qty, spot, payout))
    pos.realized += payout - pos.qty * pos.entry if pos.qty else _ZERO
    pos.qty = pos.margin = _ZERO
    pos.updated_ms = stamp
