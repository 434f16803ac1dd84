"""Bybit unified-account spot margin: switch it on, set its leverage, borrow and repay,
`isLeverage=1` orders, rates and the interest history.

The unified wallet (the account's `spot` wallet) is the margin wallet
(`ctsd.sim.lending`) once `/v5/spot-margin-trade/switch-mode` turns spot margin on:
an `isLeverage=1` spot order borrows what it lacks, and every spot order's proceeds
repay the coin's loan first (a unified account nets a coin's loan against what
comes in). Loans show in the wallet (`borrowAmount`, `accruedInterest`,
`availableToBorrow`: `ctsd.sim.bybit_wallet`); interest is charged every hour of the
path clock and listed by `/v5/account/borrow-history`. Codes are Bybit's 1760xx
spot-margin ones: 176008 margin not switched on, 176029 over the borrow limit,
176015 not enough to repay, 176016 nothing to repay, 176017 more than owed, 176034
a leverage out of 2..10.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import bybit_wire as render
from ctsd.sim import lending
from ctsd.sim.accounts import SPOT_WALLET, Account, Permission, Rejection, RejectKind
from ctsd.sim.bybit_endpoints import Endpoint, UidLimit
from ctsd.sim.bybit_wire import Call
from ctsd.sim.loans import LoanKind, MarginTerms
from ctsd.sim.matching import OrderRequest
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.bybit import BybitSim

DEFAULT_LEVERAGE = Decimal(10)
LEVERAGE_RANGE = (Decimal(2), Decimal(10))
LIQUIDATION_LEVEL = Decimal("1.05")
"""Spot loans' maintenance margin is 5 % of what is owed: at assets / debt = 1.05 the
account's MM rate reaches 100 % and the loans are liquidated."""
NOT_ENABLED = (176008, "You haven't enabled Cross Margin Trading yet. To do so, please head "
                       "to the PC trading site or the Bybit app")
BORROW_PAGE_DEFAULT, BORROW_PAGE_MAX = 20, 50


def terms(leverage: Decimal) -> MarginTerms:
    return MarginTerms(max_leverage=leverage, liquidation_level=LIQUIDATION_LEVEL)


def margin_order(call: Call, account: Account, req: OrderRequest) -> OrderRequest:
    """A spot order under spot margin: `isLeverage=1` borrows, and what comes in repays."""
    enabled = SPOT_WALLET in account.loans.terms
    if call.text("isLeverage") == "1":
        if not enabled:
            raise render.error(*NOT_ENABLED, call.now_ms)
        return dataclasses.replace(req, auto_borrow=True, auto_repay=True)
    return dataclasses.replace(req, auto_repay=True) if enabled else req


