"""OKX v5 algo orders: `trade/order-algo` and its pending, history, detail and cancel.

Simulated `ordType`s: `conditional` (one stop-loss `slTriggerPx`/`slOrdPx` or one
take-profit `tpTriggerPx`/`tpOrdPx`; an order price of -1 means market) and
`trigger` (`triggerPx`/`orderPx`, fires in the direction the price must move). A
stop-loss whose trigger the last price has already passed is refused as OKX does
(51278/51280, take-profits 51277/51279). Until it fires an algo order is only an
algo order (`live`; not in `orders-pending`, not found by `trade/order`); once it
fires it is `effective` with `ordId`, the plain order that then works (the same id
here), which Freqtrade fetches next.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import okx_wire as render
from ctsd.sim.accounts import (
    Account,
    Order,
    OrderStatus,
    OrderType,
    Permission,
    Rejection,
    RejectKind,
    Side,
    Trigger,
)
from ctsd.sim.market import InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.okx_deriv import order_sides
from ctsd.sim.okx_order_wire import decimal_field
from ctsd.sim.okx_wire import OrderFailure
from ctsd.sim.ratelimit import RateRule
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.market import Instrument
    from ctsd.sim.okx import Call, OkxSim

ALGO_TYPES = ("conditional", "trigger")
_WOULD_FIRE = {  # (stop-loss, sell) → OKX's refusal of a trigger already passed
    (True, True): ("51280", "SL trigger price cannot be higher than the last price"),
    (True, False): ("51278", "SL trigger price cannot be lower than the last price"),
    (False, True): ("51279", "TP trigger price cannot be lower than the last price"),
    (False, False): ("51277", "TP trigger price cannot be higher than the last price"),
}


@dataclass(frozen=True, slots=True)
class AlgoTags:
    ord_type: str
    td_mode: str
    algo_cl_ord_id: str
    stop_loss: bool
    order_px: str
    """As sent: a price, or -1 for market."""


class OkxAlgo:
    def __init__(self, state: OkxSim) -> None:
        self.state = state
        self.tags: dict[int, AlgoTags] = {}
        state.sim.on_reset(self.tags.clear)

    def rows(self) -> list[tuple[Any, ...]]:
        read, trade = Permission.READ, Permission.TRADE
        return [
            ("POST", "trade/order-algo", trade, self.place, RateRule(20, 2), "UID"),
            ("POST", "trade/cancel-algos", trade, self.cancel, RateRule(20, 2), "UID"),
            ("GET", "trade/order-algo", read, self.detail, RateRule(20, 2), "UID"),
            ("GET", "trade/orders-algo-pending", read, self.pending, RateRule(20, 2), "UID"),
            ("GET", "trade/orders-algo-history", read, self.history, RateRule(20, 2), "UID"),
        ]

    # --- place and cancel -----------------------------------------------------------------

    async def place(self, call: Call) -> Any:
        (entry,) = call.entries(batch=False)
        try:
            result = self._place(call.owner(), entry)
        except OrderFailure as exc:
            return {"code": "1", "msg": "", "data": [{
                "algoId": "", "clOrdId": "", "algoClOrdId": str(entry.get("algoClOrdId") or ""),
                "sCode": exc.code, "sMsg": exc.msg, "tag": ""}]}
        return render.ok([result])

    def _place(self, account: Account, entry: dict[str, Any]) -> dict[str, Any]:
        inst = self.state.entry_instrument(entry)
        ord_type = str(entry.get("ordType") or "")
        if ord_type not in ALGO_TYPES:
            raise OrderFailure("51000", "Parameter ordType error")
        side = str(entry.get("side") or "")
        if side not in ("buy", "sell"):
            raise OrderFailure("51000", "Parameter side error")
        sz = decimal_field(entry, "sz")
        if sz is None:
            raise OrderFailure("50014", "Parameter sz can not be empty")
        trigger_px, order_px, stop_loss = self._trigger_fields(entry, ord_type)
        last = self.state.sim.market.price(inst.symbol)
        sell = side == "sell"
        rises = (not sell) if stop_loss else sell
        if ord_type == "trigger":
            rises = trigger_px > last
        trigger = Trigger(trigger_px, rises=rises)
        market = order_px == "-1"
        ct_val = Decimal(1) if inst.kind is InstrumentKind.SPOT else render.contract_value(inst)
        algo_id = str(entry.get("algoClOrdId") or "")
        position_side = margin_mode = None
        if inst.kind is InstrumentKind.LINEAR:  # posSide and tdMode pick the position slot
            position_side, margin_mode = order_sides(
                account, inst, str(entry.get("posSide") or ""), str(entry.get("tdMode") or ""))
        request = OrderRequest(
            symbol=inst.symbol, side=Side(side), type=OrderType.MARKET if market else
            OrderType.LIMIT, qty=sz * ct_val, price=None if market else Decimal(order_px),
            client_id=algo_id or None, reduce_only=entry.get("reduceOnly") in (True, "true"),
            trigger=trigger, position_side=position_side, margin_mode=margin_mode)
        try:
            order = self.state.sim.place_order(account, request, self.state.fees(inst.kind))
        except Rejection as exc:
            if exc.kind is RejectKind.WOULD_TRIGGER:
                raise OrderFailure(*_WOULD_FIRE[(stop_loss, sell)]) from exc
            raise render.order_failure(exc.kind, inst, not sell) from exc
        self.tags[order.id] = AlgoTags(ord_type, str(entry.get("tdMode") or ""), algo_id,
                                       stop_loss, order_px)
        return {"algoId": str(order.id), "clOrdId": "", "algoClOrdId": algo_id, "sCode": "0",
                "sMsg": "", "tag": str(entry.get("tag") or "")}

    @staticmethod
    def _trigger_fields(entry: dict[str, Any], ord_type: str) -> tuple[Decimal, str, bool]:
        """(trigger price, order price as sent, is a stop-loss)."""
        if ord_type == "trigger":
            names = [("triggerPx", "orderPx", False)]
        else:
            names = [(f"{k}TriggerPx", f"{k}OrdPx", k == "sl") for k in ("sl", "tp")
                     if entry.get(f"{k}TriggerPx")]
            if len(names) != 1:
                raise OrderFailure("51000", "Parameter slTriggerPx error")
        trigger_name, price_name, stop_loss = names[0]
        trigger = decimal_field(entry, trigger_name)
        if trigger is None:
            raise OrderFailure("50014", f"Parameter {trigger_name} can not be empty")
        order_px = str(entry.get(price_name) or "")
        if order_px != "-1" and decimal_field(entry, price_name) is None:
            raise OrderFailure("50014", f"Parameter {price_name} can not be empty")
        return trigger, order_px, stop_loss

    async def cancel(self, call: Call) -> Any:
        entries = call.entries(batch=True)
        results = []
        for entry in entries:
            order = self._find(call.owner(), str(entry.get("algoId") or ""), None)
            code, msg = "0", ""
            if order is None:
                code, msg = "51603", "Order does not exist"
            elif not order.untriggered or not order.status.is_open:
                code, msg = "51400", "Cancellation failed as the order has been filled, " \
                                     "canceled or does not exist."
            else:
                self.state.sim.cancel_order(call.owner(), order)
            results.append({"algoId": str(entry.get("algoId") or ""), "sCode": code,
                            "sMsg": msg, "clOrdId": "", "algoClOrdId": "", "tag": ""})
        failed = all(r["sCode"] != "0" for r in results)
        return {"code": "1" if failed else "0", "msg": "", "data": results}

    # --- queries ---------------------------------------------------------------------------

    async def detail(self, call: Call) -> Any:
        order = self._find(call.owner(), call.params.get("algoId"),
                           call.params.get("algoClOrdId"))
        if order is None:
            raise render.error(200, "51603", "Order does not exist")
        return render.ok([self.render(order)])

    async def pending(self, call: Call) -> Any:
        return self._list(call, lambda o: o.untriggered and o.status.is_open)

    async def history(self, call: Call) -> Any:
        state = call.params.get("state")
        if not state and not call.params.get("algoId"):
            raise render.error(200, "50015", "Either parameter state or algoId is required.")
        return self._list(call, lambda o: not (o.untriggered and o.status.is_open),
                          state=state)

    def _list(self, call: Call, keep: Any, state: str | None = None) -> Any:
        types = set(call.require("ordType").split(","))
        inst_id, algo_id = call.params.get("instId"), call.params.get("algoId")
        orders = sorted((o for o in call.owner().orders.values()
                         if o.id in self.tags and keep(o)), key=lambda o: -o.id)
        rendered = [self.render(o) for o in orders]
        return render.ok([r for r in rendered if r["ordType"] in types
                          and inst_id in (None, "", r["instId"])
                          and algo_id in (None, "", r["algoId"])
                          and state in (None, "", r["state"])][:100])

    def _find(self, account: Account, algo_id: str | None,
              algo_cl_ord_id: str | None) -> Order | None:
        try:
            if algo_id:
                order = account.find_order(int(algo_id) if algo_id.isdigit() else -1)
            elif algo_cl_ord_id:
                order = account.find_order(client_id=algo_cl_ord_id)
            else:
                return None
        except Rejection:
            return None
        return order if order.id in self.tags else None

    def render(self, order: Order) -> dict[str, Any]:
        assert order.trigger is not None
        inst = self.state.sim.market.catalog.instruments[order.symbol]
        tags = self.tags[order.id]
        fired = not order.untriggered
        state = "effective" if fired else (
            "live" if order.status.is_open else
            "canceled" if order.status is OrderStatus.CANCELED else "order_failed")
        trigger = plain(order.trigger.price)
        sl = tags.ord_type == "conditional" and tags.stop_loss
        tp = tags.ord_type == "conditional" and not tags.stop_loss
        return {
            "activePx": "", "actualPx": plain(order.average) if order.average else "",
            "actualSide": ("sl" if sl else "tp" if tp else "") if fired else "",
            "actualSz": _size(inst, order.filled) if fired else "",
            "algoClOrdId": tags.algo_cl_ord_id, "algoId": str(order.id),
            "amendPxOnTriggerType": "0", "attachAlgoOrds": [], "cTime": str(order.created_ms),
            "callbackRatio": "", "callbackSpread": "", "ccy": "", "clOrdId": "",
            "closeFraction": "", "failCode": "", "instId": render.inst_id(inst),
            "instType": render.inst_type(inst), "last": plain(
                self.state.sim.market.price(order.symbol)), "lever": "", "moveTriggerPx": "",
            "ordId": str(order.id) if fired else "", "ordIdList": [str(order.id)] if fired
            else [], "ordPx": tags.order_px if tags.ord_type == "trigger" else "",
            "ordType": tags.ord_type, "posSide": "net", "pxLimit": "", "pxSpread": "",
            "pxVar": "", "quickMgnType": "", "reduceOnly": "true" if order.reduce_only
            else "false", "side": order.side.value, "slOrdPx": tags.order_px if sl else "",
            "slTriggerPx": trigger if sl else "", "slTriggerPxType": "last" if sl else "",
            "state": state, "sz": _size(inst, order.qty), "szLimit": "", "tag": "",
            "tdMode": tags.td_mode, "tgtCcy": "", "timeInterval": "",
            "tpOrdPx": tags.order_px if tp else "", "tpTriggerPx": trigger if tp else "",
            "tpTriggerPxType": "last" if tp else "",
            "triggerPx": trigger if tags.ord_type == "trigger" else "",
            "triggerPxType": "last" if tags.ord_type == "trigger" else "",
            "triggerTime": str(order.triggered_ms or ""), "uTime": str(order.updated_ms),
        }


def _size(inst: Instrument, qty: Decimal) -> str:
    return render.size(inst, qty)
