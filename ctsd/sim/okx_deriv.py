"""OKX v5 SWAP beyond orders: positions, leverage, position mode, position tiers, mark
price, funding and the bills that record trades, funding and liquidations.

Handlers for `ctsd.sim.okx` over `ctsd.sim.derivatives`/`funding`/`positions`.
OKX's own semantics: the margin mode is chosen per order (`tdMode`), leverage is set
per instrument and margin mode (`mgnMode`; per `posSide` too for isolated positions
in long/short mode), and the position mode is the account's (`posMode`, refused with
59000 while positions or orders are open). Setting a value already set answers
code 0: OKX has no "not modified" code. Sizes are contracts of `ctVal`; position
tiers are published in contracts at the instrument's reference price (the price
the catalog lists it at), while margins are computed on notional at the mark.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import derivatives, tiers
from ctsd.sim import okx_wire as render
from ctsd.sim.accounts import Account
from ctsd.sim.derivatives import PositionView, Refusal, SettingRefused
from ctsd.sim.endpoints import Handler
from ctsd.sim.funding import rate_history
from ctsd.sim.market import Instrument, InstrumentKind, Market
from ctsd.sim.positions import LedgerEntry, LedgerKind, MarginMode, PositionSide
from ctsd.sim.wire import VenueError, plain

if TYPE_CHECKING:
    from ctsd.sim.okx import Call
    from ctsd.sim.state import Simulator

_ZERO = Decimal(0)
MODES = {"cross": MarginMode.CROSS, "isolated": MarginMode.ISOLATED}
POS_SIDES = {"net": PositionSide.BOTH, "long": PositionSide.LONG, "short": PositionSide.SHORT}
POS_MODES = {"long_short_mode": True, "net_mode": False}
BILLS_MAX = 100
FUNDING_HISTORY_MAX = 400
BILLS_WINDOW_MS = {"bills": 7 * 86_400_000, "bills-archive": 92 * 86_400_000}
_LEVERAGE_REFUSALS = {
    Refusal.LEVERAGE_INVALID: ("59102", "Leverage exceeds the maximum leverage. Please adjust "
                                        "the leverage"),
    Refusal.LEVERAGE_TOO_HIGH: ("59106", "The max available margin corresponding to your order "
                                         "tier is lower. Please adjust your margin and place a "
                                         "new order"),
    Refusal.INSUFFICIENT_MARGIN: ("59108", "Low leverage and insufficient margin, please "
                                           "adjust the leverage"),
}
DERIVATIVES_LIMITS: tuple[tuple[str, int, int, str], ...] = (
    ("GET account/positions", 10, 2, "UID"), ("GET account/leverage-info", 20, 2, "UID"),
    ("POST account/set-leverage", 20, 2, "UID"), ("POST account/set-position-mode", 5, 2, "UID"),
    ("GET account/bills", 5, 1, "UID"), ("GET account/bills-archive", 5, 2, "UID"),
    ("GET public/position-tiers", 10, 2, "IP"), ("GET public/mark-price", 10, 2, "IP"),
    ("GET public/funding-rate", 20, 2, "IP"), ("GET public/funding-rate-history", 10, 2, "IP"),
    ("GET market/mark-price-candles", 20, 2, "IP"),
    ("GET market/history-mark-price-candles", 10, 2, "IP"),
)
"""OKX's published limits of these endpoints: (bucket, requests, seconds, `okx.Scope` name)."""
SETTINGS_BUSY = ("59000", "Your settings failed as you have positions or open orders")


def pos_mode(account: Account) -> str:
    return "long_short_mode" if account.perp.settings.hedge else "net_mode"


