"""Bybit v5 linear perpetuals beyond orders: positions, leverage, position mode, the
account's margin mode, risk limits, funding history, transaction log and the
funding and liquidation executions.

Handlers for `ctsd.sim.bybit` over `ctsd.sim.derivatives`/`funding`/`positions`.
Bybit's own semantics: the margin mode is the unified account's
(`/v5/account/set-margin-mode`, refused with retCode 3400045 and its `reasons`
while positions or orders are open; setting the mode it already has answers OK:
Bybit documents no "not modified" code for it); position mode switches per symbol
(refused 110024/110028, 110025 when unchanged) or per settle coin, which switches
only the symbols with no position and no open order; leverage answers 110043 when
unchanged. Funding is `execType=Funding` in `/v5/execution/list` (execFee
positive: paid) and `SETTLEMENT` in the transaction log (funding positive:
received); a liquidation is `BustTrade` and `LIQUIDATION`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import bybit_wire as render
from ctsd.sim import derivatives, tiers
from ctsd.sim.accounts import Account
from ctsd.sim.bybit_wire import LINEAR, Call
from ctsd.sim.derivatives import Refusal, SettingRefused
from ctsd.sim.endpoints import Handler
from ctsd.sim.funding import FundingSchedule, rate_history
from ctsd.sim.market import Instrument, Market
from ctsd.sim.positions import LedgerEntry, LedgerKind, MarginMode, PositionSide
from ctsd.sim.slots import Slot, symbol_slots
from ctsd.sim.wire import VenueError, plain

if TYPE_CHECKING:
    from ctsd.sim.state import Simulator

_ZERO = Decimal(0)
POSITION_IDX = {PositionSide.BOTH: 0, PositionSide.LONG: 1, PositionSide.SHORT: 2}
MARGIN_MODES = {"REGULAR_MARGIN": MarginMode.CROSS, "ISOLATED_MARGIN": MarginMode.ISOLATED}
ACCOUNT_MARGIN_MODE = {MarginMode.CROSS: "REGULAR_MARGIN",
                       MarginMode.ISOLATED: "ISOLATED_MARGIN"}
POSITION_PAGE_DEFAULT, POSITION_PAGE_MAX = 20, 200
FUNDING_PAGE_MAX = 200
LOG_PAGE_DEFAULT, LOG_PAGE_MAX = 20, 50
EXEC_PAGE_DEFAULT, EXEC_PAGE_MAX = 50, 100
DAY_MS = 86_400_000
_LOG_TYPES = {LedgerKind.TRADE: "TRADE", LedgerKind.FUNDING: "SETTLEMENT",
              LedgerKind.LIQUIDATION: "LIQUIDATION", LedgerKind.LIQUIDATION_FEE: "LIQUIDATION"}
_MODE_REFUSALS = {
    Refusal.POSITION_EXISTS: (110024, "You have an existing position, so the position mode "
                                      "cannot be switched."),
    Refusal.OPEN_ORDERS: (110028, "You have existing open orders, so the position mode cannot "
                                  "be switched."),
}
_LEVERAGE_REFUSALS = {
    Refusal.LEVERAGE_INVALID: (10001, "leverage invalid"),
    Refusal.LEVERAGE_TOO_HIGH: (110013, "Cannot set leverage due to risk limit level."),
    Refusal.INSUFFICIENT_MARGIN: (110012, "Insufficient available balance."),
}
_MARGIN_REASONS = {
    Refusal.POSITION_EXISTS: ("3400208", "You have unclosed hedge mode or isolated mode USDT "
                                         "perpetual positions"),
    Refusal.OPEN_ORDERS: ("3400054", "You have uncancelled USDT perpetual orders"),
}


class LinearDerivatives:
    """The handlers; `symbols` maps Bybit ids (`BTCUSDT`) to the perpetuals."""

    def __init__(self, sim: Simulator, symbols: dict[str, Instrument],
                 kline: Handler[Call]) -> None:
        self.sim = sim
        self.symbols = symbols
        self._kline = kline
        """The venue's `market/kline` handler: mark candles are the last price's."""
        self.trade_executions: Callable[[Call], list[dict[str, Any]]] = lambda call: []
        """`execType=Trade` rows of `/v5/execution/list`: the fill history (sim-md's),
        merged here with the funding and liquidation rows this module renders."""

    # --- settings --------------------------------------------------------------------

    async def set_leverage(self, call: Call) -> Any:
        inst = self._instrument(call)
        buy, sell = _leverage(call, "buyLeverage"), _leverage(call, "sellLeverage")
        account = call.owner()
        settings = account.perp.settings
        mode = settings.margin_for(inst.symbol)
        split = settings.is_hedge(inst.symbol) and mode is MarginMode.ISOLATED
        if buy != sell and not split:
            raise render.error(10001, "buyLeverage must be equal to sellLeverage", call.now_ms)
        sides = ((PositionSide.LONG, buy), (PositionSide.SHORT, sell)) if split else (
            (None, buy),)
        changed = False
        try:
            for side, leverage in sides:
                changed |= derivatives.set_leverage(account, self.sim.market, inst, leverage,
                                                    side=side)
        except SettingRefused as exc:
            raise render.error(*_LEVERAGE_REFUSALS[exc.refusal], call.now_ms) from exc
        if not changed:
            raise render.error(110043, "Set leverage has not been modified.", call.now_ms)
        return {}

    async def switch_mode(self, call: Call) -> Any:
        _linear(call)
        mode = call.require("mode")
        if mode not in ("0", "3"):
            raise render.error(10001, "params error: mode invalid", call.now_ms)
        market_id, coin = call.text("symbol"), call.text("coin")
        if market_id is None and coin is None:
            raise render.error(10001, "symbol or coin is required", call.now_ms)
        symbol = self._instrument(call).symbol if market_id else None
        if symbol is None and coin != self.sim.market.catalog.quote:
            raise render.error(10001, "params error: coin invalid", call.now_ms)
        try:
            changed = derivatives.set_position_mode(call.owner(), mode == "3", symbol,
                                                    skip_busy=symbol is None)
        except SettingRefused as exc:
            raise render.error(*_MODE_REFUSALS[exc.refusal], call.now_ms) from exc
        if not changed and symbol is not None:
            # per symbol, Bybit refuses a no-op; switching a whole coin is a batch over its
            # symbols and succeeds either way (Freqtrade sets one-way mode on every start)
            raise render.error(110025, "Position mode has not been modified.", call.now_ms)
        return {}

    async def set_margin_mode(self, call: Call) -> Any:
        raw = call.require("setMarginMode")
        mode = MARGIN_MODES.get(raw)
        if mode is None:
            reason = ("3400071", "The net asset is not satisfied") if (
                raw == "PORTFOLIO_MARGIN") else ("10001", "setMarginMode invalid")
            raise _margin_failed(reason, call.now_ms)
        try:
            derivatives.set_margin_mode(call.owner(), mode)
        except SettingRefused as exc:
            raise _margin_failed(_MARGIN_REASONS[exc.refusal], call.now_ms) from exc
        return {"reasons": []}

    # --- positions ---------------------------------------------------------------------

    async def positions(self, call: Call) -> Any:
        if call.require("category") == "inverse":  # none held: ccxt.pro's snapshot asks for them
            return {"category": "inverse", "list": [], "nextPageCursor": ""}
        _linear(call)
        account = call.owner()
        market_id = call.text("symbol")
        if market_id is None and call.text("settleCoin") is None:
            raise render.error(10001, "Missing some parameters that must be filled in, symbol "
                                      "or settleCoin", call.now_ms)
        settle = call.text("settleCoin")
        market = self.sim.market
        if market_id is not None:
            rows = symbol_slots(account, market, self._instrument(call))
        else:
            rows = [Slot(v.inst, v.position.side, v) for v in derivatives.views(account, market)
                    if v.inst.quote == settle]
        limit = call.integer("limit", POSITION_PAGE_DEFAULT, 1, POSITION_PAGE_MAX)
        after = render.cursor_value(call.text("cursor"), "page")
        start = int(after) if after and after.isdigit() else 0
        page = rows[start:start + limit]
        more = start + limit < len(rows)
        return {"list": [position_row(account, market, row) for row in page],
                "nextPageCursor": render.cursor("page", str(start + limit)) if more else "",
                "category": LINEAR}

    # --- market data -----------------------------------------------------------------------

    async def risk_limits(self, call: Call) -> Any:
        category = call.require("category")
        if category == "inverse":
            return {"category": category, "list": [], "nextPageCursor": ""}
        _linear(call)
        chosen = [self._instrument(call)] if call.text("symbol") else list(
            self.symbols.values())
        return {"category": LINEAR, "nextPageCursor": "", "list": [{
            "id": t.number, "symbol": render.market_id(inst), "riskLimitValue": plain(t.cap),
            "maintenanceMargin": plain(t.mmr), "initialMargin": plain(t.imr),
            "isLowestRisk": 1 if t.number == 1 else 0,
            "maxLeverage": f"{t.max_leverage:.2f}",
            "mmDeduction": plain(t.deduction) if t.deduction else "",
        } for inst in chosen for t in tiers.tiers(inst)]}

    async def mark_price_kline(self, call: Call) -> Any:
        """The mark price is the last price here: its candles, prices only."""
        candles = await self._kline(call)
        candles["list"] = [row[:5] for row in candles["list"]]
        return candles

    async def funding_history(self, call: Call) -> Any:
        _linear(call)
        inst = self._instrument(call, required=True)
        start, end = _time(call, "startTime"), _time(call, "endTime")
        limit = call.integer("limit", FUNDING_PAGE_MAX, 1, FUNDING_PAGE_MAX)
        rows = rate_history(self.sim.funding, inst.pair, start, end, limit, newest_first=True)
        return {"category": LINEAR, "list": [
            {"symbol": render.market_id(inst), "fundingRate": plain(rate),
             "fundingRateTimestamp": str(stamp)} for _, stamp, rate in rows]}

    # --- histories ----------------------------------------------------------------------------

    async def transaction_log(self, call: Call) -> Any:
        account = call.owner()
        if call.text("accountType") not in (None, "UNIFIED"):
            raise render.error(10001, "accountType only support UNIFIED.", call.now_ms)
        category, currency = call.text("category"), call.text("currency")
        log_type, base = call.text("type"), call.text("baseCoin")
        start, end = _window(call, DAY_MS)
        limit = call.integer("limit", LOG_PAGE_DEFAULT, 1, LOG_PAGE_MAX)
        entries = [e for e in account.perp.history(start_ms=start, end_ms=end,
                                                    limit=len(account.perp.ledger),
                                                    newest_first=True)
                   if category in (None, LINEAR) and currency in (None, e.asset)
                   and log_type in (None, _LOG_TYPES[e.kind])
                   and base in (None, self._inst(e.symbol).base)]
        page, next_cursor = _page(call, entries, limit)
        return {"list": [self._log_row(e) for e in page], "nextPageCursor": next_cursor}

    def _log_row(self, e: LedgerEntry) -> dict[str, Any]:
        funding = e.kind is LedgerKind.FUNDING
        cash_flow = e.pnl if not funding else _ZERO
        return {
            "id": f"{e.id}_{render.market_id(self._inst(e.symbol))}_{e.id}",
            "symbol": render.market_id(self._inst(e.symbol)), "category": LINEAR,
            "side": e.side.capitalize() if e.side else "None",
            "transactionTime": str(e.time_ms), "type": _LOG_TYPES[e.kind], "transSubType": "",
            "qty": plain(e.qty), "size": plain(e.position_after), "currency": e.asset,
            "tradePrice": plain(e.price), "funding": plain(e.funding) if funding else "",
            "fee": plain(e.fee), "cashFlow": plain(cash_flow), "change": plain(e.amount),
            "cashBalance": plain(e.balance_after),
            "feeRate": plain(e.rate if e.rate is not None else _ZERO), "bonusChange": "",
            "tradeId": str(e.trade_id) if e.trade_id is not None else "",
            "orderId": str(e.order_id) if e.order_id is not None else "",
            "orderLinkId": e.client_id, "extraFees": "",
        }

    async def executions(self, call: Call) -> Any:
        """Funding and liquidation (`BustTrade`) rows from the ledger; trades from the
        fill history (`trade_executions`)."""
        _linear(call)
        account = call.owner()
        exec_type = call.text("execType")
        market_id = call.text("symbol")
        symbol = self._instrument(call).symbol if market_id else None
        start, end = _window(call, 7 * DAY_MS)
        limit = call.integer("limit", EXEC_PAGE_DEFAULT, 1, EXEC_PAGE_MAX)
        kinds = {"Funding": frozenset({LedgerKind.FUNDING}),
                 "BustTrade": frozenset({LedgerKind.LIQUIDATION})}
        wanted = kinds.get(exec_type or "", frozenset()) if exec_type else frozenset(
            {LedgerKind.FUNDING, LedgerKind.LIQUIDATION})
        rows = [self._execution(e) for e in account.perp.history(
            wanted, symbol=symbol, start_ms=start, end_ms=end, limit=len(account.perp.ledger),
            newest_first=True)] if wanted else []
        if exec_type in (None, "Trade"):
            rows += self.trade_executions(call)
        rows.sort(key=lambda r: int(r["execTime"]), reverse=True)
        page, next_cursor = _page(call, rows, limit)
        return {"category": LINEAR, "list": page, "nextPageCursor": next_cursor}

    def _execution(self, e: LedgerEntry) -> dict[str, Any]:
        inst = self._inst(e.symbol)
        funding = e.kind is LedgerKind.FUNDING
        return {
            "symbol": render.market_id(inst), "orderType": "UNKNOWN" if funding else "Market",
            "underlyingPrice": "", "orderLinkId": e.client_id, "orderId": str(e.order_id or ""),
            "stopOrderType": "UNKNOWN", "execTime": str(e.time_ms), "feeCurrency": e.asset,
            "createType": "" if funding else "CreateByLiq", "feeRate": plain(e.rate or _ZERO),
            "tradeIv": "", "blockTradeId": "", "markPrice": plain(e.price),
            "execPrice": plain(e.price), "markIv": "", "orderQty": plain(e.qty),
            "orderPrice": plain(e.price), "execValue": plain(e.qty * e.price),
            "closedSize": plain(e.qty) if not funding else "0",
            "execType": "Funding" if funding else "BustTrade",
            "seq": e.id, "side": e.side.capitalize(), "indexPrice": "", "leavesQty": "0",
            "isMaker": False, "execFee": plain(-e.funding if funding else e.fee),
            "execId": f"{e.id:012d}-{e.kind.value}", "marketUnit": "",
            "execQty": plain(e.qty), "extraFees": "",
        }

    # --- helpers ------------------------------------------------------------------------

    def _instrument(self, call: Call, required: bool = False) -> Instrument:
        market_id = call.require("symbol") if required else call.text("symbol") or ""
        inst = self.symbols.get(market_id)
        if inst is None:
            raise render.error(*render.NOT_SUPPORTED_SYMBOLS, call.now_ms)
        return inst

    def _inst(self, symbol: str) -> Instrument:
        return self.sim.market.catalog.instruments[symbol]


def _linear(call: Call) -> None:
    if call.require("category") != LINEAR:
        raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)


def _leverage(call: Call, name: str) -> Decimal:
    value = call.decimal(name)
    if value is None:
        raise render.error(10001, render.lack(name), call.now_ms)
    return value


def _time(call: Call, name: str) -> int | None:
    raw = call.text(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise render.error(10001, f"params error: {name} invalid", call.now_ms)
    return int(raw)


def _window(call: Call, span_ms: int) -> tuple[int, int]:
    """Bybit's history windows: none → the last `span`; one bound → `span` from it."""
    start, end = _time(call, "startTime"), _time(call, "endTime")
    if start is None and end is None:
        end = call.now_ms
    if start is None:
        assert end is not None
        start = end - span_ms
    if end is None:
        end = start + span_ms
    if end - start > 7 * DAY_MS:
        raise render.error(10001, "params error: the time range cannot exceed 7 days",
                           call.now_ms)
    return start, end


def _page(call: Call, rows: list[Any], limit: int) -> tuple[list[Any], str]:
    after = render.cursor_value(call.text("cursor"), "page")
    start = int(after) if after and after.isdigit() else 0
    more = start + limit < len(rows)
    return rows[start:start + limit], render.cursor("page", str(start + limit)) if more else ""


def _margin_failed(reason: tuple[str, str], now_ms: int) -> VenueError:
    """set-margin-mode's failure: retCode 3400045 with the reasons in `result`."""
    code, msg = reason
    return VenueError(200, render.envelope(
        {"reasons": [{"reasonCode": code, "reasonMsg": msg}]}, now_ms, 3400045,
        "Set margin mode failed"))


def ticker_funding(schedule: FundingSchedule, inst: Instrument) -> tuple[Decimal, int]:
    """(fundingRate, nextFundingTime) of a linear ticker (REST and stream alike)."""
    k = schedule.next_index()
    return schedule.rate(inst.pair, k), schedule.stamp(k)


def position_row(account: Account, market: Market, slot: Slot) -> dict[str, Any]:
    """A slot as `/v5/position/list` lists it (the `position` stream pushes the same)."""
    inst, side, view = slot.inst, slot.side, slot.view
    mark = market.price(inst.symbol)
    settings = account.perp.settings
    pos = view.position if view else None
    leverage = pos.leverage if pos else settings.leverage_for(
        inst.symbol, settings.margin_for(inst.symbol), side)
    tier = view.tier if view else tiers.tiers(inst)[0]
    im = _ZERO
    if view is not None:
        im = view.position.isolated_margin if view.isolated else view.initial_margin
    mm = view.maintenance if view else _ZERO
    liq = view.liquidation_price if view else None
    position_side = "" if pos is None else ("Buy" if pos.qty > 0 else "Sell")
    entry = pos.entry_price if pos else _ZERO
    fee = pos.taker_fee * 2 * pos.direction if pos else _ZERO
    return {
        "positionIdx": POSITION_IDX[side], "riskId": tier.number,
        "riskLimitValue": plain(tier.cap), "symbol": render.market_id(inst),
        "side": position_side, "size": plain(pos.size) if pos else "0",
        "avgPrice": plain(entry), "positionValue": plain(pos.size * entry) if pos else "0",
        "tradeMode": 0, "positionStatus": "Normal", "autoAddMargin": 0,
        "adlRankIndicator": 2 if pos else 0, "leverage": plain(leverage),
        "positionBalance": plain(im), "markPrice": plain(mark),
        "liqPrice": plain(liq) if liq else "", "bustPrice": "",
        "positionMM": plain(mm), "positionMMByMp": plain(mm), "positionIM": plain(im),
        "positionIMByMp": plain(im), "tpslMode": "Full", "takeProfit": "", "stopLoss": "",
        "trailingStop": "0",
        "unrealisedPnl": plain(view.unrealized_pnl) if view else "",
        "curRealisedPnl": plain(pos.realized_pnl) if pos else "0",
        "cumRealisedPnl": plain(account.perp.cum_realized.get(inst.symbol, _ZERO)),
        "breakEvenPrice": plain((entry * (1 + fee)).quantize(inst.tick_size)),
        "seq": pos.last_trade_id if pos else -1, "isReduceOnly": False,
        "mmrSysUpdatedTime": "", "leverageSysUpdatedTime": "", "sessionAvgPrice": "",
        "delta": "", "gamma": "", "vega": "", "theta": "",
        "createdTime": str(pos.created_ms) if pos else "0",
        "updatedTime": str(pos.updated_ms) if pos else "0",
        "openTime": pos.created_ms if pos else 0,
    }


def account_margin_mode(mode: MarginMode) -> str:
    return ACCOUNT_MARGIN_MODE[mode]
