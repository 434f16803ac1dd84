"""The paper spot-margin account: wallets that borrow what an order lacks, repay from what
it brings in, charge interest once a period and are liquidated at the venue's level.

Plain arithmetic, kept apart from order handling (`ctsd.engine.brokers.paper_margin`).
The rules are the venues' as the simulator implements them (`ctsd.sim.lending`,
which the daemon does not import; `bench/parity_bench.py` compares the two):

- a wallet's margin level is what it holds over what it owes (borrowed plus
  interest), both valued at the last prices in the quote asset;
- a borrow may not take the level below the terms' initial level,
  `max_leverage / (max_leverage - 1)`;
- cross margin (Binance, Bybit) borrows against one wallet, the account's; where
  each position posts its own margin (OKX, Kraken: `margin_per_order`), a position
  wallet per symbol takes it from the account first (1/leverage of the order's cost:
  a buy's of what it pays, a sell's of what it sells), borrows the rest, and empties
  back into the account once it owes and holds nothing for an order (on Kraken a
  position its fills take back to flat pays what it still owes in the base, its
  fees, out of its quote first: `close_in_quote`; on OKX a short closed whole buys
  back all it owes, interest included, grossed up by the fee: `close_by_liability`);
- interest is charged once per period of the clock on each loan (and once at the
  borrow where the venue does so), and owed until repaid, interest first;
- at or below the liquidation level (Kraken: equity at 40 % of the margin posted)
  the wallet is closed out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from ctsd.engine.margin import AMOUNT_STEP, InterestCharge, LendingTerms

ZERO = Decimal(0)
ACCOUNT = "account"
"""The wallet every order trades on cross margin, and what position wallets post from."""


@dataclass
class Loan:
    borrowed: Decimal = ZERO
    interest: Decimal = ZERO
    index: int = 0
    """The last interest period charged."""

    @property
    def debt(self) -> Decimal:
        return self.borrowed + self.interest


@dataclass
class Wallet:
    name: str
    free: dict[str, Decimal] = field(default_factory=dict)
    locked: dict[str, Decimal] = field(default_factory=dict)
    loans: dict[str, Loan] = field(default_factory=dict)
    posted: Decimal = ZERO
    """Margin moved in from the account (position wallets)."""
    size: Decimal = ZERO
    """The position's signed base size from its fills (position wallets): what a buy
    brings in less a fee taken in the base, less what a sell sells."""

    def held(self, asset: str) -> Decimal:
        return self.free.get(asset, ZERO) + self.locked.get(asset, ZERO)

    def debt(self, asset: str) -> Decimal:
        loan = self.loans.get(asset)
        return loan.debt if loan else ZERO

    def add(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, ZERO) + amount

    def assets(self) -> set[str]:
        return set(self.free) | set(self.locked) | set(self.loans)

    def value(self, prices: Mapping[str, Decimal]) -> tuple[Decimal, Decimal]:
        """(what it holds, what it owes), valued at `prices` (asset -> quote price)."""
        held = owed = ZERO
        for asset in self.assets():
            price = prices.get(asset, ZERO)
            held += self.held(asset) * price
            owed += self.debt(asset) * price
        return held, owed

    def owes(self) -> bool:
        return any(loan.debt for loan in self.loans.values())


class MarginBook:
    """The paper account's wallets, loans and interest, on one venue's terms."""

    def __init__(self, balances: Mapping[str, Decimal], terms: LendingTerms) -> None:
        self.terms = terms
        self.account = Wallet(ACCOUNT, dict(balances))
        self.wallets: dict[str, Wallet] = {}
        """Position wallets by symbol (`margin_per_order` venues)."""
        self._charges: list[InterestCharge] = []
        self._borrows = 0
        """Borrow charges so far: numbers them, alike when fills are replayed."""

    def wallet(self, symbol: str) -> Wallet:
        if not self.terms.margin_per_order:
            return self.account
        return self.wallets.setdefault(symbol, Wallet(symbol))

    def all_wallets(self) -> list[Wallet]:
        return [self.account, *self.wallets.values()]

    def take_charges(self) -> list[InterestCharge]:
        taken, self._charges = self._charges, []
        return taken

    # --- borrowing ------------------------------------------------------------------

    def borrowable(self, wallet: Wallet, asset: str, prices: Mapping[str, Decimal],
                   short: bool = False) -> Decimal:
        """`short`: a position wallet's sell, judged at the level its margin opens it at
        (`LendingTerms.opening_level`)."""
        price = prices.get(asset, ZERO)
        if not price:
            return ZERO
        held, owed = wallet.value(prices)
        init = self.terms.opening_level(short)
        room = (held - init * owed) / (init - 1)
        return max(room / price, ZERO).quantize(AMOUNT_STEP, ROUND_DOWN)

    def fund(self, wallet: Wallet, asset: str, shortfall: Decimal, price: Decimal, quote: str,
             leverage: Decimal, prices: Mapping[str, Decimal], now_ms: int,
             check: bool = True) -> str:
        """Cover what an order lacks in `wallet`: a position wallet posts its margin from
        the account first, then the rest is borrowed. Returns why not, or ""; changes
        nothing when it refuses. `check` False: a replayed fill, lent as it was then."""
        need, margin, short = shortfall, ZERO, asset != quote
        if wallet is not self.account:
            value = shortfall * price if short else shortfall
            margin = (value / leverage).quantize(AMOUNT_STEP, ROUND_UP)
            if self.account.free.get(quote, ZERO) < margin:
                return f"insufficient margin: need {margin:.8f} {quote} to post"
            if not short:
                need = shortfall - margin
        if need > 0 and check:
            if margin:  # the posted margin counts before the borrow, as it will
                wallet.add(quote, margin)
            room = self.borrowable(wallet, asset, prices, short)
            if margin:
                wallet.add(quote, -margin)
            if need > room:
                return (f"borrow limit: {asset} {need:.8f} would take the margin level below "
                        f"{self.terms.opening_level(short):.4f}")
        if margin:
            self.account.add(quote, -margin)
            wallet.add(quote, margin)
            wallet.posted += margin
        if need > 0:
            self.borrow(wallet, asset, need, now_ms)
        return ""

    def borrow(self, wallet: Wallet, asset: str, amount: Decimal, now_ms: int) -> None:
        loan = wallet.loans.setdefault(asset, Loan())
        if not loan.borrowed:
            loan.index = now_ms // self.terms.period_ms
        loan.borrowed += amount
        wallet.add(asset, amount)
        if self.terms.charge_on_borrow:
            self._borrows += 1
            self._charge(wallet, asset, loan, self.terms.charge(amount, asset), now_ms,
                         f"borrow:{self._borrows}")

    def receive(self, wallet: Wallet, asset: str, amount: Decimal) -> None:
        """Credit what a fill brings in; it repays the asset's debt first, interest first."""
        loan = wallet.loans.get(asset)
        pay = min(amount, loan.debt) if loan else ZERO
        if loan and pay > 0:
            on_interest = min(pay, loan.interest)
            loan.interest -= on_interest
            loan.borrowed -= pay - on_interest
        wallet.add(asset, amount - pay)

    def settle_debt(self, wallet: Wallet, asset: str) -> None:
        """Repay the asset's debt from what the wallet holds free of it."""
        free = max(wallet.free.get(asset, ZERO), ZERO)
        if free:
            wallet.add(asset, -free)
            self.receive(wallet, asset, free)

    def write_off(self, wallet: Wallet) -> None:
        """After a close-out: what the wallet still owes is the venue's loss, and what it
        is short of (a negative balance) too."""
        for asset, loan in wallet.loans.items():
            self.settle_debt(wallet, asset)
            loan.borrowed = loan.interest = ZERO
        for asset, amount in wallet.free.items():
            if amount < 0:
                wallet.free[asset] = ZERO
        self.sweep_if_flat(wallet)

    def repay_unused(self, wallet: Wallet, asset: str, amount: Decimal) -> None:
        """Give back what an unfilled order borrowed (as far as it is still free)."""
        loan = wallet.loans.get(asset)
        pay = min(amount, loan.borrowed if loan else ZERO, wallet.free.get(asset, ZERO))
        if loan and pay > 0:
            loan.borrowed -= pay
            wallet.add(asset, -pay)

    def buy_back(self, wallet: Wallet, base: str, fee_rate: Decimal) -> Decimal:
        """What a buy must be to repay all `wallet` owes in `base` (interest included) when
        `fee_rate` of what it buys is taken in the base: the debt less the base held,
        grossed up by the fee, rounded up to the satoshi, not to the lot (0: it owes none).
        The venue's own close of a whole short (`LendingTerms.close_by_liability`)."""
        owed = wallet.debt(base) - wallet.free.get(base, ZERO)
        if owed <= 0:
            return ZERO
        return (owed / (1 - fee_rate)).quantize(AMOUNT_STEP, ROUND_UP)

    def close_if_flat(self, wallet: Wallet, base: str, quote: str, price: Decimal) -> None:
        """A position wallet its fills took back to flat, on terms that close it so
        (`LendingTerms.close_in_quote`): what it still owes in the base is paid from the
        base it holds, then out of its quote at `price` (rounded up; unless its free
        quote cannot), so that `sweep_if_flat` empties it."""
        if wallet is self.account or wallet.size or not self.terms.close_in_quote:
            return
        self.settle_debt(wallet, base)
        loan = wallet.loans.get(base)
        rest = loan.debt if loan else ZERO
        cost = (rest * price).quantize(AMOUNT_STEP, ROUND_UP)
        if loan and rest > 0 and wallet.free.get(quote, ZERO) >= cost:
            wallet.add(quote, -cost)
            loan.borrowed = loan.interest = ZERO

    def sweep_if_flat(self, wallet: Wallet) -> None:
        """A position wallet that owes nothing and holds nothing for an order returns all
        it holds to the account."""
        if wallet is self.account or wallet.owes() or any(wallet.locked.values()):
            return
        for asset, amount in list(wallet.free.items()):
            if amount:
                self.account.add(asset, amount)
                wallet.free[asset] = ZERO
        wallet.posted = ZERO

    # --- interest and liquidation --------------------------------------------------

    def accrue(self, now_ms: int) -> None:
        """Charge every period the clock has passed on every loan, once."""
        current = now_ms // self.terms.period_ms
        for wallet in self.all_wallets():
            for asset, loan in sorted(wallet.loans.items()):
                while loan.borrowed and loan.index < current:
                    loan.index += 1
                    stamp = loan.index * self.terms.period_ms
                    self._charge(wallet, asset, loan,
                                 self.terms.charge(loan.borrowed, asset), stamp,
                                 f"period:{loan.index}")
                if not loan.borrowed:
                    loan.index = current

    def _charge(self, wallet: Wallet, asset: str, loan: Loan, amount: Decimal, at_ms: int,
                what: str) -> None:
        if amount <= 0:
            return
        loan.interest += amount
        self._charges.append(InterestCharge(f"paper:{wallet.name}:{asset}:{what}", asset,
                                            amount, at_ms))

    def due(self, wallet: Wallet, prices: Mapping[str, Decimal]) -> bool:
        """Whether the venue would liquidate `wallet` at `prices`."""
        held, owed = wallet.value(prices)
        if not owed:
            return False
        if self.terms.liquidation_margin is not None:
            return held - owed <= self.terms.liquidation_margin * wallet.posted
        return held / owed <= self.terms.liquidation_level

    def level(self, wallet: Wallet, prices: Mapping[str, Decimal]) -> Decimal | None:
        held, owed = wallet.value(prices)
        return held / owed if owed else None
