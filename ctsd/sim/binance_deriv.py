"""Binance USDⓈ-M futures beyond orders: positions, leverage, margin type, position
mode, notional brackets, mark price and funding, income history.

Handlers for `ctsd.sim.binance` (which mounts them in its endpoint table) over the
venue-neutral model in `ctsd.sim.derivatives`, `ctsd.sim.funding` and
`ctsd.sim.positions`. Shapes follow Binance's documented answers: positionRisk v2
lists every symbol (both hedge sides in hedge mode) with leverage and margin type,
v3 only symbols with a position or an open order and without them; numbers print
as Binance prints them (prices and rates with 8 decimals in premiumIndex and
funding history, brackets as JSON numbers). "Already set" and refusal codes are
Binance's: -4046/-4047/-4048 (margin type), -4059/-4067/-4068 (position side),
-4028/-2027/-2028 (leverage).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import binance_wire as render
from ctsd.sim import derivatives, tiers
from ctsd.sim.accounts import Account, Order
from ctsd.sim.derivatives import PositionView, Refusal, SettingRefused
from ctsd.sim.funding import FUNDING_INTERVAL_HOURS, rate_history
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.positions import LedgerEntry, LedgerKind, MarginMode, PositionSide
from ctsd.sim.slots import Slot, symbol_slots
from ctsd.sim.wire import VenueError, fixed, plain

if TYPE_CHECKING:
    from ctsd.sim.binance_api import Call
    from ctsd.sim.state import Simulator

_ZERO = Decimal(0)
_OK = {"code": 200, "msg": "success"}
MARGIN_TYPES = {"ISOLATED": MarginMode.ISOLATED, "CROSSED": MarginMode.CROSS}
POSITION_SIDES = {"BOTH": PositionSide.BOTH, "LONG": PositionSide.LONG,
                  "SHORT": PositionSide.SHORT}
INCOME_TYPES = frozenset({"REALIZED_PNL", "COMMISSION", "FUNDING_FEE", "INSURANCE_CLEAR",
                          "TRANSFER", "WELCOME_BONUS"})
"""Every income type accepted as a filter (the simulator books the first four)."""
HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT = 100, 1000
INCOME_DEFAULT_WINDOW_MS = 7 * 86_400_000
FORCE_ORDERS_DEFAULT, FORCE_ORDERS_MAX = 50, 100

_REFUSALS: dict[str, dict[Refusal, tuple[int, str]]] = {
    "marginType": {
        Refusal.POSITION_EXISTS: (-4048, "Margin type cannot be changed if there exists "
                                         "position."),
        Refusal.OPEN_ORDERS: (-4047, "Margin type cannot be changed if there exists open "
                                     "orders."),
    },
    "positionSide": {
        Refusal.POSITION_EXISTS: (-4068, "Position side cannot be changed if there exists "
                                         "position."),
        Refusal.OPEN_ORDERS: (-4067, "Position side cannot be changed if there exists open "
                                     "orders."),
    },
    "leverage": {
        Refusal.LEVERAGE_TOO_HIGH: (-2027, "Exceeded the maximum allowable position at current "
                                           "leverage."),
        Refusal.INSUFFICIENT_MARGIN: (-2028, "Leverage is smaller than permitted: insufficient "
                                             "margin balance"),
    },
}


def _refused(endpoint: str, exc: SettingRefused, leverage: str = "") -> VenueError:
    if exc.refusal is Refusal.LEVERAGE_INVALID:
        return render.error(400, -4028, f"Leverage {leverage} is not valid")
    code, msg = _REFUSALS[endpoint][exc.refusal]
    return render.error(400, code, msg)


def _switched(endpoint: str, switch: Callable[[], bool], unchanged: tuple[int, str]) -> Any:
    """Binance's answer to a mode switch: success, the venue's refusal, or its error for a
    switch to the mode already set (`unchanged`: code and message)."""
    try:
        changed = switch()
    except SettingRefused as exc:
        raise _refused(endpoint, exc) from exc
    if not changed:
        raise render.error(400, *unchanged)
    return dict(_OK)


class FuturesDerivatives:
    """The handlers; `symbols` maps Binance ids (`BTCUSDT`) to the perpetuals."""

    def __init__(self, sim: Simulator, symbols: dict[str, Instrument]) -> None:
        self.sim = sim
        self.symbols = symbols

    # --- settings ---------------------------------------------------------------------

    async def set_leverage(self, call: Call) -> Any:
        inst = self._instrument(call.require("symbol"))
        raw = call.require("leverage")
        if not raw.isdigit():
            raise render.error(400, -1130, "Data sent for parameter 'leverage' is not valid.")
        try:
            derivatives.set_leverage(call.owner(), self.sim.market, inst, Decimal(raw))
        except SettingRefused as exc:
            raise _refused("leverage", exc, raw) from exc
        return {"leverage": int(raw), "maxNotionalValue": plain(
            tiers.max_notional(inst, Decimal(raw))), "symbol": render.market_id(inst)}

    async def set_margin_type(self, call: Call) -> Any:
        inst = self._instrument(call.require("symbol"))
        mode = MARGIN_TYPES.get(call.require("marginType").upper())
        if mode is None:
            raise render.error(400, -1130, "Data sent for parameter 'marginType' is not valid.")
        return _switched("marginType",
                         lambda: derivatives.set_margin_mode(call.owner(), mode, inst.symbol),
                         (-4046, "No need to change margin type."))

    async def position_mode(self, call: Call) -> Any:
        return {"dualSidePosition": call.owner().perp.settings.hedge}

    async def set_position_mode(self, call: Call) -> Any:
        raw = call.require("dualSidePosition").lower()
        if raw not in ("true", "false"):
            raise render.error(400, -1130,
                               "Data sent for parameter 'dualSidePosition' is not valid.")
        return _switched("positionSide",
                         lambda: derivatives.set_position_mode(call.owner(), raw == "true"),
                         (-4059, "No need to change position side."))

    async def multi_assets_margin(self, call: Call) -> Any:
        """Multi-Assets mode is not simulated: every account is single-asset."""
        return {"multiAssetsMargin": False}

    async def account_config(self, call: Call) -> Any:
        account = call.owner()
        return {"feeTier": 0, "canTrade": "trade" in account.spec.permissions,
                "canDeposit": True, "canWithdraw": "withdraw" in account.spec.permissions,
                "dualSidePosition": account.perp.settings.hedge, "updateTime": 0,
                "multiAssetsMargin": False, "tradeGroupId": -1}

    async def symbol_config(self, call: Call) -> Any:
        account = call.owner()
        return [{
            "symbol": render.market_id(inst),
            "marginType": _margin_type(account.perp.settings.margin_for(inst.symbol)),
            "isAutoAddMargin": "false", "leverage": int(self._leverage(account, inst)),
            "maxNotionalValue": plain(tiers.max_notional(inst, self._leverage(account, inst))),
        } for inst in self._selected(call)]

    async def leverage_brackets(self, call: Call) -> Any:
        entries = [{"symbol": render.market_id(inst), "brackets": [{
            "bracket": t.number, "initialLeverage": int(t.max_leverage),
            "notionalCap": int(t.cap), "notionalFloor": int(t.floor),
            "maintMarginRatio": float(t.mmr), "cum": float(t.deduction),
        } for t in tiers.tiers(inst)]} for inst in self._selected(call)]
        return entries[0] if "symbol" in call.params else entries

    # --- positions -------------------------------------------------------------------

    async def position_risk_v2(self, call: Call) -> Any:
        return [self._risk(call.owner(), slot.inst, slot.side, slot.view, v2=True)
                for slot in self._slots(call, every_symbol=True)]

    async def position_risk_v3(self, call: Call) -> Any:
        return [self._risk(call.owner(), slot.inst, slot.side, slot.view, v2=False)
                for slot in self._slots(call, every_symbol=False)]

    def _slots(self, call: Call, every_symbol: bool) -> list[Slot]:
        """Each symbol's slots; v3 keeps those with a position or an open order."""
        account = call.owner()
        open_views = derivatives.views(account, self.sim.market)
        busy = {o.symbol for o in account.open_orders() if o.kind is InstrumentKind.LINEAR}
        return [slot for inst in self._selected(call)
                for slot in symbol_slots(account, self.sim.market, inst, open_views)
                if every_symbol or slot.view is not None or inst.symbol in busy]

    def _risk(self, account: Account, inst: Instrument, side: PositionSide,
              view: PositionView | None, v2: bool) -> dict[str, Any]:
        mark = self.sim.market.price(inst.symbol)
        order_im = sum((o.locked for o in account.open_orders(inst.symbol)
                        if o.position_side is side), _ZERO)
        out: dict[str, Any] = {"symbol": render.market_id(inst)}
        if not v2:
            out["positionSide"] = side.value.upper()
        out |= _amounts(view, mark)
        if v2:
            leverage = view.position.leverage if view else self._leverage(account, inst, side)
            mode = view.position.margin_mode if view else account.perp.settings.margin_for(
                inst.symbol)
            out |= {"leverage": plain(leverage),
                    "maxNotionalValue": plain(tiers.max_notional(inst, leverage)),
                    "marginType": mode.value, "isolatedMargin": out["isolatedMargin"],
                    "isAutoAddMargin": "false", "positionSide": side.value.upper(),
                    "notional": out["notional"], "isolatedWallet": out["isolatedWallet"],
                    "updateTime": out["updateTime"], "isolated": mode is MarginMode.ISOLATED,
                    "adlQuantile": 0}
            return out
        position_im = view.initial_margin if view else _ZERO
        out |= {"marginAsset": inst.quote,
                "initialMargin": plain(position_im + order_im),
                "maintMargin": plain(view.maintenance if view else _ZERO),
                "positionInitialMargin": plain(position_im),
                "openOrderInitialMargin": plain(order_im), "adl": 0, "bidNotional": "0",
                "askNotional": "0"}
        out["updateTime"] = out.pop("updateTime")
        return out

    def futures_account(self, account: Account, v3: bool) -> dict[str, Any]:
        """`/fapi/v2/account` (every symbol, with leverage) and `/fapi/v3/account`."""
        market = self.sim.market
        now = market.now_ms()
        views = derivatives.views(account, market)
        assets: list[dict[str, Any]] = []
        for b in derivatives.balances(account, market):
            cross_upnl = b.unrealized_pnl - b.isolated_upnl
            cross_wallet = derivatives.cross_wallet(account, b.asset)
            assets.append({
                "asset": b.asset, "walletBalance": plain(b.wallet),
                "unrealizedProfit": plain(b.unrealized_pnl), "marginBalance": plain(b.equity),
                "maintMargin": plain(b.maintenance_margin),
                "initialMargin": plain(b.position_margin + b.order_margin),
                "positionInitialMargin": plain(b.position_margin),
                "openOrderInitialMargin": plain(b.order_margin),
                "crossWalletBalance": plain(cross_wallet), "crossUnPnl": plain(cross_upnl),
                "availableBalance": plain(b.available), "maxWithdrawAmount": plain(b.available),
                "updateTime": now,
            })
        listed = [v.inst for v in views] if v3 else list(self.symbols.values())
        positions = [self._account_position(account, slot.inst, slot.side, slot.view, v3)
                     for inst in dict.fromkeys(listed)
                     for slot in symbol_slots(account, market, inst, views)
                     if not v3 or slot.view is not None]

        def total(field: str) -> str:
            return plain(sum((Decimal(a[field]) for a in assets), _ZERO))

        return {
            "totalInitialMargin": total("initialMargin"),
            "totalMaintMargin": total("maintMargin"),
            "totalWalletBalance": total("walletBalance"),
            "totalUnrealizedProfit": total("unrealizedProfit"),
            "totalMarginBalance": total("marginBalance"),
            "totalPositionInitialMargin": total("positionInitialMargin"),
            "totalOpenOrderInitialMargin": total("openOrderInitialMargin"),
            "totalCrossWalletBalance": total("crossWalletBalance"),
            "totalCrossUnPnl": total("crossUnPnl"), "availableBalance": total("availableBalance"),
            "maxWithdrawAmount": total("maxWithdrawAmount"), "assets": assets,
            "positions": positions,
        }

    def _account_position(self, account: Account, inst: Instrument, side: PositionSide,
                          view: PositionView | None, v3: bool) -> dict[str, Any]:
        mark = self.sim.market.price(inst.symbol)
        amounts = _amounts(view, mark)
        im = view.initial_margin if view else _ZERO
        out: dict[str, Any] = {
            "symbol": render.market_id(inst), "positionSide": side.value.upper(),
            "positionAmt": amounts["positionAmt"],
            "unrealizedProfit": amounts["unRealizedProfit"],
            "isolatedMargin": amounts["isolatedMargin"], "notional": amounts["notional"],
            "isolatedWallet": amounts["isolatedWallet"], "initialMargin": plain(im),
            "maintMargin": plain(view.maintenance if view else _ZERO),
            "updateTime": amounts["updateTime"],
        }
        if not v3:
            leverage = view.position.leverage if view else self._leverage(account, inst, side)
            mode = view.position.margin_mode if view else account.perp.settings.margin_for(
                inst.symbol)
            out |= {"leverage": plain(leverage), "entryPrice": amounts["entryPrice"],
                    "positionInitialMargin": plain(im), "openOrderInitialMargin": "0",
                    "isolated": mode is MarginMode.ISOLATED,
                    "breakEvenPrice": amounts["breakEvenPrice"],
                    "maxNotional": plain(tiers.max_notional(inst, leverage)),
                    "bidNotional": "0", "askNotional": "0"}
        return out

    # --- mark price and funding --------------------------------------------------------

    async def premium_index(self, call: Call) -> Any:
        schedule = self.sim.funding
        next_index = schedule.next_index()
        now = self.sim.clock.now_ms()
        entries = []
        for inst in self._selected(call):
            mark = fixed(self.sim.market.price(inst.symbol))
            entries.append({
                "symbol": render.market_id(inst), "markPrice": mark, "indexPrice": mark,
                "estimatedSettlePrice": mark,
                "lastFundingRate": fixed(schedule.rate(inst.pair, next_index)),
                "interestRate": "0.00010000", "nextFundingTime": schedule.stamp(next_index),
                "time": now,
            })
        return entries[0] if "symbol" in call.params else entries

    async def funding_rates(self, call: Call) -> Any:
        limit = _limit(call, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
        start, end = _int(call, "startTime"), _int(call, "endTime")
        rows = []
        for inst in self._selected(call):
            for k, stamp, rate in rate_history(self.sim.funding, inst.pair, start, end, limit,
                                               newest_first=False):
                rows.append((stamp, inst.symbol, {
                    "symbol": render.market_id(inst), "fundingRate": fixed(rate),
                    "fundingTime": stamp,
                    "markPrice": fixed(self.sim.funding.mark_at(inst.symbol, k)),
                }))
        rows.sort(key=lambda row: (row[0], row[1]))
        picked = rows[:limit] if start is not None else rows[-limit:]
        return [row[2] for row in picked]

    async def funding_info(self, call: Call) -> Any:
        return [{"symbol": render.market_id(inst), "adjustedFundingRateCap": "0.02000000",
                 "adjustedFundingRateFloor": "-0.02000000",
                 "fundingIntervalHours": FUNDING_INTERVAL_HOURS, "disclaimer": False}
                for inst in self.symbols.values()]

    # --- histories --------------------------------------------------------------------

    async def income(self, call: Call) -> Any:
        account = call.owner()
        income_type = call.params.get("incomeType")
        if income_type is not None and income_type not in INCOME_TYPES:
            raise render.error(400, -1130, "Data sent for parameter 'incomeType' is not valid.")
        symbol = self._instrument(call.params["symbol"]).symbol if call.params.get(
            "symbol") else None
        start, end = _int(call, "startTime"), _int(call, "endTime")
        if start is None and end is None:
            start = self.sim.clock.now_ms() - INCOME_DEFAULT_WINDOW_MS
        limit = _limit(call, HISTORY_DEFAULT_LIMIT, HISTORY_MAX_LIMIT)
        page = max(_int(call, "page") or 1, 1)
        rows = [row for e in account.perp.history(symbol=symbol, start_ms=start, end_ms=end,
                                                   limit=len(account.perp.ledger))
                for row in _incomes(e, self._id_of(e.symbol)) if income_type in (
                    None, row["incomeType"])]
        return rows[(page - 1) * limit:page * limit]

    async def force_orders(self, call: Call) -> Any:
        account = call.owner()
        symbol = self._instrument(call.params["symbol"]).symbol if call.params.get(
            "symbol") else None
        close_type = call.params.get("autoCloseType")
        if close_type not in (None, "LIQUIDATION", "ADL"):
            raise render.error(400, -1130,
                               "Data sent for parameter 'autoCloseType' is not valid.")
        start = _int(call, "startTime") or 0
        end = _int(call, "endTime") or 2**62
        limit = _limit(call, FORCE_ORDERS_DEFAULT, FORCE_ORDERS_MAX)
        orders = sorted((o for o in account.orders.values() if o.liquidation
                         and symbol in (None, o.symbol) and close_type != "ADL"
                         and start <= o.created_ms <= end), key=lambda o: o.id)[-limit:]
        return [self._force_order(o) for o in orders]

    def _force_order(self, order: Order) -> dict[str, Any]:
        inst = self.sim.market.catalog.instruments[order.symbol]
        out = render.futures_order(order, inst, query=True)
        out["autoCloseType"] = "LIQUIDATION"
        return out

    # --- helpers ------------------------------------------------------------------------

    def _instrument(self, market_id: str) -> Instrument:
        inst = self.symbols.get(market_id)
        if inst is None:
            raise render.error(400, -1121, "Invalid symbol.")
        return inst

    def _selected(self, call: Call) -> list[Instrument]:
        market_id = call.params.get("symbol")
        return [self._instrument(market_id)] if market_id else list(self.symbols.values())

    def _id_of(self, symbol: str) -> str:
        return render.market_id(self.sim.market.catalog.instruments[symbol])

    @staticmethod
    def _leverage(account: Account, inst: Instrument,
                  side: PositionSide | None = None) -> Decimal:
        settings = account.perp.settings
        return settings.leverage_for(inst.symbol, settings.margin_for(inst.symbol), side)


def _margin_type(mode: MarginMode) -> str:
    return "ISOLATED" if mode is MarginMode.ISOLATED else "CROSSED"


def _amounts(view: PositionView | None, mark: Decimal) -> dict[str, Any]:
    """The fields positionRisk v2, v3 and the account's positions share."""
    if view is None:
        return {"positionAmt": "0", "entryPrice": "0.0", "breakEvenPrice": "0.0",
                "markPrice": fixed(mark), "unRealizedProfit": "0.00000000",
                "liquidationPrice": "0", "isolatedMargin": "0", "notional": "0",
                "isolatedWallet": "0", "updateTime": 0}
    pos = view.position
    fee = pos.taker_fee * 2 * pos.direction
    isolated = view.isolated
    return {
        "positionAmt": plain(pos.qty), "entryPrice": plain(pos.entry_price),
        "breakEvenPrice": plain((pos.entry_price * (1 + fee)).quantize(view.inst.tick_size)),
        "markPrice": fixed(view.mark), "unRealizedProfit": fixed(view.unrealized_pnl),
        "liquidationPrice": plain(view.liquidation_price or _ZERO),
        "isolatedMargin": plain(view.margin_balance) if isolated else "0",
        "notional": plain(view.signed_notional),
        "isolatedWallet": plain(pos.isolated_margin) if isolated else "0",
        "updateTime": pos.updated_ms,
    }


def stream_position(account: Account, slot: Slot) -> dict[str, Any]:
    """A slot as the user stream's `ACCOUNT_UPDATE` lists it (`a.P[]`), with the numbers
    positionRisk shows for it at the same instant."""
    view, inst = slot.view, slot.inst
    amounts = _amounts(view, _ZERO)
    mode = view.position.margin_mode if view else account.perp.settings.margin_for(inst.symbol)
    return {"s": render.market_id(inst), "pa": amounts["positionAmt"],
            "ep": amounts["entryPrice"], "bep": amounts["breakEvenPrice"],
            "cr": plain(view.position.closed_pnl) if view else "0",
            "up": amounts["unRealizedProfit"], "mt": mode.value,
            "iw": amounts["isolatedWallet"], "ps": slot.side.value.upper(), "ma": inst.quote}


def _incomes(entry: LedgerEntry, market_id: str) -> list[dict[str, Any]]:
    """One ledger entry as Binance income rows (a trade is a PnL row and a fee row)."""
    parts: list[tuple[str, Decimal]] = []
    if entry.kind in (LedgerKind.TRADE, LedgerKind.LIQUIDATION):
        if entry.pnl:
            parts.append(("REALIZED_PNL", entry.pnl))
        if entry.fee:
            parts.append(("COMMISSION", -entry.fee))
    elif entry.kind is LedgerKind.FUNDING:
        parts.append(("FUNDING_FEE", entry.funding))
    else:
        parts.append(("INSURANCE_CLEAR", entry.amount))
    trade_id = str(entry.trade_id) if entry.trade_id is not None else ""
    return [{"symbol": market_id, "incomeType": kind, "income": fixed(amount),
             "asset": entry.asset, "info": kind if kind != "COMMISSION" else "",
             "time": entry.time_ms, "tranId": entry.id * 10 + n, "tradeId": trade_id}
            for n, (kind, amount) in enumerate(parts)]


def _int(call: Call, name: str) -> int | None:
    raw = call.params.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError as exc:
        raise render.error(400, -1100,
                           f"Illegal characters found in parameter '{name}'.") from exc


def _limit(call: Call, default: int, maximum: int) -> int:
    value = _int(call, "limit")
    return default if value is None else min(max(value, 1), maximum)


def order_position_side(call: Call, hedge: bool) -> PositionSide | None:
    """`positionSide` of a new futures order (BOTH by default); reduceOnly is refused in
    hedge mode, where closing is said by side and position side."""
    raw = (call.params.get("positionSide") or "BOTH").upper()
    side = POSITION_SIDES.get(raw)
    if side is None:
        raise render.error(400, -4060, "Invalid position side.")
    if hedge and call.params.get("reduceOnly") is not None:
        raise render.error(400, -1106, "Parameter 'reduceOnly' sent when not required.")
    return None if side is PositionSide.BOTH else side


def render_mark_kline(row: list[Any]) -> list[Any]:
    """A kline as `/fapi/v1/markPriceKlines` sends it: prices, the volumes zeroed."""
    return [*row[:5], "0", row[6], "0", row[8], "0", "0", "0"]
