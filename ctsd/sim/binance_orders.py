"""Binance orders on spot (`/api/v3/order`) and USDⓈ-M futures (`/fapi/v1/order`): place,
query, cancel, and the open orders.

A spot answer is `newOrderRespType` ACK, RESULT or FULL (FULL lists the fills, each
with its trade id, price, commission and its asset); futures conditional orders live
in the algo service (`ctsd.sim.binance_account`), so the plain order endpoints do not
show them until they fire.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctsd.sim import binance_account
from ctsd.sim import binance_wire as render
from ctsd.sim.accounts import SPOT_WALLET, Order, Rejection, RejectKind
from ctsd.sim.market import Instrument

if TYPE_CHECKING:
    from ctsd.sim.binance import BinanceSim
    from ctsd.sim.binance_api import Call


class BinanceOrders:
    """The order handlers; `state` gives the symbol maps, fees and the simulator."""

    def __init__(self, state: BinanceSim) -> None:
        self.state = state

    async def new_order(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        req = binance_account.order_request(call, inst)
        try:
            order = self.state.sim.place_order(call.owner(), req, self.state.fees(call.surface))
        except Rejection as exc:
            raise render.rejection(exc, futures=call.futures) from exc
        if call.futures:
            return render.futures_order(order, inst)
        resp_type = call.params.get("newOrderRespType", "FULL")
        return render.spot_order(order, inst, resp_type=resp_type,
                                 fills=call.owner().fills_of(order.id))

    async def get_order(self, call: Call) -> Any:
        inst, order = self.find_order(call, SPOT_WALLET)
        if call.futures:
            return render.futures_order(order, inst, query=True)
        return render.spot_order(order, inst, query=True)

    async def cancel_order(self, call: Call) -> Any:
        inst, order = self.find_order(call, SPOT_WALLET, cancel=True)
        try:
            self.state.sim.cancel_order(call.owner(), order)
        except Rejection as exc:
            raise render.rejection(exc, futures=call.futures, cancel=True) from exc
        if call.futures:
            return render.futures_order(order, inst)
        answer = render.spot_order(order, inst, resp_type="RESULT", cancel=True)
        # Spot names the cancel request itself here (its newClientOrderId, else one of
        # Binance's making); the order's own id is origClientOrderId.
        answer["clientOrderId"] = call.params.get("newClientOrderId") or f"cancel{order.id}"
        return answer

    async def open_orders(self, call: Call) -> Any:
        symbol = None
        if "symbol" in call.params:
            symbol = self.state.instrument(call, call.params["symbol"]).symbol
        orders = self.open_of(call, symbol, SPOT_WALLET)
        instruments = self.state.sim.market.catalog.instruments
        if call.futures:
            return [render.futures_order(o, instruments[o.symbol], query=True) for o in orders]
        return [render.spot_order(o, instruments[o.symbol], query=True) for o in orders]

    def open_of(self, call: Call, symbol: str | None, wallet: str) -> list[Order]:
        """The wallet's open orders of the call's surface (futures algo orders apart)."""
        kind = self.state.kind(call.surface)
        return [o for o in call.owner().open_orders(symbol) if o.kind is kind
                and o.wallet == wallet and not (call.futures and o.untriggered)]

    def find_order(self, call: Call, wallet: str, cancel: bool = False,
                   ) -> tuple[Instrument, Order]:
        """The order by `orderId` or `origClientOrderId`, if it is this symbol's and wallet's."""
        inst = self.state.instrument(call, call.require("symbol"))
        raw_id = call.params.get("orderId")
        client_id = call.params.get("origClientOrderId")
        if not raw_id and not client_id:
            raise render.missing("orderId")
        order_id = (int(raw_id) if raw_id.isdigit() else -1) if raw_id else None
        try:
            order = call.owner().find_order(order_id, client_id)
        except Rejection as exc:
            raise render.rejection(exc, futures=call.futures, cancel=cancel) from exc
        if order.symbol != inst.symbol or order.wallet != wallet or (
                call.futures and order.untriggered):
            unknown = Rejection(RejectKind.UNKNOWN_ORDER)
            raise render.rejection(unknown, futures=call.futures, cancel=cancel)
        return inst, order
