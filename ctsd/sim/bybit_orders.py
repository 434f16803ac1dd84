"""Bybit v5 orders: create, cancel, open and recent orders, order history.

`/v5/order/realtime` lists open orders (and, by id or with `openOnly=1`, the last
500 closed ones), `/v5/order/history` the closed ones, newest first, paged with a
cursor; `orderFilter` picks plain or conditional (StopOrder/tpslOrder) orders. A
spot market order placed by quote amount is reported in quote (`marketUnit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ctsd.sim import bybit_order_wire as orders
from ctsd.sim import bybit_wire as render
from ctsd.sim.accounts import Order, Permission, Rejection, RejectKind
from ctsd.sim.bybit_endpoints import FEES, KIND, ORDER_READ, ORDER_WRITE, Endpoint
from ctsd.sim.bybit_margin import margin_order
from ctsd.sim.bybit_wire import SPOT, Call
from ctsd.sim.market import Instrument

if TYPE_CHECKING:
    from ctsd.sim.bybit import BybitSim

ORDER_PAGE_DEFAULT, ORDER_PAGE_MAX = 20, 50
RECENT_CLOSED_MAX = 500
"""Bybit keeps the last 500 closed orders under `/v5/order/realtime`."""


class BybitOrders:
    """The order handlers; `state` gives the symbol maps and the simulator."""

    def __init__(self, state: BybitSim) -> None:
        self.state = state

    def rows(self) -> list[Endpoint]:
        read, trade = Permission.READ, Permission.TRADE
        return [
            Endpoint("POST", "/v5/order/create", self.create_order, trade, ORDER_WRITE),
            Endpoint("POST", "/v5/order/cancel", self.cancel_order, trade, ORDER_WRITE),
            Endpoint("GET", "/v5/order/realtime", self.realtime_orders, read, ORDER_READ),
            Endpoint("GET", "/v5/order/history", self.order_history, read, ORDER_READ),
        ]

    async def create_order(self, call: Call) -> Any:
        category = self.state.trading_category(call)
        inst = self.state.tradable(category, call.require("symbol"), call.now_ms)
        req = orders.order_request(call, inst, self.state.sim.market.price(inst.symbol))
        if category == SPOT:
            req = margin_order(call, call.owner(), req)
        try:
            order = self.state.sim.place_order(call.owner(), req, FEES[category])
        except Rejection as exc:
            if exc.kind is RejectKind.LOT_SIZE:
                raise render.lot_size(inst, req.qty, call.now_ms) from exc
            raise render.rejection(exc.kind, category, exc.detail, call.now_ms) from exc
        return orders.order_ack(order)

    async def cancel_order(self, call: Call) -> Any:
        category = self.state.trading_category(call)
        inst = self.state.tradable(category, call.require("symbol"), call.now_ms)
        order = self._find_order(call, category, inst)
        try:
            self.state.sim.cancel_order(call.owner(), order)
        except Rejection as exc:
            raise render.rejection(exc.kind, category, exc.detail, call.now_ms) from exc
        return orders.order_ack(order)

    def _find_order(self, call: Call, category: str, inst: Instrument) -> Order:
        raw_id, link_id = call.text("orderId"), call.text("orderLinkId")
        if raw_id is None and link_id is None:
            raise render.error(10001, "orderId or orderLinkId is required", call.now_ms)
        order_id = (int(raw_id) if raw_id.isdigit() else -1) if raw_id else None
        try:
            order = call.owner().find_order(order_id, link_id)
        except Rejection as exc:
            raise render.rejection(exc.kind, category, exc.detail, call.now_ms) from exc
        if order.symbol != inst.symbol:
            raise render.rejection(RejectKind.UNKNOWN_ORDER, category, "", call.now_ms)
        return order

    async def realtime_orders(self, call: Call) -> Any:
        """Open orders; or, by id or with `openOnly=1`, the recent closed ones too."""
        if call.text("orderId") or call.text("orderLinkId"):
            return self._order_list(call, lambda o: True)
        if (call.text("openOnly") or "0") == "0":
            return self._order_list(call, lambda o: o.status.is_open)
        return self._order_list(call, lambda o: not o.status.is_open, RECENT_CLOSED_MAX)

    async def order_history(self, call: Call) -> Any:
        status = call.text("orderStatus")
        return self._order_list(call, lambda o: not o.status.is_open and status in (
            None, orders.status_name(o)))

    def _order_list(
        self, call: Call, keep: Callable[[Order], bool], cap: int | None = None,
    ) -> dict[str, Any]:
        category = self.state.market_category(call)
        conditional = orders.conditional_filter(call.text("orderFilter"), category)
        if category is None or (conditional is False and call.text("orderFilter") not in (
                None, "Order")):
            return orders.order_page([], call.text("category") or "", "")
        matches = [o for o in self._matching_orders(call, category, keep)
                   if conditional is None or (o.trigger is not None) is conditional][:cap]
        limit = call.integer("limit", ORDER_PAGE_DEFAULT, 1, ORDER_PAGE_MAX)
        after = render.cursor_value(call.text("cursor"), "page_args")
        start = next((n + 1 for n, o in enumerate(matches) if str(o.id) == after), 0)
        page = matches[start:start + limit]
        more = start + limit < len(matches)
        next_cursor = render.cursor("page_args", str(page[-1].id)) if more else ""
        return orders.order_page(
            (orders.order(o, self.state.inst(o),
                          "quoteCoin" if o.quote_qty is not None else None, o.quote_qty)
             for o in page),
            category, next_cursor)

    def _matching_orders(
        self, call: Call, category: str, keep: Callable[[Order], bool],
    ) -> list[Order]:
        symbol, base = call.text("symbol"), call.text("baseCoin")
        settle = call.text("settleCoin")
        raw_id, link_id = call.text("orderId"), call.text("orderLinkId")
        since, until = call.integer("startTime", 0, 0, 2**62), call.integer("endTime", 0, 0, 2**62)
        found = [
            o for o in call.owner().orders.values()
            if o.kind is KIND[category] and keep(o) and since <= o.created_ms <= (until or 2**62)
            and symbol in (None, render.market_id(self.state.inst(o)))
            and base in (None, self.state.inst(o).base)
            and settle in (None, self.state.inst(o).quote)
            and raw_id in (None, str(o.id)) and link_id in (None, o.client_id)
        ]
        return sorted(found, key=lambda o: o.id, reverse=True)
