"""The perpetual-futures account model: settings, margin, positions, liquidation prices.

Venue-neutral like `ctsd.sim.matching`, which calls `assign`, `order_margin` and
`apply_fill` for every linear order; the venue modules call the setters
(`set_leverage`, `set_margin_mode`, `set_position_mode`) and read `views` and
`balances` to render their answers. How the numbers are made:

- Margin mode and leverage are those of the position slot the order trades (see
  `ctsd.sim.positions`); an order's initial margin is `increase * price / leverage`
  plus its taker fee, and a position may not pass the notional cap of its
  leverage's tier (`ctsd.sim.tiers`).
- Cross positions are margined by the wallet: their initial margin is
  `notional(mark) / leverage`. An isolated position owns `isolated_margin`, taken
  from the wallet's available part at entry (`qty * price / leverage`) and given
  back pro rata as it closes. Available = wallet + cross unrealized PnL - cross
  initial margin - isolated margins - open-order margin.
- Maintenance margin is `notional(mark) * mmr - deduction` of the position's tier.
  The liquidation price is Binance's formula, used for every venue: the mark at
  which the position's margin balance (isolated: its own margin; cross: the cross
  wallet with the other cross positions held at their current value) falls to its
  maintenance margin.
- Fees are charged to the wallet in the settle asset; realized PnL, fees and
  funding are booked in the account's ledger, which every venue's income/bill
  history renders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from ctsd.sim import tiers
from ctsd.sim.accounts import (
    Account,
    DerivativesBalance,
    Order,
    Rejection,
    RejectKind,
    Side,
)
from ctsd.sim.events import UpdateReason, publish_account
from ctsd.sim.funding import funding_index
from ctsd.sim.market import Instrument, InstrumentKind, Market
from ctsd.sim.positions import (
    LedgerEntry,
    LedgerKind,
    MarginMode,
    Position,
    PositionSide,
)

_ZERO = Decimal(0)
PNL_STEP = Decimal("0.00000001")


class Refusal(StrEnum):
    """Why a setting was not changed; each venue answers with its own code."""

    POSITION_EXISTS = "position_exists"
    OPEN_ORDERS = "open_orders"
    LEVERAGE_INVALID = "leverage_invalid"
    """Below 1 or above the instrument's maximum."""
    LEVERAGE_TOO_HIGH = "leverage_too_high"
    """The open position is larger than the new leverage's tier allows."""
    INSUFFICIENT_MARGIN = "insufficient_margin"
    """A lower leverage needs more margin than is available."""


class SettingRefused(Exception):
    def __init__(self, refusal: Refusal, detail: str = "") -> None:
        super().__init__(f"{refusal.value}: {detail}" if detail else refusal.value)
        self.refusal = refusal
        self.detail = detail


# --- settings ----------------------------------------------------------------------


def _linear_orders(account: Account, symbol: str | None = None) -> list[Order]:
    return [o for o in account.open_orders(symbol) if o.kind is InstrumentKind.LINEAR]


def _check_idle(account: Account, symbol: str | None) -> None:
    """Positions, then open orders: modes cannot change under either."""
    if account.perp.open_positions(symbol):
        raise SettingRefused(Refusal.POSITION_EXISTS, symbol or "")
    if _linear_orders(account, symbol):
        raise SettingRefused(Refusal.OPEN_ORDERS, symbol or "")


def _busy(account: Account, symbol: str) -> bool:
    return bool(account.perp.open_positions(symbol) or _linear_orders(account, symbol))


def set_position_mode(
    account: Account, hedge: bool, symbol: str | None = None, *, skip_busy: bool = False,
) -> bool:
    """Hedge (`True`) or one-way for one symbol, or for the account; False if nothing changes.

    Account-wide, a symbol with a position or an open order refuses the change,
    unless `skip_busy` (Bybit's per-coin switch), which leaves those symbols as they
    are and switches the rest. No venue's stream reports a position-mode switch, so
    nothing is published.
    """
    settings = account.perp.settings
    if symbol is not None:
        if settings.is_hedge(symbol) == hedge:
            return False
        _check_idle(account, symbol)
        settings.hedge_by_symbol[symbol] = hedge
    else:
        if settings.hedge == hedge and all(v == hedge for v in settings.hedge_by_symbol.values()):
            return False
        if skip_busy:
            pinned = {s: settings.is_hedge(s) for s in _busy_symbols(account)}
            settings.hedge, settings.hedge_by_symbol = hedge, pinned
            return True
        _check_idle(account, None)
        settings.hedge, settings.hedge_by_symbol = hedge, {}
    return True


def _busy_symbols(account: Account) -> set[str]:
    return {p.symbol for p in account.perp.open_positions()} | {
        o.symbol for o in _linear_orders(account)}


