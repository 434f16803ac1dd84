"""Borrowing in margin wallets: borrow, repay, interest on the path clock, what a wallet
is worth and its margin level.

Venue-neutral. A margin wallet is one of the account's wallets (`Account.wallet`)
with `MarginTerms` (`ctsd.sim.loans`); each venue picks which:

- Binance: the cross wallet `margin` and one `isolated:<symbol>` wallet per pair,
  funded by transfers from spot; orders borrow and repay by `sideEffectType`.
- Bybit: the unified wallet itself (`spot`): an `isLeverage=1` order borrows what it
  lacks and what it brings in repays first.
- OKX and Kraken: a position wallet per instrument (and OKX margin mode). An order
  that borrows first moves `1/leverage` of it from the spot wallet as margin; the
  wallet's holdings and debt are the position (long: base held, quote owed; short:
  base owed, quote held), and a flat wallet is emptied back into spot. An order for
  more than the position closes it, settles it and opens the rest (`ctsd.sim.reversal`).

A wallet's margin level is assets over liabilities (borrowed + interest), both at
the last price in the quote asset; a borrow may not take it below the terms'
initial level and at the liquidation level the wallet is liquidated
(`ctsd.sim.margin_liquidation`). Interest is charged once per period of the path
clock (server clock + `advance`), like funding: each holding remembers the last
period it paid, so every period is charged exactly once whatever the requests.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal

from ctsd.sim.accounts import (
    SPOT_WALLET,
    Account,
    Fill,
    Holding,
    Order,
    Rejection,
    RejectKind,
    Side,
)
from ctsd.sim.loans import LoanEntry, LoanKind, MarginTerms
from ctsd.sim.market import Instrument, InstrumentKind, Market

_ZERO = Decimal(0)
AMOUNT_STEP = Decimal("0.00000001")
DAY_MS = 86_400_000
DAILY_RATES = {"USDT": Decimal("0.0002"), "USDC": Decimal("0.0002"),
               "BTC": Decimal("0.00004"), "ETH": Decimal("0.00006")}
"""Daily interest rates of the majors (about Binance's VIP 0); other assets are seeded."""
USD_LIKE = frozenset({"USDT", "USDC", "USD"})
MARGIN_BASES = frozenset({"BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "TRX", "AVAX",
                          "DOT", "LINK", "LTC"})
"""The pairs every venue lends on: the majors of the catalog."""


def marginable(inst: Instrument) -> bool:
    return inst.kind is InstrumentKind.SPOT and inst.base in MARGIN_BASES


def daily_rate(asset: str) -> Decimal:
    """The asset's daily borrow rate: the table's, else a stable one in 0.01 %..0.05 %."""
    known = DAILY_RATES.get(asset)
    if known is not None:
        return known
    digest = hashlib.blake2b(f"borrow:{asset}".encode(), digest_size=4).digest()
    return Decimal(100 + int.from_bytes(digest, "big") % 401) / Decimal(1_000_000)


def period_rate(terms: MarginTerms, asset: str) -> Decimal:
    if terms.period_rate is not None:
        return terms.period_rate
    return (daily_rate(asset) * terms.period_ms / DAY_MS).quantize(Decimal("1e-12"))


def price_of(market: Market, asset: str) -> Decimal:
    """The asset's price in the catalog's quote (1 for dollars, 0 if it has no pair)."""
    if asset in USD_LIKE or asset == market.catalog.quote:
        return Decimal(1)
    inst = market.catalog.get(f"{asset}/{market.catalog.quote}")
    return market.price(inst.symbol) if inst is not None else _ZERO


@dataclass(frozen=True, slots=True)
class WalletValue:
    assets: Decimal
    liabilities: Decimal
    """Borrowed plus interest, at the last price."""

    @property
    def equity(self) -> Decimal:
        return self.assets - self.liabilities

    @property
    def level(self) -> Decimal | None:
        """Assets over liabilities (None while nothing is owed)."""
        return self.assets / self.liabilities if self.liabilities else None


def value(account: Account, market: Market, wallet: str) -> WalletValue:
    assets = liabilities = _ZERO
    for asset, h in account.wallet(wallet).items():
        price = price_of(market, asset)
        assets += h.total * price
        liabilities += h.debt * price
    return WalletValue(assets, liabilities)


def terms_of(account: Account, wallet: str) -> MarginTerms:
    terms = account.loans.terms.get(wallet)
    if terms is None:
        raise Rejection(RejectKind.BAD_PARAMETER, f"{wallet} is not a margin wallet")
    return terms


def open_wallet(account: Account, wallet: str, terms: MarginTerms) -> dict[str, Holding]:
    """Make `wallet` a margin wallet with `terms` (kept if it already is one)."""
    account.loans.terms.setdefault(wallet, terms)
    return account.wallet(wallet)


def margin_wallets(account: Account) -> list[str]:
    return [w for w in account.loans.terms if w in account.wallets]


def max_borrowable(account: Account, market: Market, wallet: str, asset: str,
                   *, posting: Decimal = _ZERO, alone: bool = False,
                   short: bool = False) -> Decimal:
    """How much more of `asset` the wallet may borrow before its level reaches the
    terms' initial level; `posting`: a value (in the quote) about to be moved in as
    margin, counted as if it were there. `alone`: the borrow is judged on the posting
    only, as a position of its own (what an order opens past the position it closes:
    `ctsd.sim.reversal`). `short`: a position wallet's sell, judged at the level its
    margin opens it at (`MarginTerms.opening_level`)."""
    terms = terms_of(account, wallet)
    price = price_of(market, asset)
    if not price:
        return _ZERO
    v = WalletValue(_ZERO, _ZERO) if alone else value(account, market, wallet)
    init = terms.opening_level(short)
    room = (v.assets + posting - init * v.liabilities) / (init - 1)
    return max(room / price, _ZERO).quantize(AMOUNT_STEP, rounding="ROUND_DOWN")


def liquidation_price(base: Holding, quote: Holding, level: Decimal) -> Decimal:
    """The base price at which a wallet of one pair reaches margin level `level`:
    (base_held * P + quote_held) / (base_owed * P + quote_owed) = level (0: never)."""
    denominator = base.total - level * base.debt
    if not denominator:
        return _ZERO
    return max((level * quote.debt - quote.total) / denominator, _ZERO)


@dataclass(frozen=True, slots=True)
class Position:
    """A position wallet's position, from its fills since it was last flat."""

    size: Decimal
    """Signed base size (short below 0)."""
    entry: Decimal
    """Average entry price."""
    opening: Fill | None
    """The fill that opened it (None while flat)."""
    fee: Decimal
    """Its own trading fees, in the quote: of the fills that opened and grew it (of a
    fill that flipped the position, the share that opened this one), in proportion to
    what remains open; none of an earlier position's."""


_FLAT = Position(_ZERO, _ZERO, None, _ZERO)
_WALKS = "lending.positions"


class _Walks:
    """Every margin wallet's position as of the account's first `seen` fills. Fills are
    only ever appended, so a look walks the new ones only: a walk over all of them at
    every order and fill made a long run quadratic (2.8 ms an order after 2,000 fills)."""

    def __init__(self) -> None:
        self.seen = 0
        self.positions: dict[str, Position] = {}


def position(account: Account, wallet: str) -> Position:
    """The position of a position wallet (OKX margin, Kraken) from its fills since it was
    last flat: what the venues report as the position. Walked in fill order, so a close
    and the next opening are told apart whatever their timestamps (`_step`)."""
    walks = account.extras.get(_WALKS)
    if not isinstance(walks, _Walks):
        walks = account.extras[_WALKS] = _Walks()
    for f in account.fills[walks.seen:]:
        if f.wallet != SPOT_WALLET:
            walks.positions[f.wallet] = _step(walks.positions.get(f.wallet, _FLAT), f)
    walks.seen = len(account.fills)
    return walks.positions.get(wallet, _FLAT)


def _step(held: Position, f: Fill) -> Position:
    """`held` after fill `f`: what the fill brings in (a buy less its fee, where that is
    taken in the base) grows or reduces it; through flat, the rest opens the other way at
    the fill's price with the rest's share of the fill's fee (`ctsd.sim.reversal` splits
    the fill's funds at the same point)."""
    size, entry, opening, fee = held.size, held.entry, held.opening, held.fee
    quote = f.symbol.split("/")[1]
    base_fee = f.fee if f.fee_asset != quote else _ZERO
    fill_fee = f.fee if f.fee_asset == quote else f.fee * f.price
    signed = f.qty - base_fee if f.side is Side.BUY else -f.qty
    if not size or (size > 0) == (signed > 0):
        return Position(size + signed, (size * entry + signed * f.price) / (size + signed),
                        opening if size else f, fee + fill_fee)
    after = size + signed
    if not after:
        return _FLAT
    if (after > 0) != (size > 0):
        return Position(after, f.price, f, fill_fee * abs(after) / abs(signed))
    return Position(after, entry, opening, fee * after / size)


def loan_charges(account: Account, wallet: str, asset: str) -> list[LoanEntry]:
    """Interest charged on the wallet's loan of `asset` since that loan was last clear
    (nothing borrowed): the charges of the position that owes it (a long owes the quote,
    a short the base), its opening fee and rollovers, none of an earlier position's.

    Cut by ledger order, never by time: a position closed and the next one opened in the
    same millisecond (or with the wall clock stepped back between them) share or invert
    their stamps, and a cut by `time_ms` counted the closed position's charges into the
    new one's `net`."""
    charges: list[LoanEntry] = []
    for entry in account.loans.history(wallet, asset):
        if entry.kind is LoanKind.INTEREST:
            charges.append(entry)
        elif not entry.principal:
            charges = []
    return charges


def posted_margin(account: Account, wallet: str) -> Decimal:
    """What the account moved into a position wallet as margin since it was last flat, or
    since a flip settled the position it closed (`ctsd.sim.reversal.settle`): the
    current position's and its open orders', never a closed position's."""
    return account.loans.posted.get(wallet, _ZERO)


# --- moving money ----------------------------------------------------------------------


def record(account: Account, now: int, wallet: str, asset: str, kind: LoanKind,
            amount: Decimal, *, rate: Decimal = _ZERO, on_borrow: bool = False,
            interest_part: Decimal = _ZERO) -> LoanEntry:
    principal = account.holding(asset, wallet).borrowed
    entry = LoanEntry(account.loans.next_id(), now, wallet, asset, kind, amount, principal,
                      rate, on_borrow, interest_part)
    account.loans.ledger.append(entry)
    return entry


def borrow(account: Account, market: Market, wallet: str, asset: str, amount: Decimal,
           *, check: bool = True) -> LoanEntry:
    """Borrow `amount` of `asset` into the wallet's free balance."""
    terms = terms_of(account, wallet)
    if amount <= 0:
        raise Rejection(RejectKind.BAD_PARAMETER, "amount")
    if check and amount > max_borrowable(account, market, wallet, asset):
        raise Rejection(RejectKind.BORROW_LIMIT, f"{asset} {amount}")
    h = account.holding(asset, wallet)
    now = market.now_ms()
    if not h.borrowed:
        h.interest_index = interest_index(market, terms)
    h.borrowed += amount
    h.free += amount
    entry = record(account, now, wallet, asset, LoanKind.BORROW, amount)
    if terms.charge_on_borrow:
        _charge(account, wallet, asset, h, period_rate(terms, asset), now, on_borrow=True,
                on=amount)
    return entry


def repay(account: Account, market: Market, wallet: str, asset: str,
          amount: Decimal) -> LoanEntry:
    """Repay `amount` from the wallet's free balance: interest first, then principal."""
    h = account.holding(asset, wallet)
    if amount <= 0 or amount > h.debt:
        raise Rejection(RejectKind.BAD_PARAMETER, f"repay {amount} of {h.debt}")
    if amount > h.free:
        raise Rejection(RejectKind.INSUFFICIENT_FUNDS, f"{asset} {h.free} < {amount}")
    h.free -= amount
    return _pay_down(account, market.now_ms(), wallet, asset, h, amount)


def _pay_down(account: Account, now: int, wallet: str, asset: str, h: Holding,
              amount: Decimal) -> LoanEntry:
    on_interest = min(amount, h.interest)
    h.interest -= on_interest
    h.borrowed -= amount - on_interest
    return record(account, now, wallet, asset, LoanKind.REPAY, amount,
                   interest_part=on_interest)


def receive(account: Account, now: int, wallet: str, asset: str, amount: Decimal,
            *, auto_repay: bool) -> None:
    """Credit what a fill brings in; with `auto_repay` it pays the asset's debt first."""
    h = account.holding(asset, wallet)
    pay = min(amount, h.debt) if auto_repay else _ZERO
    if pay > 0:
        _pay_down(account, now, wallet, asset, h, pay)
    h.free += amount - pay


def transfer(account: Account, now: int, source: str, target: str, asset: str,
             amount: Decimal) -> None:
    """Move free funds between two wallets of the account."""
    src = account.holding(asset, source)
    if amount <= 0 or src.free < amount:
        raise Rejection(RejectKind.INSUFFICIENT_FUNDS, f"{asset} {src.free} < {amount}")
    src.free -= amount
    account.holding(asset, target).free += amount
    if source != SPOT_WALLET or target != SPOT_WALLET:
        margin_wallet = target if source == SPOT_WALLET else source
        record(account, now, margin_wallet, asset, LoanKind.TRANSFER,
                amount if target == margin_wallet else -amount)


def fund_order(account: Account, market: Market, order: Order, asset: str,
               shortfall: Decimal, price: Decimal, quote: str, *, alone: bool = False,
               ) -> None:
    """What an auto-borrowing order lacks in its wallet: a position wallet first takes
    its margin from spot (in the quote), then the rest is borrowed. The margin is
    1/leverage of the order's cost on either side (`MarginTerms.position`): a buy
    borrows the rest of what it pays, a sell the whole base it sells.

    All or nothing: both limits are checked before anything moves, so a refused order
    leaves the account as it was (a margin posted for a borrow then refused stayed in
    the position wallet, and the venue drifted from what its account showed). `alone`:
    the borrow is checked as a position of its own (`max_borrowable`), for the part of
    an order that opens past the position it closes."""
    terms = terms_of(account, order.wallet)
    now = market.now_ms()
    need, margin = shortfall, _ZERO
    if terms.position:
        leverage = order.leverage or terms.max_leverage
        value = shortfall if asset == quote else shortfall * price
        margin = (value / leverage).quantize(AMOUNT_STEP, rounding="ROUND_UP")
        spot = account.holding(quote, SPOT_WALLET)
        if spot.free < margin:
            raise Rejection(RejectKind.INSUFFICIENT_FUNDS, f"margin {margin}")
        if asset == quote:
            need = shortfall - margin
    if need > 0 and need > max_borrowable(account, market, order.wallet, asset,
                                          posting=margin * price_of(market, quote),
                                          alone=alone, short=asset != quote):
        raise Rejection(RejectKind.BORROW_LIMIT, f"{asset} {need}")
    if margin:
        transfer(account, now, SPOT_WALLET, order.wallet, quote, margin)
        account.loans.posted[order.wallet] = posted_margin(account, order.wallet) + margin
        order.margin += margin
    if need > 0:
        borrow(account, market, order.wallet, asset, need, check=False)
        order.borrowed += need


def close_if_flat(account: Account, now: int, wallet: str, inst: Instrument,
                  price: Decimal) -> None:
    """A position wallet whose fills took its position back to flat, on terms that
    close it so (`MarginTerms.close_in_quote`): what it still owes in the base is paid
    from the base it holds, then out of its quote at `price` (rounded up; a wallet
    whose free quote cannot pay it keeps it), so that `sweep_if_flat` empties it.
    Before, a Kraken short bought back by its volume kept owing its fees in the base,
    and its margin and profit stayed in the wallet as the next position's."""
    terms = account.loans.terms.get(wallet)
    if terms is None or not terms.close_in_quote or position(account, wallet).size:
        return
    base = account.holding(inst.base, wallet)
    pay = min(base.free, base.debt)
    if pay > 0:
        base.free -= pay
        _pay_down(account, now, wallet, inst.base, base, pay)
    rest, quote = base.debt, account.holding(inst.quote, wallet)
    cost = (rest * price).quantize(AMOUNT_STEP, rounding="ROUND_UP")
    if rest > 0 and quote.free >= cost:
        quote.free -= cost
        _pay_down(account, now, wallet, inst.base, base, rest)


def sweep_if_flat(account: Account, now: int, wallet: str) -> None:
    """A position wallet that owes nothing and holds nothing for an order goes back to
    spot, whole (its remaining base included: a long closed by a spot sell)."""
    terms = account.loans.terms.get(wallet)
    holdings = account.wallets.get(wallet)
    if terms is None or not terms.position or holdings is None:
        return
    if any(h.debt or h.locked for h in holdings.values()):
        return
    for asset, h in list(holdings.items()):
        if h.free > 0:
            transfer(account, now, wallet, SPOT_WALLET, asset, h.free)
    account.loans.posted.pop(wallet, None)


# --- interest --------------------------------------------------------------------------


def interest_index(market: Market, terms: MarginTerms) -> int:
    return market.path_ms() // terms.period_ms


def _charge(account: Account, wallet: str, asset: str, h: Holding, rate: Decimal, at: int,
            *, on_borrow: bool = False, on: Decimal | None = None) -> None:
    amount = ((h.borrowed if on is None else on) * rate).quantize(AMOUNT_STEP,
                                                                   rounding="ROUND_UP")
    if amount <= 0:
        return
    h.interest += amount
    record(account, at, wallet, asset, LoanKind.INTEREST, amount, rate=rate,
            on_borrow=on_borrow)


def accrue(account: Account, market: Market) -> int:
    """Charge every period the path clock has passed on every loan, once; returns how
    many charges were made. A period crossed by `advance` is stamped at that advance."""
    charged = 0
    now = market.now_ms()
    for wallet in margin_wallets(account):
        terms = account.loans.terms[wallet]
        current = interest_index(market, terms)
        for asset, h in account.wallets[wallet].items():
            while h.borrowed and h.interest_index < current:
                h.interest_index += 1
                stamp = h.interest_index * terms.period_ms - market.path_offset_ms
                _charge(account, wallet, asset, h, period_rate(terms, asset),
                        min(max(stamp, _last_time(account)), now))
                charged += 1
            if not h.borrowed:
                h.interest_index = current
    return charged


def _last_time(account: Account) -> int:
    return account.loans.ledger[-1].time_ms if account.loans.ledger else 0

