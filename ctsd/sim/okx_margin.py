"""OKX spot margin of a "Spot and futures mode" account (acctLv 2): orders on a spot
`instId` with `tdMode` cross or isolated borrow automatically and open a MARGIN
position; the account's positions, leverage, max loan and interest.

Over `ctsd.sim.lending`: each (margin mode, instrument) is a position wallet
`okx:<mode>:<symbol>`. A margin order that needs more than the wallet holds moves
1/leverage of its cost from the trading balance as margin and borrows the rest of
the quote (a buy) or the whole base it sells (a sell: "Short positions: initial
margin = open amount / leverage * open price", okx.com/help-center/6997123251341);
what the opposite order brings in repays first, and a flat position's wallet empties
back into the trading balance. The position is the wallet: long when it holds the base
and owes the quote (`posCcy` the base), short when it owes the base (`posCcy` the
quote); `liab` is what it owes (negative, as OKX prints it), `interest` what that has
cost so far, charged every hour of the path clock. At a margin ratio of 100 % (the
wallet's assets at 1.05 times its debt: a 5 % maintenance margin) it is liquidated.
"""

from __future__ import annotations

import dataclasses
from decimal import ROUND_UP, Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import lending
from ctsd.sim import okx_wire as render
from ctsd.sim.accounts import Account, Permission
from ctsd.sim.loans import LoanKind, MarginTerms
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.okx_order_wire import OrderTags
from ctsd.sim.okx_wire import OrderFailure
from ctsd.sim.ratelimit import RateRule
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.endpoints import Handler
    from ctsd.sim.okx import Call, OkxSim

MODES = ("cross", "isolated")
DEFAULT_LEVERAGE = Decimal(5)
MAX_LEVERAGE = Decimal(10)
LIQUIDATION_LEVEL = Decimal("1.05")
PREFIX = "okx:"


def wallet_name(mode: str, inst: Instrument) -> str:
    return f"{PREFIX}{mode}:{inst.symbol}"


def terms(leverage: Decimal) -> MarginTerms:
    return MarginTerms(max_leverage=leverage, liquidation_level=LIQUIDATION_LEVEL,
                       position=True)


def margin_request(account: Account, inst: Instrument, entry: dict[str, Any], tags: OrderTags,
                   req: OrderRequest) -> OrderRequest:
    """A spot order with `tdMode` cross or isolated: it trades its position wallet."""
    if tags.td_mode not in MODES:
        return req
    if not lending.marginable(inst):
        raise OrderFailure("51000", "Parameter tdMode error")
    ccy = str(entry.get("ccy") or "")
    if ccy and ccy not in (inst.base, inst.quote):
        raise OrderFailure("51000", "Parameter ccy error")
    wallet = wallet_name(tags.td_mode, inst)
    lending.open_wallet(account, wallet, terms(DEFAULT_LEVERAGE))
    leverage = account.loans.terms[wallet].max_leverage
    return dataclasses.replace(req, wallet=wallet, auto_borrow=True, auto_repay=True,
                               leverage=leverage)


