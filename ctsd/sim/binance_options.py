"""Binance European options (`/eapi/v1`): the option symbols, mark and ticker, the options
account, limit orders, open orders, positions, own trades, bills and exercise records.

Over `ctsd.sim.options` (the chain and its Black-Scholes marks) and
`ctsd.sim.option_trading` (orders, margin, settlement). USDT-margined contracts of
one unit of the underlying, ids like `BTC-250616-60000-C`, traded from the account's
`options` wallet (funded by a `MAIN_OPTION` transfer, or the spec's `options`
balances); a key without `enableVanillaOptions` is refused with -2015. Orders are
LIMIT only (-1116 otherwise); a new order answers `ACCEPTED` or `FILLED`. Expired
contracts settle in cash on the path clock: `bill` lists them as EXERCISE and
`exerciseHistory` gives the settlement price (`realStrikePrice`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import binance_wire as render
from ctsd.sim import option_trading
from ctsd.sim.accounts import Order, OrderStatus, Rejection, Side
from ctsd.sim.binance_api import Security, Surface, by_symbol
from ctsd.sim.option_trading import OptionSpec, tick_and_step_spec
from ctsd.sim.options import OptionContract
from ctsd.sim.wire import VenueError, plain

if TYPE_CHECKING:
    from ctsd.sim.binance import BinanceSim
    from ctsd.sim.binance_api import Call

WALLET = "options"
_STATUS = {OrderStatus.NEW: "ACCEPTED", OrderStatus.FILLED: "FILLED",
           OrderStatus.CANCELED: "CANCELLED", OrderStatus.EXPIRED: "CANCELLED"}


def option_id(c: OptionContract) -> str:
    return f"{c.underlying}-{c.yymmdd}-{c.strike_text}-{c.letter}"


def spec_of(c: OptionContract) -> OptionSpec:
    return tick_and_step_spec(c, WALLET)


class BinanceOptions:
    def __init__(self, state: BinanceSim) -> None:
        self.state = state

    def rows(self) -> list[tuple[Any, ...]]:
        """(method, path, surface, weight, security, handler) of `/eapi/v1`."""
        o, none = Surface.OPTIONS, Security.NONE
        user, trade = Security.USER_DATA, Security.OPTIONS
        return [
            ("GET", "/eapi/v1/ping", o, 1, none, self.state.ping),
            ("GET", "/eapi/v1/time", o, 1, none, self.state.time),
            ("GET", "/eapi/v1/exchangeInfo", o, 1, none, self.exchange_info),
            ("GET", "/eapi/v1/mark", o, 5, none, self.mark),
            ("GET", "/eapi/v1/ticker", o, 5, none, self.ticker),
            ("GET", "/eapi/v1/exerciseHistory", o, 3, none, self.exercise_history),
            ("GET", "/eapi/v1/account", o, 3, user, self.margin_account),
            ("GET", "/eapi/v1/marginAccount", o, 3, user, self.margin_account),
            ("GET", "/eapi/v1/position", o, 5, user, self.positions),
            ("GET", "/eapi/v1/bill", o, 1, user, self.bills),
            ("GET", "/eapi/v1/exerciseRecord", o, 5, user, self.exercise_records),
            ("GET", "/eapi/v1/userTrades", o, 5, user, self.user_trades),
            ("POST", "/eapi/v1/order", o, 1, trade, self.new_order),
            ("GET", "/eapi/v1/order", o, 1, user, self.get_order),
            ("DELETE", "/eapi/v1/order", o, 1, trade, self.cancel_order),
            ("GET", "/eapi/v1/openOrders", o, by_symbol(1, 40), user, self.open_orders),
        ]

    # --- contracts ------------------------------------------------------------------------

    def _listed(self) -> dict[str, OptionContract]:
        return {option_id(c): c for c in self.state.sim.options.contracts()}

    def _contract(self, call: Call, required: bool = True) -> OptionContract | None:
        raw = call.require("symbol") if required else call.params.get("symbol")
        if raw is None:
            return None
        found = self._listed().get(raw)
        if found is None:
            traded = option_trading.book_of(call.owner()).contracts if call.account else {}
            found = next((c for c in traded.values() if option_id(c) == raw), None)
        if found is None:
            raise render.error(400, -1121, "Invalid symbol.")
        return found

    async def exchange_info(self, call: Call) -> Any:
        contracts = self._listed().values()
        quote = self.state.sim.market.catalog.quote
        underlyings = sorted({c.underlying for c in contracts})
        return {
            "timezone": "UTC", "serverTime": self.state.sim.clock.now_ms(),
            "optionContracts": [{"id": n + 1, "baseAsset": u, "quoteAsset": quote,
                                 "underlying": f"{u}{quote}", "settleAsset": quote}
                                for n, u in enumerate(underlyings)],
            "optionAssets": [{"id": 1, "name": quote}],
            "optionSymbols": [self._symbol(n, c) for n, c in enumerate(contracts)],
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                            "intervalNum": 1, "limit": 400}],
        }

    def _symbol(self, n: int, c: OptionContract) -> dict[str, Any]:
        spec = spec_of(c)
        return {
            "contractId": n + 1, "expiryDate": c.expiry_ms, "id": n + 1,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": plain(spec.tick),
                 "maxPrice": plain(spec.tick * 100_000), "tickSize": plain(spec.tick)},
                {"filterType": "LOT_SIZE", "minQty": plain(spec.min_qty), "maxQty": "1000",
                 "stepSize": plain(spec.step)}],
            "symbol": option_id(c), "side": "CALL" if c.call else "PUT",
            "strikePrice": c.strike_text, "underlying": f"{c.underlying}{c.quote}", "unit": 1,
            "makerFeeRate": "0.0002", "takerFeeRate": "0.0003", "minQty": plain(spec.min_qty),
            "maxQty": "1000", "initialMargin": "0.15", "maintenanceMargin": "0.075",
            "minInitialMargin": "0.1", "minMaintenanceMargin": "0.05",
            "priceScale": _scale(spec.tick), "quantityScale": _scale(spec.step),
            "quoteAsset": c.quote, "status": "TRADING",
        }

    async def mark(self, call: Call) -> Any:
        chain = self.state.sim.options
        wanted = self._contract(call, required=False)
        rows = []
        for c in [wanted] if wanted else self._listed().values():
            mark, _, _ = option_trading.quote(chain, c, spec_of(c))
            _, g = chain.value(c)
            vol = plain(Decimal(str(round(chain.implied_vol(c.underlying), 4))))
            rows.append({"symbol": option_id(c), "markPrice": plain(mark), "bidIV": vol,
                         "askIV": vol, "markIV": vol, "delta": f"{g.delta:.8f}",
                         "theta": f"{g.theta:.8f}", "gamma": f"{g.gamma:.8f}",
                         "vega": f"{g.vega:.8f}", "highPriceLimit": plain(mark * 2),
                         "lowPriceLimit": plain(spec_of(c).tick), "riskFreeInterest": "0"})
        return rows

    async def ticker(self, call: Call) -> Any:
        chain, now = self.state.sim.options, self.state.sim.clock.now_ms()
        wanted = self._contract(call, required=False)
        rows = []
        for c in [wanted] if wanted else self._listed().values():
            mark, bid, ask = option_trading.quote(chain, c, spec_of(c))
            rows.append({
                "symbol": option_id(c), "priceChange": "0", "priceChangePercent": "0",
                "lastPrice": plain(mark), "lastQty": "0", "open": plain(mark),
                "high": plain(mark), "low": plain(mark), "volume": "0", "amount": "0",
                "bidPrice": plain(bid), "askPrice": plain(ask), "openTime": now - 86_400_000,
                "closeTime": now, "firstTradeId": 0, "tradeCount": 0,
                "strikePrice": c.strike_text,
                "exercisePrice": plain(chain.spot(c))})
        return rows

    async def exercise_history(self, call: Call) -> Any:
        """Expired contracts and their settlement price, newest first (public); `underlying`
        (e.g. BTCUSDT) narrows them to one."""
        chain = self.state.sim.options
        underlying = call.params.get("underlying")
        rows: list[dict[str, Any]] = []
        for c in chain.expired(self.state.sim.market.path_ms()):
            if underlying not in (None, f"{c.underlying}{c.quote}"):
                continue
            settle = chain.settlement_price(c)
            rows.append({"symbol": option_id(c), "strikePrice": c.strike_text,
                         "realStrikePrice": plain(settle), "expiryDate": c.expiry_ms,
                         "strikeResult": "REALISTIC_VALUE_STRICKEN"
                         if c.intrinsic(settle) else "EXTRINSIC_VALUE_EXPIRED"})
        rows.sort(key=lambda r: r["expiryDate"], reverse=True)
        return rows[:min(int(call.params.get("limit") or 100), 100)]

    # --- account --------------------------------------------------------------------------

    async def margin_account(self, call: Call) -> Any:
        """`/eapi/v1/marginAccount` (and `/eapi/v1/account`): the options wallet, open
        positions' value and greeks per underlying."""
        account, chain = call.owner(), self.state.sim.options
        book = option_trading.book_of(account)
        upl = Decimal(0)
        greeks: dict[str, list[float]] = {}
        for pos in book.open_positions():
            mark, _, _ = option_trading.quote(chain, pos.contract, spec_of(pos.contract))
            upl += pos.qty * (mark - pos.entry)
            _, g = chain.value(pos.contract)
            total = greeks.setdefault(f"{pos.contract.underlying}{pos.contract.quote}",
                                      [0.0] * 4)
            for i, v in enumerate((g.delta, g.gamma, g.theta, g.vega)):
                total[i] += v * float(pos.qty)
        assets = []
        quote = self.state.sim.market.catalog.quote
        for asset, h in sorted(account.wallet(WALLET).items()):
            equity = h.total + (upl if asset == quote else Decimal(0))
            assets.append({"asset": asset, "marginBalance": plain(h.total),
                           "equity": plain(equity), "available": plain(h.free),
                           "locked": plain(h.locked), "unrealizedPNL": plain(upl)})
        return {"asset": assets, "greek": [
            {"underlying": u, "delta": f"{d:.6f}", "gamma": f"{g:.6f}", "theta": f"{t:.6f}",
             "vega": f"{v:.6f}"} for u, (d, g, t, v) in sorted(greeks.items())],
            "time": self.state.sim.clock.now_ms(), "riskLevel": "NORMAL"}

    async def positions(self, call: Call) -> Any:
        wanted = self._contract(call, required=False)
        chain = self.state.sim.options
        rows = []
        for pos in option_trading.book_of(call.owner()).open_positions():
            c = pos.contract
            if wanted is not None and c != wanted:
                continue
            mark, _, _ = option_trading.quote(chain, c, spec_of(c))
            cost = abs(pos.qty) * pos.entry
            rows.append({
                "entryPrice": plain(pos.entry), "symbol": option_id(c),
                "side": "LONG" if pos.qty > 0 else "SHORT", "quantity": plain(pos.qty),
                "reducibleQty": plain(abs(pos.qty)), "markValue": plain(pos.qty * mark),
                "ror": plain((mark - pos.entry) / pos.entry if pos.entry else Decimal(0)),
                "unrealizedPNL": plain(pos.qty * (mark - pos.entry)), "markPrice": plain(mark),
                "strikePrice": c.strike_text, "positionCost": plain(cost),
                "expiryDate": c.expiry_ms, "priceScale": 2, "quantityScale": 2,
                "optionSide": "CALL" if c.call else "PUT", "quoteAsset": c.quote,
                "time": pos.updated_ms})
        return rows

    async def bills(self, call: Call) -> Any:
        """Premiums (CONTRACT), fees (FEE) and settlements (EXERCISE), newest first."""
        book = option_trading.book_of(call.owner())
        rows = [{"id": f.trade_id, "asset": f.fee_asset, "amount": plain(
            -f.quote_qty if f.side is Side.BUY else f.quote_qty), "type": "CONTRACT",
                 "createDate": f.time_ms} for f in book.fills]
        rows += [{"id": f.trade_id + 1, "asset": f.fee_asset, "amount": plain(-f.fee),
                  "type": "FEE", "createDate": f.time_ms} for f in book.fills]
        rows += [{"id": s.id, "asset": s.contract.settle, "amount": plain(s.payout),
                  "type": "EXERCISE", "createDate": s.time_ms} for s in book.settlements]
        rows.sort(key=lambda r: (r["createDate"], r["id"]), reverse=True)
        return rows[:min(int(call.params.get("limit") or 100), 1000)]

    async def exercise_records(self, call: Call) -> Any:
        """The account's settled positions, newest first."""
        book = option_trading.book_of(call.owner())
        return [{"id": s.id, "currency": s.contract.settle, "symbol": option_id(s.contract),
                 "exercisePrice": plain(s.settle_price), "markPrice": plain(s.settle_price),
                 "quantity": plain(abs(s.qty)), "amount": plain(s.payout), "fee": "0",
                 "createDate": s.time_ms, "priceScale": 2, "quantityScale": 2,
                 "optionSide": "CALL" if s.contract.call else "PUT",
                 "positionSide": "LONG" if s.qty > 0 else "SHORT",
                 "quoteAsset": s.contract.quote} for s in reversed(book.settlements)]

    async def user_trades(self, call: Call) -> Any:
        wanted = self._contract(call, required=False)
        book = option_trading.book_of(call.owner())
        return [{"id": f.trade_id, "tradeId": f.trade_id, "orderId": f.order_id,
                 "symbol": option_id(book.contracts[f.symbol]), "price": plain(f.price),
                 "quantity": plain(f.qty), "fee": plain(f.fee), "realizedProfit": "0",
                 "side": f.side.value.upper(), "type": "LIMIT", "volatility": "0",
                 "liquidity": "MAKER" if f.maker else "TAKER", "quoteAsset": f.fee_asset,
                 "time": f.time_ms, "priceScale": 2, "quantityScale": 2,
                 "optionSide": "CALL" if book.contracts[f.symbol].call else "PUT"}
                for f in book.fills if wanted is None or f.symbol == wanted.symbol]

    # --- orders ---------------------------------------------------------------------------

    async def new_order(self, call: Call) -> Any:
        contract = self._contract(call)
        assert contract is not None
        if call.require("type").upper() != "LIMIT":
            raise render.error(400, -1116, "Invalid orderType.")
        try:
            side = Side(call.require("side").lower())
        except ValueError as exc:
            raise render.error(400, -1117, "Invalid side.") from exc
        qty, price = call.decimal("quantity"), call.decimal("price")
        if qty is None:
            raise render.missing("quantity")
        if price is None:
            raise render.missing("price")
        sim = self.state.sim
        client_id = call.params.get("clientOrderId") or f"opt{sim.accounts.next_order_id()}"
        try:
            order = option_trading.place(
                call.owner(), sim.market, sim.options, contract, spec_of(contract), side, qty,
                price, self.state.fees(call.surface), sim.accounts.next_order_id(), client_id,
                post_only=call.params.get("postOnly") == "true")
        except Rejection as exc:
            raise render.rejection(exc, futures=False) from exc
        return self._order(order, contract)

    def _find(self, call: Call) -> tuple[OptionContract, Order]:
        contract = self._contract(call)
        assert contract is not None
        book = option_trading.book_of(call.owner())
        raw, client = call.params.get("orderId"), call.params.get("clientOrderId")
        if not raw and not client:
            raise render.missing("orderId")
        found = next((o for o in book.orders.values() if o.symbol == contract.symbol and (
            (raw and str(o.id) == raw) or (client and o.client_id == client))), None)
        if found is None:
            raise _no_order()
        return contract, found

    async def get_order(self, call: Call) -> Any:
        contract, order = self._find(call)
        return self._order(order, contract)

    async def cancel_order(self, call: Call) -> Any:
        contract, order = self._find(call)
        try:
            option_trading.cancel(call.owner(), self.state.sim.market, order)
        except Rejection as exc:
            raise _no_order() from exc
        return self._order(order, contract)

    async def open_orders(self, call: Call) -> Any:
        wanted = self._contract(call, required=False)
        book = option_trading.book_of(call.owner())
        return [self._order(o, book.contracts[o.symbol])
                for o in book.open_orders(wanted.symbol if wanted else None)]

    @staticmethod
    def _order(o: Order, c: OptionContract) -> dict[str, Any]:
        return {
            "orderId": o.id, "symbol": option_id(c), "price": plain(o.price or Decimal(0)),
            "quantity": plain(o.qty), "executedQty": plain(o.filled), "fee": plain(o.fee),
            "side": o.side.value.upper(), "type": "LIMIT", "timeInForce": "GTC",
            "reduceOnly": False, "postOnly": o.post_only, "createTime": o.created_ms,
            "updateTime": o.updated_ms, "status": _STATUS[o.status],
            "avgPrice": plain(o.average or Decimal(0)), "source": "API",
            "clientOrderId": o.client_id, "priceScale": 2, "quantityScale": 2,
            "optionSide": "CALL" if c.call else "PUT", "quoteAsset": c.quote, "mmp": False}


def _scale(step: Decimal) -> int:
    """Decimals of a tick or step (Binance's `priceScale`, `quantityScale`)."""
    text = f"{step.normalize():f}"
    return len(text.split(".")[1]) if "." in text else 0


def _no_order() -> VenueError:
    return render.error(400, -2013, "Order does not exist.")
