"""Kraken orders: AddOrder (with `validate`, `oflags`, `viqc`, stops), CancelOrder (by
txid, `cl_ord_id` or `userref`), and OpenOrders, ClosedOrders, QueryOrders.

Orders are charged to the per-pair trading counter (one point each, a cancel the
penalty of its order's age); what Kraken echoes beyond the core order (`userref`,
`cl_ord_id`, `oflags`) is kept on the order itself (`Order.note`, an `OrderTags`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import kraken_account, matching, wire
from ctsd.sim import kraken_wire as render
from ctsd.sim.accounts import Account, Order, OrderType, Rejection, Side, TimeInForce
from ctsd.sim.kraken_margin import margin_request
from ctsd.sim.kraken_wire import KrakenPair, OrderTags
from ctsd.sim.market import InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.ratelimit import RateRule

if TYPE_CHECKING:
    from ctsd.sim.kraken import Call, KrakenSim

TRADING_COUNTER = RateRule(limit=60, window_s=60)
"""Starter tier: the per-pair trading counter tops out at 60 and drains 1 a second."""
CANCEL_PENALTIES = ((5, 8), (10, 6), (15, 5), (45, 4), (90, 2), (300, 1))
"""(order younger than N seconds, points): cancelling fresh orders is what Kraken deters."""
QUERY_MAX_TXIDS = 50
CLOSED_PAGE = 50
_ORDER_FLAGS = frozenset({"post", "fcib", "fciq", "nompp", "viqc"})
_SPOT = InstrumentKind.SPOT


def tags_of(order: Order) -> OrderTags:
    return order.note if isinstance(order.note, OrderTags) else OrderTags()


class KrakenOrders:
    """The order handlers; `state` gives the pairs, counters and the simulator."""

    def __init__(self, state: KrakenSim) -> None:
        self.state = state

    async def open_orders(self, call: Call) -> Any:
        orders = [o for o in reversed(call.owner().open_orders()) if o.kind is _SPOT]
        trades = call.flag("trades")
        return {"open": {render.order_txid(o.id): self.render(o, trades, call.owner())
                         for o in self._tagged(call, orders)}}

    async def closed_orders(self, call: Call) -> Any:
        """Newest first, 50 a page from `ofs`; `start`/`end` bound the close time (s)."""
        start, end = call.decimal("start"), call.decimal("end")
        closed = [
            o for o in call.owner().orders.values()
            if o.kind is _SPOT and not o.status.is_open
            and (start is None or o.updated_ms / 1000 > start)
            and (end is None or o.updated_ms / 1000 < end)
        ]
        closed = self._tagged(call, sorted(closed, key=lambda o: o.updated_ms, reverse=True))
        offset, trades = call.integer("ofs") or 0, call.flag("trades")
        page = closed[offset:offset + CLOSED_PAGE]
        account = call.owner()
        return {"closed": {render.order_txid(o.id): self.render(o, trades, account)
                           for o in page}, "count": len(closed)}

    async def query_orders(self, call: Call) -> Any:
        """Unknown txids are left out of the answer (ccxt then raises OrderNotFound)."""
        txids = call.require("txid").split(",")
        if len(txids) > QUERY_MAX_TXIDS:
            raise render.error(f"{render.INVALID_ARGUMENTS}:txid")
        account, found = call.owner(), []
        for txid in txids:
            order_id = render.parse_txid(txid)
            if order_id is None:
                raise render.error(render.INVALID_ORDER)
            order = account.orders.get(order_id)
            if order is not None and order.kind is _SPOT:
                found.append(order)
        trades = call.flag("trades")
        return {render.order_txid(o.id): self.render(o, trades, call.owner())
                for o in self._tagged(call, found)}

    async def add_order(self, call: Call) -> Any:
        account = call.owner()
        pair = self.state.pair(call.require("pair"))
        req, volume = self._order_request(call, pair)
        descr = render.description(req.side.value, volume, pair, req.price, req.trigger,
                                   req.leverage)
        if call.flag("validate"):
            self._validate_only(req, pair)
            return {"descr": {"order": descr}}
        self.state.charge(self.state.trades, (account.api_key, pair.key), 1, TRADING_COUNTER,
                     "trading_counter", render.ORDER_RATE_LIMIT)
        try:
            order = self.state.sim.place_order(account, req, self.state.fees)
        except Rejection as exc:
            raise render.rejection(exc) from exc
        return {"descr": {"order": descr}, "txid": [render.order_txid(order.id)]}

    def _order_request(self, call: Call, pair: KrakenPair) -> tuple[OrderRequest, str]:
        """AddOrder's form → an order; `viqc` (market buy by quote amount) included."""
        side = call.require("type")
        if side not in ("buy", "sell"):
            raise render.error(f"{render.INVALID_ARGUMENTS}:type")
        kind, price, trigger = kraken_account.order_kind(call, Side(side))
        volume = call.decimal("volume")
        if volume is None or volume <= 0:
            raise render.error(f"{render.INVALID_ARGUMENTS}:volume")
        flags = [f for f in call.params.get("oflags", "").split(",") if f]
        if not set(flags) <= _ORDER_FLAGS:
            raise render.error(f"{render.INVALID_ARGUMENTS}:oflags")
        viqc = "viqc" in flags
        if viqc and (kind is not OrderType.MARKET or trigger is not None or side != "buy"):
            raise render.error(f"{render.INVALID_ARGUMENTS}:viqc")
        tif = (call.params.get("timeinforce") or "GTC").upper()
        if tif not in ("GTC", "IOC"):
            raise render.error(f"{render.INVALID_ARGUMENTS}:timeinforce")
        if not viqc and volume < pair.inst.min_qty:
            raise render.error(render.ORDER_MINIMUM)
        cl_ord_id = call.params.get("cl_ord_id") or None
        kept = [f for f in flags if f not in ("fcib", "fciq")]
        tags = OrderTags(call.integer("userref"), cl_ord_id, ",".join(["fciq", *kept]))
        req = OrderRequest(
            symbol=pair.inst.symbol, side=Side(side), type=kind,
            qty=Decimal(0) if viqc else volume, price=price, client_id=cl_ord_id,
            time_in_force=TimeInForce(tif), quote_qty=volume if viqc else None,
            trigger=trigger, trigger_now=True, post_only="post" in flags, note=tags)
        req = margin_request(call.owner(), pair, call.params.get("leverage"), req)
        return req, wire.fixed(volume, render.VOLUME_DECIMALS)

    def _validate_only(self, req: OrderRequest, pair: KrakenPair) -> None:
        """`validate=true`: check the order's parameters, place nothing."""
        current = self.state.sim.market.price(pair.inst.symbol)
        qty = req.qty if req.quote_qty is None else (req.quote_qty / current).quantize(
            pair.inst.step_size, rounding="ROUND_DOWN")
        try:
            matching.validate(pair.inst, qty, req.price, current)
        except Rejection as exc:
            raise render.rejection(exc) from exc

    async def cancel_order(self, call: Call) -> Any:
        """By `cl_ord_id`, by txid, or by userref (every open order carrying it)."""
        account = call.owner()
        orders = self._cancel_targets(call, account)
        now = self.state.sim.clock.now_ms()
        for order in orders:
            pair = self.state.pair_of(order.symbol)
            self.state.charge(self.state.trades, (account.api_key, pair.key),
                         _cancel_penalty((now - order.created_ms) / 1000), TRADING_COUNTER,
                         "trading_counter", render.ORDER_RATE_LIMIT)
            try:
                self.state.sim.cancel_order(account, order)
            except Rejection as exc:
                raise render.rejection(exc) from exc
        return {"count": len(orders)}

    def _cancel_targets(self, call: Call, account: Account) -> list[Order]:
        cl_ord_id = call.params.get("cl_ord_id")
        if cl_ord_id:
            matches = [o for o in account.open_orders() if o.client_id == cl_ord_id]
        else:
            txid = call.require("txid")
            if txid.lstrip("-").isdigit():
                return [o for o in account.open_orders() if o.kind is _SPOT
                        and tags_of(o).userref == int(txid)]
            order_id = render.parse_txid(txid)
            order = account.orders.get(order_id) if order_id is not None else None
            matches = [order] if order is not None else []
        if not matches or matches[0].kind is not _SPOT or not matches[0].status.is_open:
            raise render.error(render.UNKNOWN_ORDER)
        return matches

    def render(self, order: Order, trades: bool, account: Account) -> dict[str, Any]:
        tags = tags_of(order)
        return render.order(order, self.state.pair_of(order.symbol), tags, trades=trades,
                            fills=account.fills_of(order.id) if trades else ())

    def _tagged(self, call: Call, orders: list[Order]) -> list[Order]:
        """Apply the `userref` and `cl_ord_id` filters the order queries accept."""
        userref, cl_ord_id = call.integer("userref"), call.params.get("cl_ord_id")
        if userref is None and not cl_ord_id:
            return orders
        return [o for o in orders
                if (userref is None or tags_of(o).userref == userref)
                and (not cl_ord_id or tags_of(o).cl_ord_id == cl_ord_id)]


def _cancel_penalty(age_s: float) -> int:
    for younger_than, points in CANCEL_PENALTIES:
        if age_s < younger_than:
            return points
    return 0