def set_margin_mode(account: Account, mode: MarginMode, symbol: str | None = None) -> bool:
    """Cross or isolated for one symbol (Binance) or the account (Bybit); False if unchanged."""
    settings = account.perp.settings
    if symbol is not None:
        if settings.margin_for(symbol) is mode:
            return False
        _check_idle(account, symbol)
        settings.margin_by_symbol[symbol] = mode
    else:
        if settings.margin_mode is mode and all(
                m is mode for m in settings.margin_by_symbol.values()):
            return False
        _check_idle(account, None)
        settings.margin_mode, settings.margin_by_symbol = mode, {}
    publish_account(account, UpdateReason.MARGIN_TYPE, positions=(symbol,) if symbol else ())
    return True


def set_leverage(
    account: Account, market: Market, inst: Instrument, leverage: Decimal,
    mode: MarginMode | None = None, side: PositionSide | None = None,
) -> bool:
    """Leverage for the symbol (or one margin mode / hedge side of it); False if unchanged.

    The open positions it covers take the new leverage at once: refused if one is
    larger than the new tier allows, or if a lower leverage needs more margin than
    is available (an isolated position draws the difference from the wallet).
    """
    if not 1 <= leverage <= tiers.max_leverage(inst):
        raise SettingRefused(Refusal.LEVERAGE_INVALID, str(leverage))
    settings = account.perp.settings
    covered = [p for p in account.perp.open_positions(inst.symbol)
               if mode in (None, p.margin_mode) and side in (None, p.side)]
    if settings.leverage_for(inst.symbol, mode, side) == leverage and all(
            p.leverage == leverage for p in covered):
        return False
    mark = market.price(inst.symbol)
    extra = _ZERO
    for pos in covered:
        notional = pos.size * mark
        if notional > tiers.max_notional(inst, leverage):
            raise SettingRefused(Refusal.LEVERAGE_TOO_HIGH, f"{notional}")
        extra += max(notional / leverage - _margin_held(pos, mark), _ZERO)
    if extra > available(account, market, inst.quote):
        raise SettingRefused(Refusal.INSUFFICIENT_MARGIN, f"{extra}")
    settings.set_leverage(inst.symbol, leverage, mode, side)
    for pos in covered:
        if pos.margin_mode is MarginMode.ISOLATED:
            pos.isolated_margin = max(pos.isolated_margin,
                                      (pos.size * mark / leverage).quantize(PNL_STEP))
        pos.leverage = leverage
    publish_account(account, UpdateReason.LEVERAGE, positions=(inst.symbol,))
    return True


def order_leverage(account: Account, order: Order) -> Decimal:
    """The leverage an order trades at: its position's, else what the slot would open at."""
    pos = account.perp.positions.get((order.symbol, order.position_side, order.margin_mode))
    return pos.leverage if pos else account.perp.settings.leverage_for(
        order.symbol, order.margin_mode, order.position_side)


def _margin_held(pos: Position, mark: Decimal) -> Decimal:
    if pos.margin_mode is MarginMode.ISOLATED:
        return pos.isolated_margin
    return pos.size * mark / pos.leverage


# --- orders and fills --------------------------------------------------------------------


def assign(account: Account, order: Order, side: PositionSide | None,
           mode: MarginMode | None) -> None:
    """Resolve which position slot a new order trades, from the account's modes."""
    settings = account.perp.settings
    slot = side or PositionSide.BOTH
    if settings.is_hedge(order.symbol) != (slot is not PositionSide.BOTH):
        raise Rejection(RejectKind.POSITION_SIDE, slot.value)
    order.position_side = slot
    order.margin_mode = mode or settings.margin_for(order.symbol)


def _slot_change(pos: Position | None, order: Order, qty: Decimal) -> tuple[Decimal, Decimal]:
    """(signed size before, signed size after) the order fills `qty`."""
    before = pos.qty if pos else _ZERO
    after = before + (qty if order.side is Side.BUY else -qty)
    if (order.position_side is PositionSide.LONG and after < 0) or (
            order.position_side is PositionSide.SHORT and after > 0):
        raise Rejection(RejectKind.REDUCE_ONLY, "closes more than the position holds")
    return before, after


def order_margin(
    account: Account, market: Market, inst: Instrument, order: Order, price: Decimal,
) -> Decimal:
    """The margin a new order holds; raises if it may not be placed."""
    pos = account.perp.positions.get((inst.symbol, order.position_side, order.margin_mode))
    before, after = _slot_change(pos, order, order.qty)
    increase = max(abs(after) - abs(before), _ZERO)
    if order.reduce_only and not _reduces(before, after):
        raise Rejection(RejectKind.REDUCE_ONLY, "reduce-only order would open a position")
    leverage = pos.leverage if pos else account.perp.settings.leverage_for(
        inst.symbol, order.margin_mode, order.position_side)
    if increase and abs(after) * price > tiers.max_notional(inst, leverage):
        raise Rejection(RejectKind.POSITION_LIMIT, f"notional above the {leverage}x tier cap")
    margin = increase * price / leverage + order.qty * price * order.fees.taker
    if margin > available(account, market, inst.quote):
        raise Rejection(RejectKind.INSUFFICIENT_FUNDS, f"margin {margin}")
    return margin


