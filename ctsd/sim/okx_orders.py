"""OKX v5 orders: place and cancel (one or a batch, each with its own `sCode`), the
order by id, and the pending orders.

`trade/batch-orders` (ccxt's default) and `trade/order` both answer HTTP 200 with a
per-order result, the top-level code "1" when every order failed. New orders also
count against the UID's 1,000 per 2 s across instruments (sCode 50061).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ctsd.sim import derivatives
from ctsd.sim import okx_order_wire as orders
from ctsd.sim import okx_wire as render
from ctsd.sim.accounts import Account, Order, Permission, Rejection, Side
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.okx_deriv import order_sides
from ctsd.sim.okx_margin import margin_request
from ctsd.sim.okx_order_wire import OrderTags
from ctsd.sim.okx_wire import OrderFailure
from ctsd.sim.ratelimit import RateRule

if TYPE_CHECKING:
    from ctsd.sim.endpoints import Handler
    from ctsd.sim.okx import Call, OkxSim

SUB_ACCOUNT_ORDERS = RateRule(1000, 2)
"""New orders per UID across all instruments; refused per order with sCode 50061."""


class OkxOrders:
    """The order handlers; `state` gives the instrument maps, limiter and simulator."""

    def __init__(self, state: OkxSim) -> None:
        self.state = state

    def rows(self) -> list[tuple[str, str, Permission | None, Handler[Call]]]:
        """(method, path under /api/v5, permission, handler); limits in `okx.LIMITS`."""
        read, trade = Permission.READ, Permission.TRADE
        return [
            ("POST", "trade/order", trade, self.place_order),
            ("POST", "trade/batch-orders", trade, self.place_batch),
            ("POST", "trade/cancel-order", trade, self.cancel_order),
            ("POST", "trade/cancel-batch-orders", trade, self.cancel_batch),
            ("GET", "trade/order", read, self.get_order),
            ("GET", "trade/orders-pending", read, self.pending),
        ]

    async def place_order(self, call: Call) -> Any:
        return self._each(call, call.entries(batch=False), self._place)

    async def place_batch(self, call: Call) -> Any:
        return self._each(call, call.entries(batch=True), self._place)

    async def cancel_order(self, call: Call) -> Any:
        return self._each(call, call.entries(batch=False), self._cancel)

    async def cancel_batch(self, call: Call) -> Any:
        return self._each(call, call.entries(batch=True), self._cancel)

    async def get_order(self, call: Call) -> Any:
        order_id, client_id = call.params.get("ordId"), call.params.get("clOrdId")
        if not order_id and not client_id:
            raise render.error(200, "51003", "Either client order ID or order ID is required.")
        contract = self.state.option.contract(call.require("instId"), call.owner())
        if contract is not None:
            option = self.state.option.find(call.owner(), contract, order_id, client_id)
            if option is None:
                raise render.error(200, "51603", "Order does not exist")
            return render.ok([self.state.option.render_order(call.owner(), option)])
        inst = self.state.instrument(call.require("instId"))
        order = self._find(call.owner(), inst, order_id, client_id)
        if order is None or order.untriggered:  # an algo order until it fires
            raise render.error(200, "51603", "Order does not exist")
        return render.ok([self.render(call.owner(), order)])

    async def pending(self, call: Call) -> Any:
        """Open orders, newest first, filtered like OKX (instType, instId, ordType, ordId page)."""
        params = call.params
        inst_type, ord_type = params.get("instType"), params.get("ordType")
        contract = self.state.option.contract(params.get("instId") or "", call.owner())
        inst = self.state.instrument(params["instId"]) if params.get("instId") and (
            contract is None) else None
        before, after = _int(call, "before", 0), _int(call, "after", 0)
        limit = min(max(_int(call, "limit", 100), 1), 100)
        account = call.owner()
        orders = sorted((o for o in account.open_orders()
                         if (inst is None or o.symbol == inst.symbol) and not o.untriggered
                         and o.id > before and (not after or o.id < after)),
                        key=lambda o: o.id, reverse=True)
        rendered = [self.render(account, o) for o in orders] if contract is None else []
        rendered += [self.state.option.render_order(account, o)
                     for o in self.state.option.open_orders(account)
                     if contract is None or o.symbol == contract.symbol]
        rendered.sort(key=lambda r: int(r["ordId"]), reverse=True)
        result = [r for r in rendered if inst_type in (None, "", r["instType"])
                  and ord_type in (None, "", r["ordType"])]
        return render.ok(result[:limit])

    def _each(self, call: Call, entries: list[dict[str, Any]],
              op: Callable[[Call, dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
        in_us = self.state.sim.clock.now_ms() * 1000
        results = []
        for entry in entries:
            try:
                results.append(op(call, entry))
            except OrderFailure as exc:
                results.append(orders.failed(entry, exc, self.state.sim.clock.now_ms()))
        return render.batch(results, in_us, self.state.sim.clock.now_ms() * 1000)

    def place_close(self, call: Call, entry: dict[str, Any]) -> dict[str, Any]:
        """`trade/close-position`'s order, placed as `trade/order` places one (its result,
        or the `OrderFailure` it was refused with), as the close of its whole position
        (`matching.OrderRequest.closes_position`)."""
        return self._place(call, entry, closes=True)

    def _place(self, call: Call, entry: dict[str, Any], closes: bool = False,
               ) -> dict[str, Any]:
        contract = self.state.option.contract(str(entry.get("instId") or ""), call.owner())
        if contract is not None:
            return self.state.option.place(call.owner(), contract, entry)
        inst = self.state.entry_instrument(entry)
        request, tags = orders.order_request(inst, entry, closes=closes)
        request = dataclasses.replace(request, note=tags)
        account = call.owner()
        if inst.kind is InstrumentKind.LINEAR:
            side, mode = order_sides(account, inst, str(entry.get("posSide") or ""),
                                     tags.td_mode)
            request = dataclasses.replace(request, position_side=side, margin_mode=mode)
        else:
            request = margin_request(account, inst, entry, tags, request)
        key = ("orders", account.uid)
        if not self.state.limiter.charge(key, 1, SUB_ACCOUNT_ORDERS).allowed:
            self.state.sim.stats.violation("okx", "sub-account orders")
            raise OrderFailure("50061", "Sub-account rate limit exceeded")
        try:
            order = self.state.sim.place_order(account, request, self.state.fees(inst.kind))
        except Rejection as exc:
            raise render.order_failure(exc.kind, inst, request.side is Side.BUY) from exc
        return orders.placed(order, tags, self.state.sim.clock.now_ms())

    def _cancel(self, call: Call, entry: dict[str, Any]) -> dict[str, Any]:
        order_id, client_id = entry.get("ordId"), entry.get("clOrdId")
        if not order_id and not client_id:
            raise OrderFailure("51003", "Either client order ID or order ID is required.")
        account = call.owner()
        contract = self.state.option.contract(str(entry.get("instId") or ""), account)
        if contract is not None:
            option = self.state.option.find(account, contract, str(order_id or ""),
                                            str(client_id or ""))
            if option is None:
                raise OrderFailure(*render.CANCEL_UNKNOWN)
            self.state.option.cancel(account, option)
            return {"clOrdId": option.client_id, "ordId": str(option.id), "sCode": "0",
                    "sMsg": "", "ts": str(self.state.sim.clock.now_ms())}
        inst = self.state.entry_instrument(entry)
        order = self._find(account, inst, str(order_id or ""), str(client_id or ""))
        if order is None or order.untriggered:
            raise OrderFailure(*render.CANCEL_UNKNOWN)
        if not order.status.is_open:
            raise OrderFailure(*render.CANCEL_DONE[order.status])
        self.state.sim.cancel_order(account, order)
        return orders.canceled(order, self._tags(order), self.state.sim.clock.now_ms())

    def _find(self, account: Account, inst: Instrument, order_id: str | None,
              client_id: str | None) -> Order | None:
        """The order by ordId (preferred) or clOrdId, if it is this instrument's."""
        try:
            if order_id:
                order = account.find_order(int(order_id) if order_id.isdigit() else -1)
            else:
                order = account.find_order(client_id=client_id)
        except Rejection:
            return None
        return order if order.symbol == inst.symbol else None

    def _tags(self, order: Order) -> OrderTags:
        return orders.tags_of(order, self.state.sim.market.catalog.instruments[order.symbol])

    def render(self, account: Account, order: Order) -> dict[str, Any]:
        inst = self.state.sim.market.catalog.instruments[order.symbol]
        fills = account.fills_of(order.id)
        return orders.order(order, inst, self._tags(order),
                            derivatives.order_leverage(account, order),
                            fills[-1].trade_id if fills else None)


def _int(call: Call, name: str, default: int) -> int:
    value = render.int_param(call.params, name)
    return default if value is None else value