class SwapDerivatives:
    """The handlers; `by_id` maps OKX instrument ids to instruments."""

    def __init__(self, sim: Simulator, by_id: dict[str, Instrument],
                 candles: Handler[Call]) -> None:
        self.sim = sim
        self.swaps = {k: v for k, v in by_id.items() if v.kind is InstrumentKind.LINEAR}
        self._candles = candles
        """The venue's `market/candles` handler: mark candles are the last price's."""

    # --- settings -------------------------------------------------------------------

    async def set_position_mode(self, call: Call) -> Any:
        body = _body(call)
        raw = str(body.get("posMode") or "")
        if not raw:
            raise render.empty_param("posMode")
        if raw not in POS_MODES:
            raise render.bad_param("posMode")
        try:
            derivatives.set_position_mode(call.owner(), POS_MODES[raw])
        except SettingRefused as exc:
            raise render.error(200, *SETTINGS_BUSY) from exc
        return render.ok([{"posMode": raw}])

    async def set_leverage(self, call: Call) -> Any:
        body = _body(call)
        inst = self._swap(str(body.get("instId") or ""))
        mode = MODES.get(str(body.get("mgnMode") or ""))
        if mode is None:
            raise render.empty_param("mgnMode") if not body.get("mgnMode") else (
                render.bad_param("mgnMode"))
        lever = lever_param(body)
        account = call.owner()
        raw_side = str(body.get("posSide") or "")
        side = None
        if mode is MarginMode.ISOLATED and account.perp.settings.is_hedge(inst.symbol):
            if raw_side not in ("long", "short"):
                raise render.bad_param("posSide")
            side = POS_SIDES[raw_side]
        try:
            derivatives.set_leverage(account, self.sim.market, inst, lever, mode, side)
        except SettingRefused as exc:
            raise render.error(200, *_LEVERAGE_REFUSALS[exc.refusal]) from exc
        return render.ok([{"lever": plain(lever), "mgnMode": mode.value,
                           "instId": render.inst_id(inst), "posSide": raw_side or "net"}])

    async def leverage_info(self, call: Call) -> Any:
        mode = MODES.get(call.require("mgnMode"))
        if mode is None:
            raise render.bad_param("mgnMode")
        ids = [i for i in call.require("instId").split(",") if i]
        if len(ids) > 20:
            raise render.bad_param("instId")
        settings = call.owner().perp.settings
        rows = []
        for inst_id in ids:
            inst = self._swap(inst_id)
            sides = ((PositionSide.LONG, "long"), (PositionSide.SHORT, "short")) if (
                settings.is_hedge(inst.symbol)) else ((PositionSide.BOTH, "net"),)
            rows += [{"ccy": "", "instId": inst_id, "mgnMode": mode.value, "posSide": name,
                      "lever": plain(settings.leverage_for(inst.symbol, mode, side))}
                     for side, name in sides]
        return render.ok(rows)

    # --- positions ---------------------------------------------------------------------

    def swap_rows(self, account: Account, ids: set[str]) -> list[dict[str, Any]]:
        """The swap positions `account/positions` lists (`ctsd.sim.okx` gathers the kinds)."""
        return [position_row(account, self.sim.market, v)
                for v in derivatives.views(account, self.sim.market)
                if not ids or render.inst_id(v.inst) in ids]

    # --- public ------------------------------------------------------------------------

    async def position_tiers(self, call: Call) -> Any:
        inst_type = call.require("instType")
        if inst_type not in ("MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise render.bad_param("instType")
        if call.require("tdMode") not in MODES:
            raise render.bad_param("tdMode")
        family = call.params.get("instFamily") or call.params.get("uly")
        if inst_type != "SWAP":
            return render.ok([])
        if not family:
            raise render.empty_param("instFamily")
        inst = self.swaps.get(f"{family}-SWAP")
        if inst is None:
            raise render.error(200, "51001", "Instrument ID does not exist.")
        wanted = call.params.get("tier")
        reference = self.sim.market.catalog.initial_prices[inst.pair]
        per_contract = reference * render.contract_value(inst)
        return render.ok([{
            "baseMaxLoan": "", "imr": plain(t.imr), "instFamily": family, "instId": "",
            "maxLever": plain(t.max_leverage),
            "maxSz": plain((t.cap / per_contract).to_integral_value()),
            "minSz": plain((t.floor / per_contract).to_integral_value()),
            "mmr": plain(t.mmr), "optMgnFactor": "0", "quoteMaxLoan": "", "tier": str(t.number),
            "uly": family,
        } for t in tiers.tiers(inst) if wanted in (None, "", str(t.number))])

    async def mark_price_candles(self, call: Call) -> Any:
        """The mark price is the last price here: its candles as `[ts, o, h, l, c, confirm]`."""
        answer = await self._candles(call)
        answer["data"] = [[*row[:5], row[8]] for row in answer["data"]]
        return answer

    async def mark_price(self, call: Call) -> Any:
        inst_type = call.require("instType")
        if inst_type not in ("MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise render.bad_param("instType")
        inst_id, family = call.params.get("instId"), call.params.get("instFamily")
        now = str(self.sim.clock.now_ms())
        chosen = [i for k, i in self.swaps.items() if inst_type == "SWAP"
                  and inst_id in (None, "", k) and family in (None, "", f"{i.base}-{i.quote}")]
        return render.ok([{"instType": "SWAP", "instId": render.inst_id(i),
                           "markPx": plain(self.sim.market.price(i.symbol)), "ts": now}
                          for i in chosen])

    async def funding_rate(self, call: Call) -> Any:
        inst_id = call.require("instId")
        chosen = list(self.swaps.values()) if inst_id == "ANY" else [self._swap(inst_id)]
        schedule = self.sim.funding
        k = schedule.next_index()
        now = str(self.sim.clock.now_ms())
        return render.ok([{
            "fundingRate": plain(schedule.rate(i.pair, k)),
            "fundingTime": str(schedule.stamp(k)), "formulaType": "withRate",
            "impactValue": "20000", "instId": render.inst_id(i), "instType": "SWAP",
            "interestRate": "0.0001", "maxFundingRate": "0.0075", "method": "current_period",
            "minFundingRate": "-0.0075", "nextFundingRate": "",
            "nextFundingTime": str(schedule.stamp(k + 1)), "premium": "0",
            "settFundingRate": plain(schedule.rate(i.pair, k - 1)), "settState": "settled",
            "ts": now,
        } for i in chosen])

    async def funding_rate_history(self, call: Call) -> Any:
        inst = self._swap(call.require("instId"))
        before, after = _int(call, "before"), _int(call, "after")
        limit = min(max(_int(call, "limit") or FUNDING_HISTORY_MAX, 1), FUNDING_HISTORY_MAX)
        rows = rate_history(self.sim.funding, inst.pair,
                            None if before is None else before + 1,
                            None if after is None else after - 1, limit, newest_first=True)
        return render.ok([{
            "fundingRate": plain(rate), "fundingTime": str(stamp), "formulaType": "withRate",
            "instId": render.inst_id(inst), "instType": "SWAP", "method": "current_period",
            "realizedRate": plain(rate),
        } for _, stamp, rate in rows])

    # --- bills --------------------------------------------------------------------------

    async def bills(self, call: Call) -> Any:
        return self._bills(call, "bills")

    async def bills_archive(self, call: Call) -> Any:
        return self._bills(call, "bills-archive")

    def _bills(self, call: Call, which: str) -> Any:
        params = call.params
        if params.get("instType") not in (None, "", "SWAP") or params.get("ctType") not in (
                None, "", "linear"):
            return render.ok([])
        inst_id, ccy = params.get("instId") or None, params.get("ccy") or None
        mode, bill_type = params.get("mgnMode") or None, params.get("type") or None
        sub_type = params.get("subType") or None
        now = self.sim.clock.now_ms()
        begin = max(_int(call, "begin") or 0, now - BILLS_WINDOW_MS[which])
        end = _int(call, "end")
        after, before = _int(call, "after"), _int(call, "before")
        limit = min(max(_int(call, "limit") or BILLS_MAX, 1), BILLS_MAX)
        account = call.owner()
        rows = []
        for entry in account.perp.history(start_ms=begin, end_ms=end,
                                          limit=len(account.perp.ledger), newest_first=True):
            row = self._bill(entry)
            if (inst_id in (None, row["instId"]) and ccy in (None, row["ccy"])
                    and mode in (None, row["mgnMode"]) and bill_type in (None, row["type"])
                    and sub_type in (None, row["subType"])
                    and (after is None or entry.id < after)
                    and (before is None or entry.id > before)):
                rows.append(row)
        return render.ok(rows[:limit])

    def _bill(self, e: LedgerEntry) -> dict[str, Any]:
        inst = self.sim.market.catalog.instruments[e.symbol]
        bill_type, sub_type = _bill_kind(e)
        contracts = render.size(inst, e.qty)
        trade = e.kind in (LedgerKind.TRADE, LedgerKind.LIQUIDATION)
        return {
            "bal": plain(e.balance_after), "balChg": plain(e.amount), "billId": str(e.id),
            "ccy": e.asset, "clOrdId": e.client_id if trade else "",
            "execType": ("M" if e.maker else "T") if trade else "",
            "fee": plain(-e.fee), "fillFwdPx": "", "fillIdxPx": plain(e.price) if trade else "",
            "fillMarkPx": plain(e.price) if trade else "", "fillMarkVol": "", "fillPxUsd": "",
            "fillPxVol": "", "fillTime": str(e.time_ms) if trade else "", "from": "",
            "instId": render.inst_id(inst), "instType": "SWAP", "interest": "0",
            "mgnMode": e.margin_mode.value, "notes": "",
            "ordId": str(e.order_id) if e.order_id is not None else "",
            "pnl": plain(e.pnl if e.kind is not LedgerKind.FUNDING else e.funding),
            "posBal": "0", "posBalChg": "0", "px": plain(e.price), "subType": sub_type,
            "sz": contracts, "tag": "", "to": "",
            "tradeId": str(e.trade_id) if e.trade_id is not None else "",
            "ts": str(e.time_ms), "type": bill_type,
        }

    # --- helpers -------------------------------------------------------------------------

    def _swap(self, inst_id: str) -> Instrument:
        if not inst_id:
            raise render.empty_param("instId")
        inst = self.swaps.get(inst_id)
        if inst is None:
            raise render.error(200, "51001", "Instrument ID does not exist.")
        return inst


def position_row(account: Account, market: Market, view: PositionView) -> dict[str, Any]:
    """A position as `account/positions` lists it (the `positions` channel pushes the same)."""
    pos, inst = view.position, view.inst
    isolated = view.isolated
    imr = view.initial_margin
    margin = pos.isolated_margin
    held = margin if isolated else imr
    upl = view.unrealized_pnl
    cross = [v for v in derivatives.views(account, market, settle=pos.settle)
             if not v.isolated]
    equity = margin + upl if isolated else derivatives.cross_wallet(
        account, pos.settle) + sum((v.unrealized_pnl for v in cross), _ZERO)
    maintenance = view.maintenance if isolated else sum(
        (v.maintenance for v in cross), _ZERO)
    fee = pos.taker_fee * 2 * pos.direction
    pos_side = {PositionSide.BOTH: "net", PositionSide.LONG: "long",
                PositionSide.SHORT: "short"}[pos.side]
    contracts = render.size(inst, pos.size if pos.side is not PositionSide.BOTH else pos.qty)
    mark = plain(view.mark)
    return {
        "adl": "1", "availPos": "", "avgPx": plain(pos.entry_price), "baseBal": "",
        "baseBorrowed": "", "baseInterest": "",
        "bePx": plain((pos.entry_price * (1 + fee)).quantize(inst.tick_size)),
        "bizRefId": "", "bizRefType": "", "cTime": str(pos.created_ms), "ccy": pos.settle,
        "clSpotInUseAmt": "", "closeOrderAlgo": [], "deltaBS": "", "deltaPA": "",
        "fee": plain(-pos.fees), "fundingFee": plain(pos.funding), "gammaBS": "",
        "gammaPA": "", "idxPx": mark, "imr": "" if isolated else plain(imr),
        "instId": render.inst_id(inst), "instType": "SWAP", "interest": "", "last": mark,
        "lever": plain(pos.leverage), "liab": "", "liabCcy": "", "liqPenalty": "0",
        "liqPx": plain(view.liquidation_price) if view.liquidation_price else "",
        "margin": plain(margin) if isolated else "", "markPx": mark,
        "maxSpotInUseAmt": "", "mgnMode": pos.margin_mode.value,
        "mgnRatio": _ratio(equity, maintenance),
        "mmr": plain(view.maintenance), "nonSettleAvgPx": "",
        "notionalUsd": plain(view.notional), "optVal": "", "pendingCloseOrdLiabVal": "",
        "pnl": plain(pos.closed_pnl), "pos": contracts, "posCcy": "",
        "posId": str(pos.id), "posSide": pos_side, "quoteBal": "", "quoteBorrowed": "",
        "quoteInterest": "", "realizedPnl": plain(pos.realized_pnl), "settledPnl": "",
        "spotInUseAmt": "", "spotInUseCcy": "", "thetaBS": "", "thetaPA": "",
        "tradeId": str(pos.last_trade_id), "uTime": str(pos.updated_ms), "upl": plain(upl),
        "uplLastPx": plain(upl), "uplRatio": _ratio(upl, held) or "0",
        "uplRatioLastPx": _ratio(upl, held) or "0", "usdPx": "", "vegaBS": "",
        "vegaPA": "",
    }


def _ratio(part: Decimal, whole: Decimal) -> str:
    return plain((part / whole).quantize(Decimal("0.0000000001"))) if whole else ""


def _bill_kind(e: LedgerEntry) -> tuple[str, str]:
    """(type, subType) of OKX's bills for a ledger entry."""
    if e.kind is LedgerKind.FUNDING:
        return "8", "173" if e.amount < 0 else "174"
    if e.kind is LedgerKind.LIQUIDATION_FEE:
        return "5", "110" if e.amount > 0 else "111"
    long_side = e.position_side is PositionSide.LONG or (
        e.position_side is PositionSide.BOTH and e.side == "sell")
    if e.kind is LedgerKind.LIQUIDATION:
        return "5", "104" if long_side else "105"
    if e.position_side is PositionSide.BOTH:
        return "2", "1" if e.side == "buy" else "2"
    opening = e.opens
    return "2", {(True, True): "3", (False, True): "4", (True, False): "5",
                 (False, False): "6"}[(e.position_side is PositionSide.LONG, opening)]


def _body(call: Call) -> dict[str, Any]:
    if not isinstance(call.body, dict):
        raise VenueError(400, {"code": "50002", "data": [], "msg": "JSON syntax error"})
    return call.body


def lever_param(body: dict[str, Any]) -> Decimal:
    raw = str(body.get("lever") or "")
    if not raw:
        raise render.empty_param("lever")
    try:
        lever = Decimal(raw)
    except ArithmeticError as exc:
        raise render.bad_param("lever") from exc
    if not lever.is_finite() or lever <= 0:
        raise render.bad_param("lever")
    return lever


def _int(call: Call, name: str) -> int | None:
    return render.int_param(call.params, name)


def order_sides(account: Account, inst: Instrument, raw_pos_side: str,
                raw_td_mode: str) -> tuple[PositionSide | None, MarginMode | None]:
    """`posSide` and `tdMode` of a swap order as the core's position slot and mode."""
    side = POS_SIDES.get(raw_pos_side or "net")
    hedge = account.perp.settings.is_hedge(inst.symbol)
    if side is None or hedge == (side is PositionSide.BOTH):
        raise render.OrderFailure("51000", "Parameter posSide error")
    return (None if side is PositionSide.BOTH else side), MODES.get(raw_td_mode)
