"""Bybit v5 options (`category=option`): instruments, tickers, limit orders, open and past
orders, positions and delivery records, traded from the unified wallet.

Over `ctsd.sim.options` and `ctsd.sim.option_trading`: USDT-settled contracts of one
unit of the underlying, ids like `BTC-16JUN25-60000-C-USDT` (ccxt reads the strike
and the type from the id's third and fourth parts); premiums and the short margin
come from the unified wallet's USDT. Orders are Limit only (retCode 10001
otherwise); a key without the options permission (`OptionsTrade`) gets 10005.
Expired contracts settle in cash on the path clock and are listed by
`/v5/asset/delivery-record`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import bybit_wire as render
from ctsd.sim import option_trading
from ctsd.sim.accounts import SPOT_WALLET, Order, OrderStatus, Permission, Rejection, Side
from ctsd.sim.bybit_wire import Call
from ctsd.sim.option_trading import OptionSpec, tick_and_step_spec
from ctsd.sim.options import OptionContract
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.bybit import BybitSim

OPTION = "option"
_STATUS = {OrderStatus.NEW: "New", OrderStatus.FILLED: "Filled",
           OrderStatus.CANCELED: "Cancelled", OrderStatus.EXPIRED: "Cancelled"}


def option_id(c: OptionContract) -> str:
    day = datetime.fromtimestamp(c.expiry_ms / 1000, UTC).strftime("%d%b%y").upper()
    return f"{c.underlying}-{day}-{c.strike_text}-{c.letter}-{c.settle}"


def spec_of(c: OptionContract) -> OptionSpec:
    return tick_and_step_spec(c, SPOT_WALLET)


class BybitOptions:
    def __init__(self, state: BybitSim) -> None:
        self.state = state

    def _listed(self, call: Call) -> list[OptionContract]:
        base = call.text("baseCoin")
        return [c for c in self.state.sim.options.contracts() if base in (None, c.underlying)]

    def _contract(self, call: Call, symbol: str | None) -> OptionContract:
        found = next((c for c in self.state.sim.options.contracts()
                      if option_id(c) == symbol), None)
        if found is None and call.account is not None:
            traded = option_trading.book_of(call.owner()).contracts.values()
            found = next((c for c in traded if option_id(c) == symbol), None)
        if found is None:
            raise render.error(*render.NOT_SUPPORTED_SYMBOLS, call.now_ms)
        return found

    @staticmethod
    def _permitted(call: Call) -> None:
        if Permission.OPTIONS not in call.owner().spec.permissions:
            raise render.error(10005, "Permission denied, please check your API key "
                                      "permissions.", call.now_ms)

    # --- market data ----------------------------------------------------------------------

    async def instruments(self, call: Call) -> Any:
        wanted = [c for c in self._listed(call) if call.text("symbol") in (None, option_id(c))]
        return {"category": OPTION, "nextPageCursor": "", "list": [{
            "symbol": option_id(c), "optionsType": "Call" if c.call else "Put",
            "status": "Trading", "baseCoin": c.underlying, "quoteCoin": c.quote,
            "settleCoin": c.settle, "launchTime": str(c.listed_ms),
            "deliveryTime": str(c.expiry_ms), "deliveryFeeRate": "0.00015",
            "priceFilter": {"minPrice": plain(spec_of(c).tick), "maxPrice": "10000000",
                            "tickSize": plain(spec_of(c).tick)},
            "lotSizeFilter": {"maxOrderQty": "500", "minOrderQty": plain(spec_of(c).min_qty),
                              "qtyStep": plain(spec_of(c).step)},
            "displayName": ""} for c in wanted]}

    async def tickers(self, call: Call) -> Any:
        symbol = call.text("symbol")
        if symbol is None and call.text("baseCoin") is None:
            raise render.error(10001, "params error: symbol or baseCoin is required",
                               call.now_ms)
        chosen = [self._contract(call, symbol)] if symbol else self._listed(call)
        chain = self.state.sim.options
        rows = []
        for c in chosen:
            mark, bid, ask = option_trading.quote(chain, c, spec_of(c))
            _, g = chain.value(c)
            iv = plain(Decimal(str(round(chain.implied_vol(c.underlying), 4))))
            spot = plain(chain.spot(c))
            rows.append({
                "symbol": option_id(c), "bid1Price": plain(bid), "bid1Size": "10",
                "bid1Iv": iv, "ask1Price": plain(ask), "ask1Size": "10", "ask1Iv": iv,
                "lastPrice": plain(mark), "highPrice24h": plain(mark),
                "lowPrice24h": plain(mark), "markPrice": plain(mark), "indexPrice": spot,
                "markIv": iv, "underlyingPrice": spot, "openInterest": "0",
                "turnover24h": "0", "volume24h": "0", "totalVolume": "0",
                "totalTurnover": "0", "delta": f"{g.delta:.8f}", "gamma": f"{g.gamma:.8f}",
                "vega": f"{g.vega:.8f}", "theta": f"{g.theta:.8f}",
                "predictedDeliveryPrice": "0", "change24h": "0"})
        return {"category": OPTION, "list": rows}

    # --- orders ---------------------------------------------------------------------------

    async def create_order(self, call: Call) -> Any:
        self._permitted(call)
        contract = self._contract(call, call.require("symbol"))
        if call.text("orderType") != "Limit":
            raise render.error(10001, "params error: options take Limit orders only",
                               call.now_ms)
        side = {"Buy": Side.BUY, "Sell": Side.SELL}.get(call.require("side"))
        qty, price = call.decimal("qty"), call.decimal("price")
        if side is None or qty is None or price is None:
            raise render.error(10001, render.lack("side, qty and price"), call.now_ms)
        sim = self.state.sim
        client_id = call.text("orderLinkId") or f"opt{sim.accounts.next_order_id()}"
        try:
            order = option_trading.place(
                call.owner(), sim.market, sim.options, contract, spec_of(contract), side, qty,
                price, self.state.fees(OPTION), sim.accounts.next_order_id(), client_id,
                post_only=call.text("timeInForce") == "PostOnly")
        except Rejection as exc:
            raise render.rejection(exc.kind, render.LINEAR, exc.detail, call.now_ms) from exc
        return {"orderId": str(order.id), "orderLinkId": order.client_id}

    def _find(self, call: Call) -> Order:
        book = option_trading.book_of(call.owner())
        raw, link = call.text("orderId"), call.text("orderLinkId")
        found = next((o for o in book.orders.values()
                      if (raw and str(o.id) == raw) or (link and o.client_id == link)), None)
        if found is None:
            raise render.error(110001, "order not exists or too late to cancel", call.now_ms)
        return found

    async def cancel_order(self, call: Call) -> Any:
        order = self._find(call)
        try:
            option_trading.cancel(call.owner(), self.state.sim.market, order)
        except Rejection as exc:
            raise render.error(110001, "order not exists or too late to cancel",
                               call.now_ms) from exc
        return {"orderId": str(order.id), "orderLinkId": order.client_id}

    async def realtime_orders(self, call: Call) -> Any:
        return self._orders(call, open_only=(call.text("openOnly") or "0") == "0")

    async def order_history(self, call: Call) -> Any:
        return self._orders(call, open_only=False, closed_only=True)

    def _orders(self, call: Call, *, open_only: bool, closed_only: bool = False) -> Any:
        book = option_trading.book_of(call.owner())
        symbol = call.text("symbol")
        rows = [self._order(o, book.contracts[o.symbol]) for o in sorted(
            book.orders.values(), key=lambda o: o.id, reverse=True)
            if (not open_only or o.status.is_open) and not (closed_only and o.status.is_open)
            and symbol in (None, option_id(book.contracts[o.symbol]))]
        return {"category": OPTION, "list": rows, "nextPageCursor": ""}

    @staticmethod
    def _order(o: Order, c: OptionContract) -> dict[str, Any]:
        return {
            "orderId": str(o.id), "orderLinkId": o.client_id, "symbol": option_id(c),
            "price": plain(o.price or Decimal(0)), "qty": plain(o.qty),
            "side": "Buy" if o.side is Side.BUY else "Sell", "orderStatus": _STATUS[o.status],
            "avgPrice": plain(o.average or Decimal(0)), "leavesQty": plain(
                o.qty - o.filled if o.status.is_open else Decimal(0)),
            "cumExecQty": plain(o.filled), "cumExecValue": plain(o.cost),
            "cumExecFee": plain(o.fee),
            "cumFeeDetail": {c.settle: plain(o.fee)} if o.fee else {},
            "timeInForce": "PostOnly" if o.post_only else "GTC",
            "orderType": "Limit", "isLeverage": "", "positionIdx": 0, "reduceOnly": False,
            "orderIv": "", "triggerPrice": "", "stopOrderType": "", "cancelType": "UNKNOWN",
            "rejectReason": "EC_NoError", "createdTime": str(o.created_ms),
            "updatedTime": str(o.updated_ms)}

    # --- positions and deliveries ---------------------------------------------------------

    async def positions(self, call: Call) -> Any:
        chain = self.state.sim.options
        symbol, base = call.text("symbol"), call.text("baseCoin")
        rows = []
        for pos in option_trading.book_of(call.owner()).open_positions():
            c = pos.contract
            if symbol not in (None, option_id(c)) or base not in (None, c.underlying):
                continue
            mark, _, _ = option_trading.quote(chain, c, spec_of(c))
            rows.append({
                "symbol": option_id(c), "side": "Buy" if pos.qty > 0 else "Sell",
                "size": plain(abs(pos.qty)), "avgPrice": plain(pos.entry),
                "positionValue": plain(abs(pos.qty) * mark), "markPrice": plain(mark),
                "unrealisedPnl": plain(pos.qty * (mark - pos.entry)),
                "cumRealisedPnl": plain(pos.realized), "positionIM": plain(pos.margin),
                "positionMM": plain(pos.margin / 2), "leverage": "", "liqPrice": "",
                "bustPrice": "", "positionBalance": "", "positionIdx": 0, "riskId": 0,
                "riskLimitValue": "", "takeProfit": "", "stopLoss": "", "trailingStop": "",
                "tpslMode": "", "adlRankIndicator": 0, "positionStatus": "Normal",
                "autoAddMargin": 0, "seq": 0, "isReduceOnly": False,
                "createdTime": str(pos.created_ms), "updatedTime": str(pos.updated_ms)})
        return {"category": OPTION, "list": rows, "nextPageCursor": ""}

    async def delivery_price(self, call: Call) -> Any:
        """`/v5/market/delivery-price` (public): expired contracts and the price they settled
        at, newest first; `symbol`, `baseCoin`, `limit` 1..200 (default 50)."""
        if call.require("category") != OPTION:
            raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)
        symbol, base = call.text("symbol"), call.text("baseCoin") or "BTC"
        limit = call.integer("limit", 50, 1, 200)
        chain = self.state.sim.options
        rows = [{"symbol": option_id(c), "deliveryPrice": plain(chain.settlement_price(c)),
                 "deliveryTime": str(c.expiry_ms)}
                for c in reversed(chain.expired(self.state.sim.market.path_ms()))
                if symbol in (None, option_id(c)) and (symbol is not None or c.underlying == base)]
        return {"category": OPTION, "nextPageCursor": "", "list": rows[:limit]}

    async def delivery_record(self, call: Call) -> Any:
        if call.require("category") != OPTION:
            raise render.error(*render.ILLEGAL_CATEGORY, call.now_ms)
        book = option_trading.book_of(call.owner())
        return {"category": OPTION, "nextPageCursor": "", "list": [{
            "deliveryTime": s.time_ms, "symbol": option_id(s.contract),
            "side": "Buy" if s.qty > 0 else "Sell", "position": plain(abs(s.qty)),
            "deliveryPrice": plain(s.settle_price), "strike": s.contract.strike_text,
            "fee": "0", "deliveryRpl": plain(s.payout)} for s in reversed(book.settlements)]}
