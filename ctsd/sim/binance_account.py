"""Binance orders beyond market and limit, and the account's history and fee rates.

- Order types: spot MARKET, LIMIT, LIMIT_MAKER, STOP_LOSS, STOP_LOSS_LIMIT,
  TAKE_PROFIT, TAKE_PROFIT_LIMIT (`stopPrice`); a stop that the last price has
  already reached is refused with -2010 "Order would immediately trigger.", a
  LIMIT_MAKER that would take with -2010. Futures conditional orders (STOP,
  STOP_MARKET, TAKE_PROFIT, TAKE_PROFIT_MARKET) go through the algo service
  (`/fapi/v1/algoOrder`, ids `algoId`, `clientAlgoId`, `triggerPrice`), as Binance
  moved them in December 2025 and ccxt 4.5.90 sends them; once triggered the algo
  order reports `actualOrderId`, the plain order that then works (same id here).
- History: `myTrades` / `userTrades` (own fills, per-fill `commission` and
  `commissionAsset`; `startTime`/`endTime` at most 24 h apart on spot, 7 days on
  futures), `allOrders` (`orderId` = from this id up), newest `limit` when no
  bound is given, oldest first.
- Fee rates: `/sapi/v1/asset/tradeFee`, `/api/v3/account/commission`,
  `/fapi/v1/commissionRate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from ctsd.sim import accounts
from ctsd.sim import binance_wire as render
from ctsd.sim.binance_deriv import order_position_side
from ctsd.sim.market import InstrumentKind
from ctsd.sim.matching import OrderRequest
from ctsd.sim.wire import fixed, plain

if TYPE_CHECKING:
    from ctsd.sim.binance import BinanceSim
    from ctsd.sim.binance_api import Call
    from ctsd.sim.market import Instrument

HISTORY_MAX = 1000
SPOT_WINDOW_MS = 86_400_000
FUTURES_WINDOW_MS = 7 * 86_400_000
SPOT_TYPES = {
    "MARKET": (accounts.OrderType.MARKET, None), "LIMIT": (accounts.OrderType.LIMIT, None),
    "LIMIT_MAKER": (accounts.OrderType.LIMIT, None),
    "STOP_LOSS": (accounts.OrderType.MARKET, True),
    "STOP_LOSS_LIMIT": (accounts.OrderType.LIMIT, True),
    "TAKE_PROFIT": (accounts.OrderType.MARKET, False),
    "TAKE_PROFIT_LIMIT": (accounts.OrderType.LIMIT, False),
}
"""Type → (how it works once live, stop-loss (True) or take-profit (False) or plain)."""
FUTURES_TYPES = {
    "MARKET": (accounts.OrderType.MARKET, None), "LIMIT": (accounts.OrderType.LIMIT, None),
    "STOP": (accounts.OrderType.LIMIT, True), "STOP_MARKET": (accounts.OrderType.MARKET, True),
    "TAKE_PROFIT": (accounts.OrderType.LIMIT, False),
    "TAKE_PROFIT_MARKET": (accounts.OrderType.MARKET, False),
}
_ALGO_STATUS = {"new": "NEW", "filled": "FINISHED", "canceled": "CANCELED", "expired": "EXPIRED"}
_T = TypeVar("_T")


def order_request(call: Call, inst: Instrument, *, algo: bool = False) -> OrderRequest:
    """POST order (or algoOrder) parameters as a core order."""
    try:
        side = accounts.Side(call.require("side").lower())
    except ValueError as exc:
        raise render.error(400, -1117, "Invalid side.") from exc
    raw_type = call.require("type").upper()
    types = FUTURES_TYPES if call.futures else SPOT_TYPES
    if raw_type not in types or (call.futures and algo != (types[raw_type][1] is not None)):
        raise render.error(400, -1116, "Invalid orderType.")
    kind, stop_loss = types[raw_type]
    qty, quote_qty = call.decimal("quantity"), call.decimal("quoteOrderQty")
    if qty is None and (quote_qty is None or call.futures or kind is accounts.OrderType.LIMIT):
        raise render.missing("quantity")
    trigger = None
    if stop_loss is not None:
        stop = call.decimal("triggerPrice" if algo else "stopPrice")
        if stop is None:
            raise render.missing("triggerPrice" if algo else "stopPrice")
        trigger = accounts.Trigger(stop, rises=stop_loss is (side is accounts.Side.BUY))
    tif = accounts.TimeInForce.GTC
    post_only = raw_type == "LIMIT_MAKER"
    if kind is accounts.OrderType.LIMIT:
        raw_tif = call.params.get("timeInForce") or ("GTC" if post_only or algo else None)
        if raw_tif is None:
            raise render.missing("timeInForce")
        post_only = post_only or (call.futures and raw_tif == "GTX")
        tif = (accounts.TimeInForce(raw_tif) if raw_tif in accounts.TimeInForce.__members__
               else accounts.TimeInForce.GTC)
        if call.decimal("price") is None:
            raise render.missing("price")
    client_id = call.params.get("clientAlgoId" if algo else "newClientOrderId")
    position_side = None
    if call.futures:
        hedge = call.owner().perp.settings.is_hedge(inst.symbol)
        position_side = order_position_side(call, hedge)
    return OrderRequest(
        symbol=inst.symbol, side=side, type=kind, qty=qty or Decimal(0),
        price=call.decimal("price") if kind is accounts.OrderType.LIMIT else None,
        client_id=client_id,
        time_in_force=tif, reduce_only=call.params.get("reduceOnly") == "true",
        quote_qty=quote_qty if qty is None else None, trigger=trigger, post_only=post_only,
        position_side=position_side)


def _position_side(account: accounts.Account, order_id: int) -> str:
    return account.orders[order_id].position_side.value.upper()


def _window(items: Sequence[_T], call: Call, time_of: Callable[[_T], int],
            id_of: Callable[[_T], int], from_name: str) -> list[_T]:
    """Binance's history paging: from an id up, or within start/end, else the newest."""
    limit = min(int(call.params.get("limit") or 500), HISTORY_MAX)
    start, end = call.params.get("startTime"), call.params.get("endTime")
    span = FUTURES_WINDOW_MS if call.futures else SPOT_WINDOW_MS
    if start and end and int(end) - int(start) > span:
        raise render.error(400, -1127, f"More than {span // 3_600_000} hours between "
                                       "startTime and endTime.")
    raw_from = call.params.get(from_name)
    if raw_from:
        return [i for i in items if id_of(i) >= int(raw_from)][:limit]
    if start:
        begin = int(start)
        stop = int(end) if end else begin + span
        return [i for i in items if begin <= time_of(i) <= stop][:limit]
    if end:
        items = [i for i in items if time_of(i) <= int(end)]
    return list(items[-limit:])