def fill_allowed(account: Account, order: Order, qty: Decimal) -> bool:
    """Whether a resting order may still fill: a reduce-only (or hedge-mode closing)
    order whose position shrank meanwhile expires instead of opening one."""
    pos = account.perp.positions.get((order.symbol, order.position_side, order.margin_mode))
    try:
        before, after = _slot_change(pos, order, qty)
    except Rejection:
        return False
    return not order.reduce_only or _reduces(before, after)


def _reduces(before: Decimal, after: Decimal) -> bool:
    """Whether going from `before` to `after` only closes (never grows nor flips)."""
    return before != 0 and abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))


def apply_fill(
    account: Account, market: Market, inst: Instrument, order: Order, qty: Decimal,
    price: Decimal, fee: Decimal, now: int, *, maker: bool = False, trade_id: int | None = None,
) -> LedgerEntry:
    """Move the position by a fill, book PnL and fee, and record the ledger entry (under the
    fill's `trade_id`, as the own-fill endpoints list it)."""
    perp = account.perp
    key = (inst.symbol, order.position_side, order.margin_mode)
    pos = perp.positions.get(key)
    if pos is None:
        pos = Position(
            inst.symbol, order.position_side, order.margin_mode,
            perp.settings.leverage_for(inst.symbol, order.margin_mode, order.position_side),
            perp.next_id(), inst.quote,
            funded_index=funding_index(market), taker_fee=order.fees.taker, created_ms=now)
        perp.positions[key] = pos
    before, after = _slot_change(pos, order, qty)
    pnl, opens = _move(pos, before, after, price)
    wallet = account.derivatives.get(inst.quote, _ZERO) + pnl - fee
    account.derivatives[inst.quote] = wallet
    pos.closed_pnl += pnl
    pos.fees += fee
    pos.updated_ms = now
    pos.last_trade_id = order.id
    perp.cum_realized[inst.symbol] = perp.cum_realized.get(inst.symbol, _ZERO) + pnl - fee
    entry = LedgerEntry(
        perp.next_id(), now, LedgerKind.LIQUIDATION if order.liquidation else LedgerKind.TRADE,
        inst.quote, inst.symbol, pnl - fee, wallet, pnl=pnl, fee=fee,
        rate=order.fees.maker if maker else order.fees.taker, qty=qty, price=price,
        side=order.side.value, position_side=pos.side, margin_mode=pos.margin_mode,
        position_after=after, opens=opens, order_id=order.id, client_id=order.client_id,
        trade_id=order.id if trade_id is None else trade_id, maker=maker)
    perp.record(entry)
    if after:
        perp.closed.pop(key, None)
    else:
        perp.closed[key] = perp.positions.pop(key)
    return entry


def _move(pos: Position, before: Decimal, after: Decimal, price: Decimal) -> tuple[Decimal, bool]:
    """Update size, entry and isolated margin; returns (realized PnL, whether it opened)."""
    pos.qty = after
    if before == 0 or (before > 0) == (after > before):  # opens or adds
        pos.entry_price = (before * pos.entry_price + (after - before) * price) / after
        if pos.margin_mode is MarginMode.ISOLATED:
            pos.isolated_margin += (abs(after - before) * price / pos.leverage).quantize(PNL_STEP)
        return _ZERO, True
    closing = min(abs(before), abs(after - before))
    direction = 1 if before > 0 else -1
    pnl = (closing * (price - pos.entry_price) * direction).quantize(PNL_STEP)
    if pos.margin_mode is MarginMode.ISOLATED:
        pos.isolated_margin -= (pos.isolated_margin * closing / abs(before)).quantize(PNL_STEP)
    flipped = after != 0 and (after > 0) != (before > 0)
    if flipped:
        pos.entry_price = price
        if pos.margin_mode is MarginMode.ISOLATED:
            pos.isolated_margin = (abs(after) * price / pos.leverage).quantize(PNL_STEP)
    elif after == 0:
        pos.entry_price = _ZERO
        pos.isolated_margin = _ZERO
    return pnl, flipped


