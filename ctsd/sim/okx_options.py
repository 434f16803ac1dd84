"""OKX options (`instType=OPTION`): coin-margined instruments per underlying (`uly`
BTC-USD, ETH-USD), opt-summary, tickers and mark prices, orders, and positions.

Over `ctsd.sim.options` and `ctsd.sim.option_trading`: contracts of 0.01 of the
underlying (`ctVal`), priced and settled in the underlying coin (`settleCcy` BTC),
ids like `BTC-USD-250616-60000-C`; `sz` counts contracts and `px` is in BTC per BTC
of underlying, on a 0.0005 tick. Premiums and the short margin come from the trading
balance's coin. Orders are `limit` or `post_only` with `tdMode` isolated or cross
(51000 otherwise); expired contracts settle in cash on the path clock.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import okx_wire as render
from ctsd.sim import option_trading
from ctsd.sim.accounts import (
    SPOT_WALLET,
    Account,
    Order,
    OrderStatus,
    Rejection,
    RejectKind,
    Side,
)
from ctsd.sim.market import InstrumentKind
from ctsd.sim.option_trading import OptionSpec
from ctsd.sim.options import OptionContract
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.okx import Call, OkxSim

CT_VAL = Decimal("0.01")
TICK = Decimal("0.0005")
SPEC = OptionSpec(tick=TICK, step=CT_VAL, min_qty=CT_VAL, wallet=SPOT_WALLET)
_STATE = {OrderStatus.NEW: "live", OrderStatus.FILLED: "filled",
          OrderStatus.CANCELED: "canceled", OrderStatus.EXPIRED: "canceled"}


def option_id(c: OptionContract) -> str:
    return f"{c.underlying}-USD-{c.yymmdd}-{c.strike_text}-{c.letter}"


class OkxOptions:
    def __init__(self, state: OkxSim) -> None:
        self.state = state

    def _chain(self, uly: str | None = None) -> dict[str, OptionContract]:
        base = uly.split("-")[0] if uly else None
        return {option_id(c): c for c in self.state.sim.options.contracts(
            coin_margined=True, underlying=base)}

    def contract(self, inst_id: str, account: Account | None = None) -> OptionContract | None:
        """The contract of an OPTION `instId` (listed, or traded by `account` and since
        expired); None for any other id."""
        if inst_id.count("-") != 4:
            return None
        found = self._chain().get(inst_id)
        if found is None and account is not None:
            traded = option_trading.book_of(account).contracts.values()
            found = next((c for c in traded if option_id(c) == inst_id), None)
        return found

    # --- market data ----------------------------------------------------------------------

    def instruments(self, call: Call) -> Any:
        uly = call.params.get("uly") or call.params.get("instFamily")
        if not uly:
            raise render.error(200, "50014", "Parameter uly can not be empty")
        wanted = call.params.get("instId")
        return render.ok([{
            "instType": "OPTION", "instId": option_id(c), "uly": uly, "instFamily": uly,
            "category": "1", "baseCcy": "", "quoteCcy": "", "settleCcy": c.settle,
            "ctVal": plain(CT_VAL), "ctMult": "1", "ctValCcy": c.underlying,
            "optType": c.letter, "stk": c.strike_text, "listTime": str(c.listed_ms),
            "expTime": str(c.expiry_ms), "lever": "", "tickSz": plain(TICK), "lotSz": "1",
            "minSz": "1", "ctType": "", "alias": "", "state": "live", "maxLmtSz": "10000",
            "maxMktSz": "", "maxTwapSz": "", "maxIcebergSz": "", "maxTriggerSz": "",
            "maxStopSz": "", "ruleType": "normal", "instIdCode": None}
            for c in self._chain(uly).values() if wanted in (None, "", option_id(c))])

    def opt_summary(self, call: Call) -> Any:
        uly = call.params.get("uly") or call.params.get("instFamily")
        if not uly:
            raise render.error(200, "50014", "Parameter uly can not be empty")
        chain, now = self.state.sim.options, str(self.state.sim.clock.now_ms())
        rows = []
        for c in self._chain(uly).values():
            _, g = chain.value(c)
            vol = plain(Decimal(str(round(chain.implied_vol(c.underlying), 4))))
            rows.append({
                "instType": "OPTION", "instId": option_id(c), "uly": uly,
                "delta": f"{g.delta:.8f}", "gamma": f"{g.gamma:.8f}", "vega": f"{g.vega:.8f}",
                "theta": f"{g.theta:.8f}", "deltaBS": f"{g.delta:.8f}",
                "gammaBS": f"{g.gamma:.8f}", "thetaBS": f"{g.theta:.8f}",
                "vegaBS": f"{g.vega:.8f}", "lever": "", "markVol": vol, "bidVol": vol,
                "askVol": vol, "realVol": "", "volLv": vol, "fwdPx": plain(chain.spot(c)),
                "ts": now})
        return render.ok(rows)

    def ticker_of(self, c: OptionContract) -> dict[str, Any]:
        mark, bid, ask = option_trading.quote(self.state.sim.options, c, SPEC)
        now = self.state.sim.clock.now_ms()
        return {"instType": "OPTION", "instId": option_id(c), "last": plain(mark),
                "lastSz": "0", "askPx": plain(ask), "askSz": "100", "bidPx": plain(bid),
                "bidSz": "100", "open24h": plain(mark), "high24h": plain(mark),
                "low24h": plain(mark), "volCcy24h": "0", "vol24h": "0", "ts": str(now),
                "sodUtc0": plain(mark), "sodUtc8": plain(mark)}

    def tickers(self, call: Call) -> Any:
        uly = call.params.get("uly") or call.params.get("instFamily")
        return render.ok([self.ticker_of(c) for c in self._chain(uly).values()])

    def mark_prices(self, call: Call) -> Any:
        wanted = call.params.get("instId")
        family = call.params.get("instFamily") or call.params.get("uly")
        now = str(self.state.sim.clock.now_ms())
        return render.ok([{"instType": "OPTION", "instId": option_id(c), "markPx": plain(
            option_trading.quote(self.state.sim.options, c, SPEC)[0]), "ts": now}
            for c in self._chain(family).values() if wanted in (None, "", option_id(c))])

    # --- orders ---------------------------------------------------------------------------

    def place(self, account: Account, c: OptionContract, entry: dict[str, Any]
              ) -> dict[str, Any]:
        ord_type, td_mode = str(entry.get("ordType") or ""), str(entry.get("tdMode") or "")
        if ord_type not in ("limit", "post_only") or td_mode not in ("isolated", "cross"):
            raise render.OrderFailure("51000", "Parameter ordType error" if td_mode in (
                "isolated", "cross") else "Parameter tdMode error")
        side = {"buy": Side.BUY, "sell": Side.SELL}.get(str(entry.get("side") or ""))
        try:
            contracts, price = Decimal(str(entry.get("sz"))), Decimal(str(entry.get("px")))
        except ArithmeticError as exc:
            raise render.OrderFailure("51000", "Parameter sz error") from exc
        if side is None:
            raise render.OrderFailure("51000", "Parameter side error")
        sim = self.state.sim
        client_id = str(entry.get("clOrdId") or "") or f"opt{sim.accounts.next_order_id()}"
        try:
            order = option_trading.place(
                account, sim.market, sim.options, c, SPEC, side, contracts * CT_VAL, price,
                self.state.fees(InstrumentKind.OPTION), sim.accounts.next_order_id(),
                client_id, post_only=ord_type == "post_only")
        except Rejection as exc:
            if exc.kind is RejectKind.INSUFFICIENT_FUNDS:
                raise render.OrderFailure("51008", f"Order failed. Insufficient {c.settle} "
                                                   "balance in account") from exc
            raise render.order_failure(exc.kind, self.state.instrument("BTC-USDT"),
                                       side is Side.BUY) from exc
        return {"clOrdId": order.client_id, "ordId": str(order.id), "tag": "",
                "ts": str(sim.clock.now_ms()), "sCode": "0", "sMsg": "Order placed"}

    def find(self, account: Account, c: OptionContract, order_id: str | None,
             client_id: str | None) -> Order | None:
        book = option_trading.book_of(account)
        return next((o for o in book.orders.values() if o.symbol == c.symbol and (
            (order_id and str(o.id) == order_id) or (client_id and o.client_id == client_id))),
                    None)

    def cancel(self, account: Account, order: Order) -> None:
        if not order.status.is_open:
            raise render.OrderFailure("51400", "Order cancellation failed as the order has "
                                               "been filled, canceled or does not exist.")
        option_trading.cancel(account, self.state.sim.market, order)

    def open_orders(self, account: Account) -> list[Order]:
        return option_trading.book_of(account).open_orders()

    def render_order(self, account: Account, o: Order) -> dict[str, Any]:
        c = option_trading.book_of(account).contracts[o.symbol]
        filled = plain(o.filled / CT_VAL)
        return {
            "accFillSz": filled, "avgPx": plain(o.average) if o.average else "",
            "cTime": str(o.created_ms), "category": "normal", "ccy": "",
            "clOrdId": o.client_id, "fee": plain(-o.fee), "feeCcy": c.settle,
            "fillPx": plain(o.average) if o.average else "", "fillSz": filled,
            "fillTime": str(o.fill_ms or ""), "instId": option_id(c), "instType": "OPTION",
            "lever": "", "ordId": str(o.id), "ordType": "post_only" if o.post_only else "limit",
            "pnl": "0", "posSide": "net", "px": plain(o.price or Decimal(0)), "rebate": "0",
            "rebateCcy": c.settle, "reduceOnly": "false", "side": o.side.value,
            "state": _STATE[o.status], "sz": plain(o.qty / CT_VAL), "tag": "",
            "tdMode": "isolated", "tgtCcy": "", "tradeId": "", "uTime": str(o.updated_ms)}

    # --- positions ------------------------------------------------------------------------

    def position_rows(self, account: Account, ids: set[str]) -> list[dict[str, Any]]:
        rows = []
        for pos in option_trading.book_of(account).open_positions():
            c = pos.contract
            if ids and option_id(c) not in ids:
                continue
            mark, _, _ = option_trading.quote(self.state.sim.options, c, SPEC)
            _, g = self.state.sim.options.value(c)
            upl = pos.qty * (mark - pos.entry)
            rows.append({
                "adl": "1", "availPos": plain(abs(pos.qty) / CT_VAL), "avgPx": plain(pos.entry),
                "cTime": str(pos.created_ms), "ccy": c.settle, "deltaBS": f"{g.delta:.8f}",
                "deltaPA": f"{g.delta:.8f}", "gammaBS": f"{g.gamma:.8f}",
                "gammaPA": f"{g.gamma:.8f}", "imr": "", "instId": option_id(c),
                "instType": "OPTION", "interest": "", "idxPx": plain(
                    self.state.sim.options.spot(c)), "last": plain(mark), "lever": "",
                "liab": "", "liabCcy": "", "liqPx": "", "margin": plain(pos.margin),
                "markPx": plain(mark), "mgnMode": "isolated", "mgnRatio": "",
                "mmr": plain(pos.margin / 2), "notionalUsd": plain(abs(pos.qty) * mark),
                "optVal": plain(pos.qty * mark), "pos": plain(pos.qty / CT_VAL), "posCcy": "",
                "posId": str(abs(hash(c)) % 10**12), "posSide": "net",
                "thetaBS": f"{g.theta:.8f}", "thetaPA": f"{g.theta:.8f}", "tradeId": "",
                "uTime": str(pos.updated_ms), "upl": plain(upl), "uplLastPx": plain(upl),
                "uplRatio": "0", "vegaBS": f"{g.vega:.8f}", "vegaPA": f"{g.vega:.8f}",
                "realizedPnl": plain(pos.realized), "pnl": plain(pos.realized),
                "fee": plain(-pos.fees), "fundingFee": "", "liqPenalty": "0",
                "closeOrderAlgo": [], "bePx": ""})
        return rows