class BinanceAccount:
    """The handlers; `state` gives the instrument maps and the simulator."""

    def __init__(self, state: BinanceSim) -> None:
        self.state = state

    def _kind(self, call: Call) -> InstrumentKind:
        return InstrumentKind.LINEAR if call.futures else InstrumentKind.SPOT

    # --- history ------------------------------------------------------------------------

    async def my_trades(self, call: Call) -> Any:
        return self.trades_of(call, accounts.SPOT_WALLET)

    def trades_of(self, call: Call, wallet: str) -> list[dict[str, Any]]:
        """`myTrades` of one wallet (spot, or a margin wallet for `/sapi/v1/margin/myTrades`)."""
        inst = self.state.instrument(call, call.require("symbol"))
        fills = [f for f in call.owner().fills if f.symbol == inst.symbol and f.wallet == wallet]
        if call.params.get("orderId"):
            fills = [f for f in fills if str(f.order_id) == call.params["orderId"]]
        chosen = _window(fills, call, lambda f: f.time_ms, lambda f: f.trade_id, "fromId")
        return [self._fill(call, inst, f) for f in chosen]

    def _fill(self, call: Call, inst: Instrument, f: accounts.Fill) -> dict[str, Any]:
        buyer = f.side is accounts.Side.BUY
        if not call.futures:
            return {
                "symbol": render.market_id(inst), "id": f.trade_id, "orderId": f.order_id,
                "orderListId": -1, "price": fixed(f.price), "qty": fixed(f.qty),
                "quoteQty": fixed(f.quote_qty), "commission": fixed(f.fee),
                "commissionAsset": f.fee_asset, "time": f.time_ms, "isBuyer": buyer,
                "isMaker": f.maker, "isBestMatch": True,
            }
        return {
            "buyer": buyer, "commission": plain(f.fee), "commissionAsset": f.fee_asset,
            "id": f.trade_id, "maker": f.maker, "orderId": f.order_id, "price": plain(f.price),
            "qty": plain(f.qty), "quoteQty": plain(f.quote_qty),
            "realizedPnl": plain(f.realized_pnl), "side": f.side.value.upper(),
            "positionSide": _position_side(call.owner(), f.order_id),
            "symbol": render.market_id(inst), "time": f.time_ms,
        }

    async def all_orders(self, call: Call) -> Any:
        return self.orders_of(call, accounts.SPOT_WALLET)

    def orders_of(self, call: Call, wallet: str) -> list[dict[str, Any]]:
        inst = self.state.instrument(call, call.require("symbol"))
        orders = sorted((o for o in call.owner().orders.values() if o.symbol == inst.symbol
                         and o.wallet == wallet and not (call.futures and o.untriggered)),
                        key=lambda o: o.id)
        chosen = _window(orders, call, lambda o: o.created_ms, lambda o: o.id, "orderId")
        if call.futures:
            return [render.futures_order(o, inst, query=True) for o in chosen]
        return [render.spot_order(o, inst, query=True) for o in chosen]

    # --- fee rates ------------------------------------------------------------------------

    async def trade_fee(self, call: Call) -> Any:
        fees = self.state.fees(call.surface)
        wanted = call.params.get("symbol")
        listed = self.state.symbols[call.surface]
        if wanted is not None and wanted not in listed:
            raise render.error(400, -1121, "Invalid symbol.")
        return [{"symbol": name, "makerCommission": plain(fees.maker),
                 "takerCommission": plain(fees.taker)}
                for name in listed if wanted in (None, name)]

    async def commission(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        fees = self.state.fees(call.surface)
        if call.futures:
            return {"symbol": render.market_id(inst), "makerCommissionRate": plain(fees.maker),
                    "takerCommissionRate": plain(fees.taker)}
        rates = {"maker": fixed(fees.maker), "taker": fixed(fees.taker),
                 "buyer": fixed(Decimal(0)), "seller": fixed(Decimal(0))}
        zero = dict.fromkeys(rates, fixed(Decimal(0)))
        return {"symbol": render.market_id(inst), "standardCommission": rates,
                "specialCommission": zero, "taxCommission": zero,
                "discount": {"enabledForAccount": False, "enabledForSymbol": False,
                             "discountAsset": "BNB", "discount": "0.75000000"}}

    # --- futures algo (conditional) orders ---------------------------------------------------

    async def new_algo(self, call: Call) -> Any:
        if call.params.get("algoType") != "CONDITIONAL":
            raise render.error(400, -1102, "Mandatory parameter 'algoType' was not sent, was "
                                           "empty/null, or malformed.")
        inst = self.state.instrument(call, call.require("symbol"))
        req = order_request(call, inst, algo=True)
        try:
            order = self.state.sim.place_order(call.owner(), req, self.state.fees(call.surface))
        except accounts.Rejection as exc:
            raise render.rejection(exc, futures=True) from exc
        return self.algo(order, inst)

    def _find_algo(self, call: Call) -> tuple[Instrument, accounts.Order]:
        raw_id, client_id = call.params.get("algoId"), call.params.get("clientAlgoId")
        if not raw_id and not client_id:
            raise render.missing("algoId")
        try:
            order = call.owner().find_order(
                (int(raw_id) if raw_id.isdigit() else -1) if raw_id else None, client_id)
        except accounts.Rejection as exc:
            raise render.rejection(exc, futures=True) from exc
        if order.trigger is None or order.kind is not InstrumentKind.LINEAR:
            raise render.rejection(accounts.Rejection(accounts.RejectKind.UNKNOWN_ORDER),
                                   futures=True)
        return self.state.sim.market.catalog.instruments[order.symbol], order

    async def get_algo(self, call: Call) -> Any:
        inst, order = self._find_algo(call)
        return self.algo(order, inst)

    async def cancel_algo(self, call: Call) -> Any:
        _, order = self._find_algo(call)
        if not order.untriggered:
            raise render.rejection(accounts.Rejection(accounts.RejectKind.ORDER_NOT_OPEN),
                                   futures=True, cancel=True)
        self.state.sim.cancel_order(call.owner(), order)
        return {"algoId": order.id, "clientAlgoId": order.client_id, "code": "200",
                "msg": "success"}

    async def open_algos(self, call: Call) -> Any:
        symbol = call.params.get("symbol")
        inst = self.state.instrument(call, symbol) if symbol else None
        catalog = self.state.sim.market.catalog.instruments
        return [self.algo(o, catalog[o.symbol]) for o in call.owner().open_orders()
                if o.untriggered and o.kind is InstrumentKind.LINEAR
                and (inst is None or o.symbol == inst.symbol)]

    async def all_algos(self, call: Call) -> Any:
        inst = self.state.instrument(call, call.require("symbol"))
        orders = sorted((o for o in call.owner().orders.values()
                         if o.symbol == inst.symbol and o.trigger is not None),
                        key=lambda o: o.id)
        chosen = _window(orders, call, lambda o: o.created_ms, lambda o: o.id, "algoId")
        return [self.algo(o, inst) for o in chosen]

    @staticmethod
    def algo(order: accounts.Order, inst: Instrument) -> dict[str, Any]:
        assert order.trigger is not None
        if order.untriggered:
            status = "NEW" if order.status.is_open else _ALGO_STATUS[order.status.value]
        else:
            status = "TRIGGERED" if order.status.is_open else "FINISHED"
        out: dict[str, Any] = {
            "algoId": order.id, "clientAlgoId": order.client_id, "algoType": "CONDITIONAL",
            "orderType": render.order_type(order, futures=True), "symbol": render.market_id(inst),
            "side": order.side.value.upper(), "positionSide": order.position_side.value.upper(),
            "timeInForce": order.time_in_force.value, "quantity": plain(order.qty),
            "algoStatus": status, "triggerPrice": plain(order.trigger.price),
            "price": plain(order.price or Decimal(0)), "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE", "closePosition": False, "priceProtect": False,
            "reduceOnly": order.reduce_only, "createTime": order.created_ms,
            "updateTime": order.updated_ms, "triggerTime": order.triggered_ms or 0,
            "goodTillDate": 0,
        }
        if not order.untriggered:
            out |= {"actualOrderId": str(order.id),
                    "actualPrice": plain(order.average or Decimal(0))}
        return out
