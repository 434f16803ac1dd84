"""Kraken own trades, fee rates and conditional order types.

- `TradesHistory`: the account's fills, newest first, 50 a page from `ofs`, `start`/
  `end` (seconds, exclusive) bounding `time`; `count` is the total. Each carries
  `ordertxid`, `postxid`, `pair`, `time`, `type`, `ordertype`, `price`, `cost`,
  `fee` (quote currency, as every Kraken spot fee here), `vol`, `maker`, `trade_id`.
  Two points on the call counter, as Kraken charges history calls.
- `QueryTrades`: up to 20 trade txids.
- `TradeVolume`: the 30-day volume and the fee tier (in percent) of the asked pairs.
- AddOrder `ordertype`s: market, limit, and `stop-loss`, `take-profit` (`price` is the
  trigger), `stop-loss-limit`, `take-profit-limit` (`price2` the limit), firing on the
  last trade; Kraken accepts a trigger the price has already passed and fires it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import kraken_wire as render
from ctsd.sim.accounts import Account, Fill, OrderType, Side, Trigger
from ctsd.sim.wire import fixed

if TYPE_CHECKING:
    from ctsd.sim.kraken import Call, KrakenSim

PAGE = 50
QUERY_MAX = 20
ORDER_TYPES: dict[str, tuple[OrderType, bool | None]] = {
    "market": (OrderType.MARKET, None), "limit": (OrderType.LIMIT, None),
    "stop-loss": (OrderType.MARKET, True), "take-profit": (OrderType.MARKET, False),
    "stop-loss-limit": (OrderType.LIMIT, True), "take-profit-limit": (OrderType.LIMIT, False),
}
"""`ordertype` → (how it works once live, stop-loss (True) / take-profit (False) / plain)."""


def order_kind(call: Call, side: Side) -> tuple[OrderType, Decimal | None, Trigger | None]:
    """AddOrder's `ordertype`, `price`, `price2` → (type, limit price, trigger)."""
    kind = call.require("ordertype")
    if kind not in ORDER_TYPES:
        raise render.error(f"{render.INVALID_ARGUMENTS}:ordertype")
    order_type, stop_loss = ORDER_TYPES[kind]
    if stop_loss is None:
        price = call.decimal("price") if order_type is OrderType.LIMIT else None
        if order_type is OrderType.LIMIT and price is None:
            raise render.error(f"{render.INVALID_ARGUMENTS}:price")
        return order_type, price, None
    trigger_price = call.decimal("price")
    if trigger_price is None:
        raise render.error(f"{render.INVALID_ARGUMENTS}:price")
    limit = call.decimal("price2") if order_type is OrderType.LIMIT else None
    if order_type is OrderType.LIMIT and limit is None:
        raise render.error(f"{render.INVALID_ARGUMENTS}:price2")
    rises = stop_loss is (side is Side.BUY)
    return order_type, limit, Trigger(trigger_price, rises=rises)


def ordertype_name(order_type: OrderType, trigger: Trigger | None, side: Side) -> str:
    if trigger is None:
        return order_type.value
    stop_loss = trigger.rises is (side is Side.BUY)
    kind = "stop-loss" if stop_loss else "take-profit"
    return f"{kind}-limit" if order_type is OrderType.LIMIT else kind


class KrakenAccount:
    def __init__(self, state: KrakenSim) -> None:
        self.state = state

    async def trades_history(self, call: Call) -> Any:
        start, end = call.decimal("start"), call.decimal("end")
        fills = [f for f in reversed(call.owner().fills) if self.state.is_spot(f.symbol)
                 and (start is None or f.time_ms / 1000 > start)
                 and (end is None or f.time_ms / 1000 < end)]
        offset = call.integer("ofs") or 0
        page = fills[offset:offset + PAGE]
        return {"trades": {render.trade_txid(f.trade_id): self._trade(call.owner(), f)
                           for f in page}, "count": len(fills)}

    async def query_trades(self, call: Call) -> Any:
        txids = call.require("txid").split(",")
        if len(txids) > QUERY_MAX:
            raise render.error(f"{render.INVALID_ARGUMENTS}:txid")
        account = call.owner()
        by_id = {f.trade_id: f for f in account.fills if self.state.is_spot(f.symbol)}
        out = {}
        for txid in txids:
            trade_id = render.parse_trade_txid(txid)
            if trade_id is None:
                raise render.error(render.INVALID_ARGUMENTS + ":txid")
            if trade_id in by_id:
                out[txid] = self._trade(account, by_id[trade_id])
        return out

    def _trade(self, account: Account, f: Fill) -> dict[str, Any]:
        pair = self.state.pair_of(f.symbol)
        order = account.orders[f.order_id]
        return {
            "ordertxid": render.order_txid(f.order_id), "postxid": render.trade_txid(
                f.trade_id), "pair": pair.key, "time": f.time_ms / 1000,
            "type": f.side.value, "ordertype": ordertype_name(order.type, order.trigger,
                                                            order.side),
            "price": pair.price(f.price), "cost": fixed(f.quote_qty, render.COST_DECIMALS),
            "fee": fixed(f.fee, render.COST_DECIMALS), "vol": fixed(f.qty, 8),
            "margin": fixed(Decimal(0), render.COST_DECIMALS), "leverage": "0", "misc": "",
            "trade_id": f.trade_id, "maker": f.maker,
        }

    async def trade_volume(self, call: Call) -> Any:
        fees = self.state.fees
        out: dict[str, Any] = {"currency": "ZUSD", "volume": fixed(Decimal(0), 4)}
        raw = call.params.get("pair")
        if raw:
            pairs = [self.state.pair(name) for name in raw.split(",")]
            out["fees"] = {p.key: _tier(fees.taker) for p in pairs}
            out["fees_maker"] = {p.key: _tier(fees.maker) for p in pairs}
        return out


def _tier(rate: Decimal) -> dict[str, str]:
    percent = fixed(rate * 100, 4)
    return {"fee": percent, "minfee": fixed(Decimal("0.1"), 4), "maxfee": percent,
            "nextfee": percent, "tiervolume": fixed(Decimal(0), 4),
            "nextvolume": fixed(Decimal(10_000), 4)}

