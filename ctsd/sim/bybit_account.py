"""Bybit v5 own fills and fee rates.

- `/v5/execution/list`: the account's fills, newest first, `limit` 1..100 (default
  50) with a cursor; `startTime`/`endTime` at most 7 days apart, the last 7 days when
  neither is given. Each fill carries `execFee`, `feeRate`, `isMaker` and
  `feeCurrency` (a spot buy pays its fee in the base coin, a sell in the quote coin;
  linear fills in the settle coin), and `closedSize` for what it closed.
- `/v5/account/fee-rate`: `takerFeeRate`/`makerFeeRate` per symbol of a category.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import bybit_wire as render
from ctsd.sim.accounts import Fill, Order, Side
from ctsd.sim.bybit_wire import LINEAR, SPOT
from ctsd.sim.market import InstrumentKind
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.bybit import BybitSim
    from ctsd.sim.bybit_wire import Call
    from ctsd.sim.market import Instrument

WEEK_MS = 7 * 86_400_000
EXEC_DEFAULT, EXEC_MAX = 50, 100
KIND = {SPOT: InstrumentKind.SPOT, LINEAR: InstrumentKind.LINEAR}


class BybitAccount:
    def __init__(self, state: BybitSim) -> None:
        self.state = state

    def _category(self, call: Call) -> str:
        category = call.require("category")
        if category not in KIND:
            raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)
        return category

    async def executions(self, call: Call) -> Any:
        """Spot: the fills, paged here. Linear: the derivatives module's answer, which adds
        funding and liquidation (BustTrade) rows to `trade_rows` (liquidation fills are
        its BustTrade rows, not repeated as trades). A spot-margin liquidation's fills are
        spot trades `CreateByLiq`."""
        category = self._category(call)
        if category == LINEAR:
            deriv = self.state.deriv
            deriv.trade_executions = lambda c: self.trade_rows(c, LINEAR)
            return await deriv.executions(call)
        fills = self.trade_rows(call, SPOT)
        limit = call.integer("limit", EXEC_DEFAULT, 1, EXEC_MAX)
        after = render.cursor_value(call.text("cursor"), "page_args")
        first = next((n + 1 for n, f in enumerate(fills) if f["execId"] == after), 0)
        page = fills[first:first + limit]
        more = first + limit < len(fills)
        return {"category": category, "list": page,
                "nextPageCursor": render.cursor("page_args", page[-1]["execId"])
                if more else ""}

    def trade_rows(self, call: Call, category: str) -> list[dict[str, Any]]:
        """`execType=Trade` rows of the account's fills that the filters keep, newest first."""
        start, end = (call.integer(n, 0, 0, 2**62) for n in ("startTime", "endTime"))
        if start and end and end - start > WEEK_MS:
            raise render.error(10001, "The time range between startTime and endTime cannot "
                                      "exceed 7 days", call.now_ms)
        if not start and not end:
            start, end = call.now_ms - WEEK_MS, call.now_ms
        elif not end:
            end = start + WEEK_MS
        elif not start:
            start = end - WEEK_MS
        symbol, order_id = call.text("symbol"), call.text("orderId")
        link_id, base = call.text("orderLinkId"), call.text("baseCoin")
        catalog = self.state.sim.market.catalog.instruments
        orders = call.owner().orders
        return [self._fill(f, catalog[f.symbol], orders[f.order_id])
                for f in reversed(call.owner().fills)
                if f.kind is KIND[category] and start <= f.time_ms <= end
                and not (category == LINEAR and orders[f.order_id].liquidation)
                and symbol in (None, render.market_id(catalog[f.symbol]))
                and base in (None, catalog[f.symbol].base)
                and order_id in (None, str(f.order_id)) and link_id in (None, f.client_id)]

    @staticmethod
    def _fill(f: Fill, inst: Instrument, order: Order) -> dict[str, Any]:
        rate = order.fees.maker if f.maker else order.fees.taker
        return {
            "symbol": render.market_id(inst), "orderId": str(f.order_id),
            "orderLinkId": f.client_id, "side": "Buy" if f.side is Side.BUY else "Sell",
            "orderPrice": plain(order.price) if order.price is not None else "0",
            "orderQty": plain(order.qty), "leavesQty": plain(order.remaining),
            "createType": "CreateByLiq" if order.liquidation else "CreateByUser",
            "orderType": "Market" if order.price is None else "Limit",
            "stopOrderType": "Stop" if order.trigger is not None else "UNKNOWN",
            "execFee": plain(f.fee), "execId": str(f.trade_id), "execPrice": plain(f.price),
            "execQty": plain(f.qty), "execType": "Trade", "execValue": plain(f.quote_qty),
            "execTime": str(f.time_ms), "feeCurrency": f.fee_asset, "isMaker": f.maker,
            "feeRate": plain(rate), "tradeIv": "", "markIv": "", "markPrice": plain(f.price),
            "indexPrice": "", "underlyingPrice": "", "blockTradeId": "",
            "closedSize": "" if inst.kind is InstrumentKind.SPOT else plain(
                f.qty if f.realized_pnl else Decimal(0)),
            "seq": f.trade_id, "extraFees": "", "execPnl": plain(f.realized_pnl),
        }

    async def fee_rate(self, call: Call) -> Any:
        category = self._category(call)
        fees = self.state.fees(category)
        symbol = call.text("symbol")
        listed = self.state.symbols[category]
        if symbol is not None and symbol not in listed:
            raise render.error(*render.NOT_SUPPORTED_SYMBOLS, call.now_ms)
        return {"category": category, "list": [
            {"symbol": name, "takerFeeRate": plain(fees.taker), "makerFeeRate": plain(fees.maker)}
            for name in listed if symbol in (None, name)]}