# --- what the venues report ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionView:
    """A position valued at the current mark price, in the terms every venue reports."""

    position: Position
    inst: Instrument
    mark: Decimal
    tier: tiers.Tier
    liquidation_price: Decimal | None

    @property
    def notional(self) -> Decimal:
        return self.position.size * self.mark

    @property
    def signed_notional(self) -> Decimal:
        return self.position.qty * self.mark

    @property
    def unrealized_pnl(self) -> Decimal:
        return self.position.qty * (self.mark - self.position.entry_price)

    @property
    def initial_margin(self) -> Decimal:
        """`notional / leverage` at the mark price (what Binance and Bybit call IM)."""
        return (self.notional / self.position.leverage).quantize(PNL_STEP)

    @property
    def maintenance(self) -> Decimal:
        return self.tier.maintenance(self.notional)

    @property
    def margin_balance(self) -> Decimal:
        """Isolated: its margin plus unrealized PnL (cross: see `cross_equity`)."""
        return self.position.isolated_margin + self.unrealized_pnl

    @property
    def isolated(self) -> bool:
        return self.position.margin_mode is MarginMode.ISOLATED


def cross_wallet(account: Account, asset: str) -> Decimal:
    """The wallet minus what isolated positions hold."""
    held = sum((p.isolated_margin for p in account.perp.positions.values()
                if p.settle == asset and p.margin_mode is MarginMode.ISOLATED), _ZERO)
    return account.derivatives.get(asset, _ZERO) - held


def views(account: Account, market: Market, symbol: str | None = None,
          settle: str | None = None) -> list[PositionView]:
    """Every open position (of a symbol or settle asset), sorted by symbol and side."""
    positions = sorted(account.perp.open_positions(), key=lambda p: (p.symbol, p.side.value))
    marks = {p.symbol: market.price(p.symbol) for p in positions}
    insts = market.catalog.instruments
    base = [(p, insts[p.symbol], marks[p.symbol]) for p in positions]
    valued = [(p, inst, mark, tiers.tier_for(inst, p.size * mark)) for p, inst, mark in base]
    result = []
    for p, inst, mark, tier in valued:
        if (symbol is not None and p.symbol != symbol) or (settle is not None
                                                           and p.settle != settle):
            continue
        others = [(o, m, t) for o, _, m, t in valued if o is not p and o.settle == p.settle
                  and o.margin_mode is MarginMode.CROSS]
        result.append(PositionView(p, inst, mark, tier,
                                   _liquidation_price(account, p, inst, tier, others)))
    return result


def _liquidation_price(
    account: Account, pos: Position, inst: Instrument, tier: tiers.Tier,
    others: Iterable[tuple[Position, Decimal, tiers.Tier]],
) -> Decimal | None:
    """Binance's formula: LP = (WB - TMM + UPNL + cum - s*q*E) / (q*mmr - s*q)."""
    size, s = pos.size, pos.direction
    if pos.margin_mode is MarginMode.ISOLATED:
        wallet = pos.isolated_margin
    else:
        wallet = cross_wallet(account, pos.settle)
        for other, mark, other_tier in others:
            wallet += other.qty * (mark - other.entry_price)
            wallet -= other_tier.maintenance(other.size * mark)
    if not size:
        return None
    price = None
    for candidate in (tier, *tiers.tiers(inst)):  # the tier the price itself falls in
        denominator = size * candidate.mmr - s * size
        if not denominator:
            continue
        price = (wallet + candidate.deduction - s * size * pos.entry_price) / denominator
        if price > 0 and tiers.tier_for(inst, size * price) == candidate:
            break
    if price is None or price <= 0:
        return None
    return price.quantize(inst.tick_size, rounding=ROUND_HALF_UP)


def balances(account: Account, market: Market) -> list[DerivativesBalance]:
    """Wallet, unrealized PnL and margins per settle asset, marked at the current price."""
    by_asset: dict[str, list[PositionView]] = {}
    for view in views(account, market):
        by_asset.setdefault(view.position.settle, []).append(view)
    order_margin_by_asset: dict[str, Decimal] = {}
    for order in _linear_orders(account):
        order_margin_by_asset[order.fee_asset] = order_margin_by_asset.get(
            order.fee_asset, _ZERO) + order.locked
    result = []
    for asset in sorted(set(account.derivatives) | set(by_asset)):
        held = by_asset.get(asset, [])
        upnl = sum((v.unrealized_pnl for v in held), _ZERO)
        iso_upnl = sum((v.unrealized_pnl for v in held if v.isolated), _ZERO)
        margin = sum((v.position.isolated_margin if v.isolated else v.initial_margin
                      for v in held), _ZERO)
        maintenance = sum((v.maintenance for v in held), _ZERO)
        result.append(DerivativesBalance(
            asset, account.derivatives.get(asset, _ZERO), upnl, margin,
            order_margin_by_asset.get(asset, _ZERO), iso_upnl, maintenance))
    return result


def available(account: Account, market: Market, asset: str) -> Decimal:
    for bal in balances(account, market):
        if bal.asset == asset:
            return bal.available
    return _ZERO