class BybitMargin:
    def __init__(self, state: BybitSim) -> None:
        self.state = state

    def rows(self) -> list[Endpoint]:
        read, trade = Permission.READ, Permission.TRADE
        return [
            Endpoint("POST", "/v5/spot-margin-trade/switch-mode", self.switch_mode, trade,
                     UidLimit(5)),
            Endpoint("POST", "/v5/spot-margin-trade/set-leverage", self.set_leverage, trade,
                     UidLimit(5)),
            Endpoint("GET", "/v5/spot-margin-trade/state", self.state_of, read, UidLimit(5)),
            Endpoint("GET", "/v5/spot-margin-trade/data", self.vip_data),
            Endpoint("GET", "/v5/spot-margin-trade/interest-rate-history", self.rate_history,
                     read, UidLimit(1)),
            Endpoint("GET", "/v5/spot-margin-trade/max-borrowable", self.max_borrowable, read,
                     UidLimit(5)),
            Endpoint("POST", "/v5/account/borrow", self.borrow, trade, UidLimit(5)),
            Endpoint("POST", "/v5/account/no-convert-repay", self.repay, trade, UidLimit(5)),
            Endpoint("GET", "/v5/account/borrow-history", self.borrow_history, read,
                     UidLimit(50)),
        ]

    # --- settings -------------------------------------------------------------------------

    async def switch_mode(self, call: Call) -> Any:
        mode = call.require("spotMarginMode")
        if mode not in ("0", "1"):
            raise render.error(10001, "params error: spotMarginMode invalid", call.now_ms)
        account = call.owner()
        if mode == "1":
            lending.open_wallet(account, SPOT_WALLET, terms(DEFAULT_LEVERAGE))
        elif any(h.debt for h in account.spot.values()):
            raise render.error(176035, "Failed to close the leverage switch during "
                                       "liquidation", call.now_ms)
        else:
            account.loans.terms.pop(SPOT_WALLET, None)
        return {"spotMarginMode": mode}

    async def set_leverage(self, call: Call) -> Any:
        leverage = call.decimal("leverage")
        account = call.owner()
        if SPOT_WALLET not in account.loans.terms:
            raise render.error(*NOT_ENABLED, call.now_ms)
        if leverage is None or not LEVERAGE_RANGE[0] <= leverage <= LEVERAGE_RANGE[1]:
            raise render.error(176034, "The leverage ratio is out of range", call.now_ms)
        account.loans.terms[SPOT_WALLET] = terms(leverage)
        return {}

    async def state_of(self, call: Call) -> Any:
        account = call.owner()
        current = account.loans.terms.get(SPOT_WALLET)
        value = lending.value(account, self.state.sim.market, SPOT_WALLET)
        effective = value.liabilities / value.equity if current and value.equity > 0 else 0
        return {"spotLeverage": plain(current.max_leverage) if current else "",
                "spotMarginMode": "1" if current else "0",
                "effectiveLeverage": plain(Decimal(effective).quantize(Decimal("0.01")))}

    # --- rates ----------------------------------------------------------------------------

    def _coins(self, call: Call, name: str = "currency") -> list[str]:
        coin = call.text(name)
        assets = self.state.sim.market.catalog.assets
        if coin is not None and coin not in assets:
            raise render.error(176022, "Coins to borrow not generally available yet",
                               call.now_ms)
        return [coin] if coin else [a for a in assets if a in lending.MARGIN_BASES
                                    or a in lending.USD_LIKE]

    async def vip_data(self, call: Call) -> Any:
        """Public: each coin's hourly rate and what a No-VIP account may borrow."""
        rows = [{"borrowable": True, "collateralRatio": "0.95", "currency": c,
                 "hourlyBorrowRate": plain(_hourly(c)), "liquidationOrder": str(n + 1),
                 "marginCollateral": True, "maxBorrowingAmount": "1000000"}
                for n, c in enumerate(self._coins(call))]
        return {"vipCoinList": [{"list": rows, "vipLevel": call.text("vipLevel") or "No VIP"}]}

    async def rate_history(self, call: Call) -> Any:
        coin = call.require("currency")
        self._coins(call)
        hour = call.now_ms // 3_600_000 * 3_600_000
        return {"list": [{"timestamp": hour - n * 3_600_000, "currency": coin,
                          "hourlyBorrowRate": plain(_hourly(coin)), "vipLevel": "No VIP"}
                         for n in range(24)]}

    async def max_borrowable(self, call: Call) -> Any:
        coin = call.require("currency")
        self._coins(call)
        account = call.owner()
        if SPOT_WALLET not in account.loans.terms:
            raise render.error(*NOT_ENABLED, call.now_ms)
        amount = lending.max_borrowable(account, self.state.sim.market, SPOT_WALLET, coin)
        return {"currency": coin, "maxLoan": plain(amount)}

    # --- loans ----------------------------------------------------------------------------

    async def borrow(self, call: Call) -> Any:
        coin, amount = call.require("coin"), call.decimal("amount")
        account = call.owner()
        if SPOT_WALLET not in account.loans.terms:
            raise render.error(*NOT_ENABLED, call.now_ms)
        if amount is None or amount <= 0:
            raise render.error(10001, render.lack("amount"), call.now_ms)
        try:
            lending.borrow(account, self.state.sim.market, SPOT_WALLET, coin, amount)
        except Rejection as exc:
            raise render.error(176029, "Amount to borrow has exceeded the user's estimated "
                                       "max. amount to borrow", call.now_ms) from exc
        return {"coin": coin, "amount": plain(amount)}

    async def repay(self, call: Call) -> Any:
        coin = call.require("coin")
        account = call.owner()
        h = account.holding(coin)
        if not h.debt:
            raise render.error(176016, "No repayment required", call.now_ms)
        amount = call.decimal("amount") or min(h.debt, h.free)  # none: as much as possible
        if amount > h.debt:
            raise render.error(176017, "Repayment amount has exceeded the total liability",
                               call.now_ms)
        try:
            lending.repay(account, self.state.sim.market, SPOT_WALLET, coin, amount)
        except Rejection as exc:
            if exc.kind is RejectKind.INSUFFICIENT_FUNDS:
                raise render.error(176015, "Insufficient available balance",
                                   call.now_ms) from exc
            raise
        return {"resultStatus": "SU"}

    async def borrow_history(self, call: Call) -> Any:
        """Hourly interest charges, newest first, with the loan they were charged on."""
        coin = call.text("currency")
        start, end = call.integer("startTime", 0, 0, 2**62), call.integer("endTime", 0, 0,
                                                                          2**62)
        entries = [e for e in call.owner().loans.history(SPOT_WALLET, coin,
                                                         frozenset({LoanKind.INTEREST}))
                   if start <= e.time_ms <= (end or 2**62)]
        entries.reverse()
        limit = call.integer("limit", BORROW_PAGE_DEFAULT, 1, BORROW_PAGE_MAX)
        after = render.cursor_value(call.text("cursor"), "page")
        first = int(after) if after and after.isdigit() else 0
        page = entries[first:first + limit]
        more = first + limit < len(entries)
        return {"list": [{
            "currency": e.asset, "createdTime": e.time_ms, "borrowCost": plain(e.amount),
            "hourlyBorrowRate": plain(e.rate), "InterestBearingBorrowSize": plain(e.principal),
            "costExemption": "0", "borrowAmount": plain(e.principal), "unrealisedLoss": "0",
            "freeBorrowedAmount": "0"} for e in page],
            "nextPageCursor": render.cursor("page", str(first + limit)) if more else ""}


def _hourly(coin: str) -> Decimal:
    return lending.period_rate(terms(DEFAULT_LEVERAGE), coin)
