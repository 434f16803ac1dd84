"""Binance spot margin (`/sapi/v1/margin/*`): cross and isolated accounts, borrow and
repay, margin orders with `sideEffectType`, interest and liquidation records,
transfers between wallets, and the key's API restrictions.

Over the venue-neutral model in `ctsd.sim.lending`: the cross account is the
account's `margin` wallet (3x, Binance's MARGIN_1), each isolated pair an
`isolated:<symbol>` wallet (5x) opened by its first transfer, borrow or order; a
borrow pays its first hour at once (`ON_BORROW`), then every hour of the path clock
(`PERIODIC`); at a margin level of 1.1 the wallet is liquidated. Shapes and codes
are Binance's: -3006 over the borrow limit, -3041 a repay beyond the free balance,
-3015 beyond the debt, -3020 a transfer out that would leave the level under 2,
-11001 an isolated pair that is not marginable, -2015 a key without `enableMargin`.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import binance_account, lending
from ctsd.sim import binance_wire as render
from ctsd.sim.accounts import (
    SPOT_WALLET,
    Account,
    Holding,
    Order,
    Permission,
    Rejection,
    RejectKind,
)
from ctsd.sim.loans import LoanEntry, LoanKind, MarginTerms
from ctsd.sim.market import Instrument
from ctsd.sim.wire import VenueError, fixed

if TYPE_CHECKING:
    from ctsd.sim.binance import BinanceSim
    from ctsd.sim.binance_api import Call

CROSS = "margin"
CROSS_TERMS = MarginTerms(max_leverage=Decimal(3), liquidation_level=Decimal("1.1"),
                          charge_on_borrow=True)
ISOLATED_TERMS = MarginTerms(max_leverage=Decimal(5), liquidation_level=Decimal("1.1"),
                             charge_on_borrow=True)
TRANSFER_OUT_LEVEL = Decimal(2)
"""Binance lets funds out of a margin account only while its level stays at 2 or more."""
NO_DEBT_LEVEL = Decimal(999)
"""What Binance prints as the margin level of an account that owes nothing."""
SIDE_EFFECTS = {"NO_SIDE_EFFECT": (False, False), "MARGIN_BUY": (True, False),
                "AUTO_REPAY": (False, True), "AUTO_BORROW_REPAY": (True, True)}
"""`sideEffectType` → (borrows what it lacks, what it brings in repays)."""
HISTORY_WINDOW_MS = 7 * 86_400_000
LISTEN_TOKEN_KIND = "binance-margin"
"""The `StreamTokens` kind of a margin listenToken (its scope: the wallet it streams)."""
LISTEN_TOKEN_VALIDITY_MS = 86_400_000
FUTURES = "umfuture"
"""Stands for the USDⓈ-M futures wallet (`Account.derivatives`) in transfers."""
TRANSFER_TYPES = {
    "MAIN_MARGIN": (SPOT_WALLET, CROSS), "MARGIN_MAIN": (CROSS, SPOT_WALLET),
    "MAIN_ISOLATED_MARGIN": (SPOT_WALLET, "ISOLATED"),
    "ISOLATED_MARGIN_MAIN": ("ISOLATED", SPOT_WALLET),
    "MARGIN_ISOLATEDMARGIN": (CROSS, "ISOLATED"), "ISOLATEDMARGIN_MARGIN": ("ISOLATED", CROSS),
    "MAIN_OPTION": (SPOT_WALLET, "options"), "OPTION_MAIN": ("options", SPOT_WALLET),
    "MAIN_UMFUTURE": (SPOT_WALLET, FUTURES), "UMFUTURE_MAIN": (FUTURES, SPOT_WALLET),
}
"""The universal-transfer types simulated: (from, to); ISOLATED takes fromSymbol/toSymbol."""


def isolated_wallet(inst: Instrument) -> str:
    return f"isolated:{inst.symbol}"


def _refused(code: int, msg: str) -> VenueError:
    return render.error(400, code, msg)


class BinanceMargin:
    """The margin handlers; `state` gives the symbol maps, orders and the simulator."""

    def __init__(self, state: BinanceSim) -> None:
        self.state = state

    # --- which wallet ---------------------------------------------------------------------

    def _isolated(self, call: Call) -> bool:
        return (call.params.get("isIsolated") or "FALSE").upper() == "TRUE"

    def _wallet(self, call: Call, symbol_param: str = "symbol") -> tuple[str, Instrument | None]:
        """The cross wallet, or (`isIsolated=TRUE`) the isolated wallet of `symbol`."""
        account = call.owner()
        if not self._isolated(call):
            lending.open_wallet(account, CROSS, CROSS_TERMS)
            return CROSS, None
        inst = self._marginable(call, call.require(symbol_param))
        wallet = isolated_wallet(inst)
        lending.open_wallet(account, wallet, ISOLATED_TERMS)
        return wallet, inst

    def _marginable(self, call: Call, market_id: str) -> Instrument:
        inst = self.state.instrument(call, market_id)
        if not lending.marginable(inst):
            raise _refused(-11001, "Isolated margin account does not exist.")
        return inst

    def _asset(self, call: Call) -> str:
        asset = call.require("asset")
        if asset not in self.state.sim.market.catalog.assets:
            raise _refused(-3027, "Not a valid margin asset.")
        return asset

    def _amount(self, call: Call) -> Decimal:
        amount = call.decimal("amount")
        if amount is None or amount <= 0:
            raise render.missing("amount")
        return amount

    # --- accounts -------------------------------------------------------------------------

    async def cross_account(self, call: Call) -> Any:
        account = call.owner()
        lending.open_wallet(account, CROSS, CROSS_TERMS)
        market = self.state.sim.market
        value = lending.value(account, market, CROSS)
        btc = lending.price_of(market, "BTC") or Decimal(1)
        return {
            "created": True, "borrowEnabled": True,
            "marginLevel": fixed(value.level or NO_DEBT_LEVEL),
            "collateralMarginLevel": fixed(value.level or NO_DEBT_LEVEL),
            "totalAssetOfBtc": fixed(value.assets / btc),
            "totalLiabilityOfBtc": fixed(value.liabilities / btc),
            "totalNetAssetOfBtc": fixed(value.equity / btc),
            "TotalCollateralValueInUSDT": fixed(value.assets),
            "totalOpenOrderLossInUsdt": fixed(Decimal(0)),
            "tradeEnabled": True, "transferInEnabled": True, "transferOutEnabled": True,
            "accountType": "MARGIN_1",
            "userAssets": [_user_asset(a, h) for a, h in sorted(account.wallet(CROSS).items())],
        }

    async def isolated_account(self, call: Call) -> Any:
        account, market = call.owner(), self.state.sim.market
        wanted = {s for s in (call.params.get("symbols") or "").split(",") if s}
        btc = lending.price_of(market, "BTC") or Decimal(1)
        entries, totals = [], [Decimal(0)] * 3
        for wallet in lending.margin_wallets(account):
            if not wallet.startswith("isolated:"):
                continue
            inst = market.catalog.instruments[wallet.removeprefix("isolated:")]
            if wanted and render.market_id(inst) not in wanted:
                continue
            value = lending.value(account, market, wallet)
            totals = [totals[0] + value.assets, totals[1] + value.liabilities,
                      totals[2] + value.equity]
            entries.append(self._isolated_entry(account, inst, wallet, btc))
        return {"assets": entries, "totalAssetOfBtc": fixed(totals[0] / btc),
                "totalLiabilityOfBtc": fixed(totals[1] / btc),
                "totalNetAssetOfBtc": fixed(totals[2] / btc)}

    def _isolated_entry(self, account: Account, inst: Instrument, wallet: str,
                        btc: Decimal) -> dict[str, Any]:
        market = self.state.sim.market
        value = lending.value(account, market, wallet)
        level = value.level or NO_DEBT_LEVEL
        base, quote = account.holding(inst.base, wallet), account.holding(inst.quote, wallet)
        price = market.price(inst.symbol)

        def side(asset: str, h: Holding, of_btc: Decimal) -> dict[str, Any]:
            return _user_asset(asset, h) | {
                "borrowEnabled": True, "repayEnabled": True, "totalAsset": fixed(h.total),
                "netAssetOfBtc": fixed(h.net * of_btc / btc)}

        return {
            "baseAsset": side(inst.base, base, price), "quoteAsset": side(inst.quote, quote,
                                                                          Decimal(1)),
            "symbol": render.market_id(inst), "isolatedCreated": True, "enabled": True,
            "marginLevel": fixed(level), "marginLevelStatus": _level_status(level),
            "marginRatio": fixed(Decimal(ISOLATED_TERMS.max_leverage)),
            "indexPrice": fixed(price),
            "liquidatePrice": fixed(lending.liquidation_price(
                base, quote, ISOLATED_TERMS.liquidation_level)),
            "liquidateRate": fixed(ISOLATED_TERMS.liquidation_level), "tradeEnabled": True,
        }

    async def api_restrictions(self, call: Call) -> Any:
        spec = call.owner().spec
        perms = spec.permissions
        return {
            "ipRestrict": bool(spec.ip_whitelist), "createTime": 1_700_000_000_000,
            "enableReading": Permission.READ in perms,
            "enableSpotAndMarginTrading": Permission.TRADE in perms,
            "enableMargin": Permission.MARGIN in perms,
            "enableVanillaOptions": Permission.OPTIONS in perms,
            "enableFutures": Permission.TRADE in perms,
            "enableWithdrawals": Permission.WITHDRAW in perms,
            "enableInternalTransfer": False, "permitsUniversalTransfer": True,
            "enablePortfolioMarginTrading": False, "enableFixApiTrade": False,
            "enableFixReadOnly": False,
        }

    async def all_pairs(self, call: Call) -> Any:
        """Cross (`allPairs`) and isolated (`isolated/allPairs`) marginable pairs."""
        return [{"base": i.base, "quote": i.quote, "symbol": render.market_id(i),
                 "id": n + 351_637_150_141_315_861, "isBuyAllowed": True, "isSellAllowed": True,
                 "isMarginTrade": True, "delistTime": None}
                for n, i in enumerate(self.state.symbols[call.surface].values())
                if lending.marginable(i)]

    # --- borrowing ------------------------------------------------------------------------

    async def borrow_repay(self, call: Call) -> Any:
        kind = call.require("type").upper()
        if kind not in ("BORROW", "REPAY"):
            raise render.missing("type")
        asset, amount = self._asset(call), self._amount(call)
        wallet, _ = self._wallet(call)
        account, market = call.owner(), self.state.sim.market
        try:
            if kind == "BORROW":
                entry = lending.borrow(account, market, wallet, asset, amount)
            else:
                h = account.holding(asset, wallet)
                if amount > h.debt:
                    raise _refused(-3015, "Repayment amount has exceeded the total liability.")
                entry = lending.repay(account, market, wallet, asset, amount)
        except Rejection as exc:
            if exc.kind is RejectKind.BORROW_LIMIT:
                raise render.rejection(exc, futures=False) from exc
            raise _refused(-3041, "Balance is not enough") from exc
        return {"tranId": entry.id, "clientTag": ""}

    async def max_borrowable(self, call: Call) -> Any:
        asset = self._asset(call)
        if call.params.get("isolatedSymbol"):
            inst = self._marginable(call, call.params["isolatedSymbol"])
            wallet = isolated_wallet(inst)
            lending.open_wallet(call.owner(), wallet, ISOLATED_TERMS)
        else:
            wallet = CROSS
            lending.open_wallet(call.owner(), wallet, CROSS_TERMS)
        amount = lending.max_borrowable(call.owner(), self.state.sim.market, wallet, asset)
        return {"amount": fixed(amount), "borrowLimit": fixed(Decimal(1_000_000))}

    async def interest_history(self, call: Call) -> Any:
        """Interest charges, newest first, `size` (10, at most 100) a page from `current`."""
        account = call.owner()
        symbol = call.params.get("isolatedSymbol")
        wallet = isolated_wallet(self._marginable(call, symbol)) if symbol else CROSS
        asset = call.params.get("asset") or None
        rows = [e for e in account.loans.history(wallet, asset, frozenset({LoanKind.INTEREST}))
                if self._in_window(call, e.time_ms)]
        rows.reverse()
        page = self._page(call, rows)
        return {"rows": [_interest_row(e, symbol) for e in page], "total": len(rows)}

    async def interest_rate_history(self, call: Call) -> Any:
        """The asset's daily rate, hour by hour, newest first (rates do not move here)."""
        asset = self._asset(call)
        hour = self.state.sim.clock.now_ms() // 3_600_000 * 3_600_000
        daily = fixed(lending.daily_rate(asset))
        count = min(int(call.params.get("limit") or 20), 100)
        return [{"asset": asset, "dailyInterestRate": daily, "timestamp": hour - n * 3_600_000,
                 "vipLevel": 0} for n in range(count)]

    async def isolated_margin_data(self, call: Call) -> Any:
        """Isolated pairs' hourly borrow terms (ccxt `fetch_isolated_borrow_rates`)."""
        wanted = call.params.get("symbol")
        return [{"symbol": render.market_id(i), "leverage": str(ISOLATED_TERMS.max_leverage),
                 "data": [{"coin": a, "dailyInterest": fixed(lending.daily_rate(a)),
                           "borrowLimit": fixed(Decimal(1_000_000))}
                          for a in (i.base, i.quote)]}
                for i in self.state.symbols[call.surface].values()
                if lending.marginable(i) and wanted in (None, render.market_id(i))]

    async def force_liquidations(self, call: Call) -> Any:
        symbol = call.params.get("isolatedSymbol")
        orders = [o for o in call.owner().orders.values()
                  if o.liquidation and o.wallet != SPOT_WALLET
                  and self._in_window(call, o.updated_ms)
                  and (symbol is None or o.wallet == isolated_wallet(
                      self._marginable(call, symbol)))]
        orders.sort(key=lambda o: o.updated_ms, reverse=True)
        page = self._page(call, orders)
        catalog = self.state.sim.market.catalog.instruments
        return {"rows": [{
            "avgPrice": fixed(o.average or Decimal(0)), "executedQty": fixed(o.filled),
            "orderId": o.id, "price": fixed(o.average or Decimal(0)), "qty": fixed(o.qty),
            "side": o.side.value.upper(), "symbol": render.market_id(catalog[o.symbol]),
            "timeInForce": o.time_in_force.value, "isIsolated": o.wallet != CROSS,
            "updatedTime": o.updated_ms} for o in page], "total": len(orders)}

    def _in_window(self, call: Call, time_ms: int) -> bool:
        # the market clock: the one loans, interest and liquidations are stamped on (the
        # server clock, which signatures are checked against, may lag a stepped market)
        now = self.state.sim.market.now_ms()
        start = int(call.params.get("startTime") or now - HISTORY_WINDOW_MS)
        end = int(call.params.get("endTime") or now)
        return start <= time_ms <= end

    @staticmethod
    def _page(call: Call, rows: list[Any]) -> list[Any]:
        size = min(max(int(call.params.get("size") or 10), 1), 100)
        current = max(int(call.params.get("current") or 1), 1)
        return rows[(current - 1) * size:current * size]

    # --- user data stream (listenToken) ----------------------------------------------------

    async def new_listen_token(self, call: Call) -> Any:
        """`POST /sapi/v1/userListenToken`: a new token for the cross account's user data
        (or, `isIsolated=true`, `symbol`'s isolated account's) on the WebSocket API,
        valid `validity` ms, 24 hours by default and at most."""
        wallet, _ = self._wallet(call)
        raw = call.params.get("validity")
        validity_ms = LISTEN_TOKEN_VALIDITY_MS
        if raw:
            if not raw.isdigit() or not 0 < int(raw) <= LISTEN_TOKEN_VALIDITY_MS:
                raise _refused(-1102, "Param 'validity' must be between 1 and 86400000.")
            validity_ms = int(raw)
        token = self.state.sim.stream_tokens.listen_token(
            call.owner().api_key, LISTEN_TOKEN_KIND, wallet, validity_ms / 1000)
        return {"token": token.value,
                "expirationTime": self.state.sim.clock.now_ms() + validity_ms}

    # --- orders -----------------------------------------------------------------------

    async def new_order(self, call: Call) -> Any:
        wallet, _ = self._wallet(call)
        inst = self.state.instrument(call, call.require("symbol"))
        if not lending.marginable(inst):
            raise _refused(-3021, "Margin account are not allowed to trade this trading pair.")
        raw = (call.params.get("sideEffectType") or "NO_SIDE_EFFECT").upper()
        if raw not in SIDE_EFFECTS:
            raise render.error(400, -1102, "Mandatory parameter 'sideEffectType' was not sent, "
                                           "was empty/null, or malformed.")
        borrow, repay = SIDE_EFFECTS[raw]
        req = dataclasses.replace(binance_account.order_request(call, inst), wallet=wallet,
                                  auto_borrow=borrow, auto_repay=repay)
        try:
            order = self.state.sim.place_order(call.owner(), req, self.state.fees(call.surface))
        except Rejection as exc:
            raise render.rejection(exc, futures=False) from exc
        out = render.spot_order(order, inst, resp_type=call.params.get("newOrderRespType",
                                                                       "FULL"),
                                fills=call.owner().fills_of(order.id))
        return out | self._margin_fields(order, inst)

    @staticmethod
    def _margin_fields(order: Order, inst: Instrument) -> dict[str, Any]:
        out: dict[str, Any] = {"isIsolated": order.wallet != CROSS}
        if order.borrowed:
            out |= {"marginBuyBorrowAmount": fixed(order.borrowed),
                    "marginBuyBorrowAsset": inst.quote if order.side.value == "buy"
                    else inst.base}
        return out

    async def get_order(self, call: Call) -> Any:
        wallet, _ = self._wallet(call)
        inst, order = self.state.orders.find_order(call, wallet)
        return render.spot_order(order, inst, query=True) | {"isIsolated": wallet != CROSS}

    async def cancel_order(self, call: Call) -> Any:
        wallet, _ = self._wallet(call)
        inst, order = self.state.orders.find_order(call, wallet, cancel=True)
        try:
            self.state.sim.cancel_order(call.owner(), order)
        except Rejection as exc:
            raise render.rejection(exc, futures=False, cancel=True) from exc
        out = render.spot_order(order, inst, resp_type="RESULT", cancel=True)
        return out | {"isIsolated": wallet != CROSS}

    async def open_orders(self, call: Call) -> Any:
        wallet, _ = self._wallet(call)
        symbol = None
        if call.params.get("symbol"):
            symbol = self.state.instrument(call, call.params["symbol"]).symbol
        catalog = self.state.sim.market.catalog.instruments
        return [render.spot_order(o, catalog[o.symbol], query=True) | {
            "isIsolated": wallet != CROSS} for o in self.state.orders.open_of(call, symbol,
                                                                               wallet)]

    async def all_orders(self, call: Call) -> Any:
        wallet, _ = self._wallet(call)
        return [o | {"isIsolated": wallet != CROSS}
                for o in self.state.account.orders_of(call, wallet)]

    async def my_trades(self, call: Call) -> Any:
        wallet, _ = self._wallet(call)
        return [t | {"isIsolated": wallet != CROSS}
                for t in self.state.account.trades_of(call, wallet)]

    # --- transfers ------------------------------------------------------------------------

    async def transfer(self, call: Call) -> Any:
        """`/sapi/v1/asset/transfer` between spot, cross and isolated margin, USDⓈ-M
        futures and options."""
        names = TRANSFER_TYPES.get(call.require("type").upper())
        if names is None:
            raise render.error(400, -1102, "Mandatory parameter 'type' was not sent, was "
                                           "empty/null, or malformed.")
        asset, amount = self._asset(call), self._amount(call)
        account, market = call.owner(), self.state.sim.market
        source = self._account_wallet(call, names[0], "fromSymbol")
        target = self._account_wallet(call, names[1], "toSymbol")
        if FUTURES in (source, target):
            return self._futures_transfer(account, source, target, asset, amount)
        before = lending.value(account, market, source)
        if source != SPOT_WALLET and before.liabilities and (
                before.assets - amount * lending.price_of(market, asset)
        ) / before.liabilities < TRANSFER_OUT_LEVEL:
            raise _refused(-3020, "Transfer out amount exceeds max amount.")
        try:
            lending.transfer(account, market.now_ms(), source, target, asset, amount)
        except Rejection as exc:
            raise _refused(-5002, "You have insufficient balance.") from exc
        return {"tranId": account.loans.next_id()}

    def _account_wallet(self, call: Call, name: str, symbol_param: str) -> str:
        if name == "ISOLATED":
            inst = self._marginable(call, call.require(symbol_param))
            wallet = isolated_wallet(inst)
            lending.open_wallet(call.owner(), wallet, ISOLATED_TERMS)
            return wallet
        if name == CROSS:
            lending.open_wallet(call.owner(), CROSS, CROSS_TERMS)
        return name

    def _futures_transfer(self, account: Account, source: str, target: str, asset: str,
                          amount: Decimal) -> Any:
        if source == FUTURES:
            if account.derivatives.get(asset, Decimal(0)) < amount:
                raise _refused(-5002, "You have insufficient balance.")
            account.derivatives[asset] -= amount
            account.holding(asset, target).free += amount
        else:
            held = account.holding(asset, source)
            if held.free < amount:
                raise _refused(-5002, "You have insufficient balance.")
            held.free -= amount
            account.derivatives[asset] = account.derivatives.get(asset, Decimal(0)) + amount
        return {"tranId": account.loans.next_id()}


def _user_asset(asset: str, h: Holding) -> dict[str, Any]:
    return {"asset": asset, "borrowed": fixed(h.borrowed), "free": fixed(h.free),
            "interest": fixed(h.interest), "locked": fixed(h.locked), "netAsset": fixed(h.net)}


def _interest_row(e: LoanEntry, isolated_symbol: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "txId": e.id, "interestAccuredTime": e.time_ms, "asset": e.asset, "rawAsset": e.asset,
        "principal": fixed(e.principal), "interest": fixed(e.amount),
        "interestRate": fixed(e.rate), "type": "ON_BORROW" if e.on_borrow else "PERIODIC"}
    if isolated_symbol:
        row["isolatedSymbol"] = isolated_symbol
    return row


def _level_status(level: Decimal) -> str:
    if level >= 2:
        return "EXCESSIVE"
    if level > Decimal("1.5"):
        return "NORMAL"
    if level > Decimal("1.3"):
        return "MARGIN_CALL"
    if level > Decimal("1.1"):
        return "PRE_LIQUIDATION"
    return "FORCE_LIQUIDATION"