class OkxMargin:
    def __init__(self, state: OkxSim) -> None:
        self.state = state

    def rows(self) -> list[tuple[str, str, Permission | None, Handler[Call], RateRule, str]]:
        """(method, path under /api/v5, permission, handler, limit, scope)."""
        read = Permission.READ
        return [
            ("POST", "trade/close-position", Permission.TRADE, self.close_position,
             RateRule(20, 2), "UID_INST"),
            ("GET", "account/max-loan", read, self.max_loan, RateRule(20, 2), "UID"),
            ("GET", "account/interest-accrued", read, self.interest_accrued, RateRule(5, 2),
             "UID"),
            ("GET", "account/interest-rate", read, self.interest_rate, RateRule(5, 2), "UID"),
        ]

    # --- positions ------------------------------------------------------------------------

    def position_rows(self, account: Account, ids: set[str]) -> list[dict[str, Any]]:
        """The account's MARGIN positions (the position wallets that hold or owe)."""
        rows = []
        for wallet in lending.margin_wallets(account):
            if not wallet.startswith(PREFIX):
                continue
            mode, symbol = wallet.removeprefix(PREFIX).split(":", 1)
            inst = self.state.sim.market.catalog.instruments[symbol]
            if ids and render.inst_id(inst) not in ids:
                continue
            held = lending.position(account, wallet)
            if held.size and lending.value(account, self.state.sim.market, wallet).liabilities:
                rows.append(self._row(account, wallet, mode, inst, held))
        return rows

    def _row(self, account: Account, wallet: str, mode: str, inst: Instrument,
             held: lending.Position) -> dict[str, Any]:
        market = self.state.sim.market
        size, entry = held.size, held.entry
        mark = market.price(inst.symbol)
        base, quote = account.holding(inst.base, wallet), account.holding(inst.quote, wallet)
        value = lending.value(account, market, wallet)
        long = size > 0
        owed = quote if long else base
        upl = size * (mark - entry)
        margin = value.equity
        maintenance = value.liabilities * (LIQUIDATION_LEVEL - 1)
        lever = account.loans.terms[wallet].max_leverage
        liq = lending.liquidation_price(base, quote, LIQUIDATION_LEVEL)
        opened = held.opening.time_ms if held.opening else 0  # this position's, not the wallet's
        return {
            "adl": "1", "availPos": plain(abs(size) if long else quote.free),
            "avgPx": plain(entry), "cTime": str(opened), "ccy": inst.quote if long else inst.base,
            "deltaBS": "", "deltaPA": "", "gammaBS": "", "gammaPA": "",
            "imr": "" if mode == "isolated" else plain(abs(size) * mark / lever),
            "instId": render.inst_id(inst), "instType": "MARGIN",
            "interest": plain(owed.interest), "idxPx": plain(mark), "last": plain(mark),
            "lever": plain(lever), "liab": plain(-owed.debt),
            "liabCcy": inst.quote if long else inst.base,
            "liqPx": plain(liq) if liq else "", "margin": plain(margin) if mode == "isolated"
            else "", "markPx": plain(mark), "mgnMode": mode,
            "mgnRatio": plain((margin / maintenance).quantize(Decimal("0.0001")))
            if maintenance else "", "mmr": plain(maintenance),
            "notionalUsd": plain(abs(size) * mark), "optVal": "",
            "pos": plain(abs(size) if long else quote.total),
            "posCcy": inst.base if long else inst.quote, "posId": str(abs(hash(wallet)) % 10**12),
            "posSide": "net", "thetaBS": "", "thetaPA": "", "tradeId": "",
            "uTime": str(market.now_ms()), "upl": plain(upl), "uplLastPx": plain(upl),
            "uplRatio": plain((upl / margin).quantize(Decimal("0.0001"))) if margin else "0",
            "vegaBS": "", "vegaPA": "", "realizedPnl": "", "pnl": "", "fee": "",
            "fundingFee": "", "liqPenalty": "0", "closeOrderAlgo": [], "bePx": "",
        }

    # --- closing -------------------------------------------------------------------------

    async def close_position(self, call: Call) -> Any:
        """`trade/close-position` of a MARGIN position: one market order in its wallet that
        leaves it owing nothing it can pay. A short buys back its whole liability (the
        base it borrowed and the interest on it) grossed up by the taker fee, which OKX
        takes out of the base a buy brings in, rounded up to the satoshi; a long sells all
        the base it holds. What the order brings in repays first, so a short's wallet is
        then flat and empties into the trading balance, where a buy of the position's size
        left the fee and the interest owed (and a MARGIN position open). Placed as
        `trade/order` places one (its limits and `sCode`s) but sized by the debt, not to
        the lot (`matching.OrderRequest.closes_position`); the answer names the
        instrument and the order's `clOrdId`, as OKX's does."""
        body = call.body if isinstance(call.body, dict) else {}
        inst = self.state.by_id.get(str(body.get("instId") or ""))
        mode = str(body.get("mgnMode") or "")
        if inst is None or inst.kind is not InstrumentKind.SPOT or not lending.marginable(inst):
            raise render.bad_param("instId")
        if mode not in MODES:
            raise render.bad_param("mgnMode")
        if str(body.get("posSide") or "net") != "net":
            raise render.bad_param("posSide")
        account, wallet = call.owner(), wallet_name(mode, inst)
        side, size = self._closing(account, inst, wallet) if wallet in \
            account.loans.terms else (None, Decimal(0))
        if side is None or size <= 0:
            raise render.error(200, "51023", "Position does not exist.")
        if body.get("autoCxl") in (True, "true"):
            for order in [o for o in account.open_orders() if o.wallet == wallet]:
                self.state.sim.cancel_order(account, order)
        entry = {"instId": render.inst_id(inst), "tdMode": mode, "side": side,
                 "ordType": "market", "sz": plain(size), "clOrdId": body.get("clOrdId"),
                 "tag": body.get("tag"), "ccy": body.get("ccy")}
        try:
            placed = self.state.orders.place_close(call, entry)
        except OrderFailure as exc:
            raise render.error(200, exc.code, exc.msg) from exc
        return render.ok([{"instId": render.inst_id(inst), "posSide": "net",
                           "clOrdId": placed["clOrdId"], "tag": placed["tag"]}])

    def _closing(self, account: Account, inst: Instrument, wallet: str,
                 ) -> tuple[str | None, Decimal]:
        """(side, size) of the order that closes the wallet's position (None: no position),
        to the satoshi: the venue's own order buys what the debt needs, not a lot more
        (which would go to the trading balance, apart from the position's wallet)."""
        base = account.holding(inst.base, wallet)
        owed = base.debt - base.free
        if owed > 0:
            taker = self.state.fees(inst.kind).taker
            return "buy", (owed / (1 - taker)).quantize(lending.AMOUNT_STEP, ROUND_UP)
        if account.holding(inst.quote, wallet).debt > 0:
            return "sell", base.free
        return None, Decimal(0)

    # --- leverage -------------------------------------------------------------------------

    def set_leverage(self, account: Account, inst: Instrument, mode: str, lever: Decimal,
                     ) -> dict[str, Any]:
        if not 1 < lever <= MAX_LEVERAGE:
            raise render.error(200, "59102", "Leverage exceeds the maximum leverage. Adjust "
                                             "leverage.")
        wallet = wallet_name(mode, inst)
        lending.open_wallet(account, wallet, terms(lever))
        account.loans.terms[wallet] = terms(lever)
        return {"lever": plain(lever), "mgnMode": mode, "instId": render.inst_id(inst),
                "posSide": "net"}

    def leverage_of(self, account: Account, inst: Instrument, mode: str) -> dict[str, Any]:
        found = account.loans.terms.get(wallet_name(mode, inst))
        lever = found.max_leverage if found else DEFAULT_LEVERAGE
        return {"ccy": "", "instId": render.inst_id(inst), "mgnMode": mode, "posSide": "net",
                "lever": plain(lever)}

    # --- loans ----------------------------------------------------------------------------

    def _spot(self, call: Call) -> Instrument:
        inst = self.state.instrument(call.require("instId"))
        if inst.kind is not InstrumentKind.SPOT or not lending.marginable(inst):
            raise render.error(200, "51000", "Parameter instId error")
        return inst

    async def max_loan(self, call: Call) -> Any:
        """What a margin order may still borrow on each side with the trading balance's
        quote as its margin: a buy (leverage - 1) times it, a sell the base worth
        leverage times it (`lending.fund_order`)."""
        inst = self._spot(call)
        mode = call.require("mgnMode")
        if mode not in MODES:
            raise render.bad_param("mgnMode")
        account, market = call.owner(), self.state.sim.market
        found = account.loans.terms.get(wallet_name(mode, inst))
        lever = found.max_leverage if found else DEFAULT_LEVERAGE
        own = account.holding(inst.quote).free
        price = market.price(inst.symbol)
        return render.ok([
            {"instId": render.inst_id(inst), "mgnMode": mode, "mgnCcy": "", "ccy": inst.quote,
             "side": "buy", "maxLoan": plain(own * (lever - 1))},
            {"instId": render.inst_id(inst), "mgnMode": mode, "mgnCcy": "", "ccy": inst.base,
             "side": "sell", "maxLoan": plain((own * lever / price).quantize(inst.step_size))},
        ])

    async def interest_accrued(self, call: Call) -> Any:
        """Hourly charges of market loans (`type` 2), newest first, `limit` 100."""
        ccy, inst_id, mode = (call.params.get(k) or None for k in ("ccy", "instId", "mgnMode"))
        rows = []
        for entry in reversed(call.owner().loans.ledger):
            if entry.kind is not LoanKind.INTEREST or not entry.wallet.startswith(PREFIX):
                continue
            wallet_mode, symbol = entry.wallet.removeprefix(PREFIX).split(":", 1)
            inst = self.state.sim.market.catalog.instruments[symbol]
            if ccy not in (None, entry.asset) or inst_id not in (None, render.inst_id(inst)) \
                    or mode not in (None, wallet_mode):
                continue
            rows.append({"ccy": entry.asset, "instId": render.inst_id(inst),
                         "interest": plain(entry.amount), "interestRate": plain(entry.rate),
                         "liab": plain(entry.principal), "mgnMode": wallet_mode,
                         "ts": str(entry.time_ms), "type": "2"})
        limit = min(max(int(call.params.get("limit") or 100), 1), 100)
        return render.ok(rows[:limit])

    async def interest_rate(self, call: Call) -> Any:
        """Each currency's hourly borrow rate."""
        ccy = call.params.get("ccy") or None
        assets = [a for a in self.state.sim.market.catalog.assets
                  if (a in lending.MARGIN_BASES or a in lending.USD_LIKE) and ccy in (None, a)]
        return render.ok([{"ccy": a, "interestRate": plain(lending.period_rate(
            terms(DEFAULT_LEVERAGE), a))} for a in assets])
