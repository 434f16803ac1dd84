"""Binance's WebSocket message shapes: market stream events and user data events.

Values come from the REST renderers (`ctsd.sim.binance_wire`) wherever the same
number appears on both, so a stream ticker and a REST ticker at the same instant
agree to the digit: spot prints 8 decimals, USDⓈ-M plain numbers, as Binance does.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ctsd.sim import binance_wire as rest
from ctsd.sim import derivatives
from ctsd.sim.accounts import SPOT_WALLET, Order, OrderStatus, OrderType
from ctsd.sim.binance_deriv import stream_position
from ctsd.sim.book import BookSnapshot, Level
from ctsd.sim.events import AccountEvent, AccountUpdate, ExecKind, OrderUpdate, UpdateReason
from ctsd.sim.market import Candle, Instrument, InstrumentKind, Market, TickerStats
from ctsd.sim.slots import symbol_slots
from ctsd.sim.tape import PublicTrade
from ctsd.sim.wire import dumps, fixed, order_status, plain

_ZERO = Decimal(0)
_STATUS = {
    OrderStatus.NEW: "NEW", OrderStatus.FILLED: "FILLED", OrderStatus.CANCELED: "CANCELED",
    OrderStatus.EXPIRED: "EXPIRED",
}


def _status(order: Order) -> str:
    return order_status(order, _STATUS, "PARTIALLY_FILLED")


_EXEC = {ExecKind.NEW: "NEW", ExecKind.TRADE: "TRADE", ExecKind.CANCELED: "CANCELED",
         ExecKind.EXPIRED: "EXPIRED"}
_REASON = {"order": "ORDER", "deposit": "DEPOSIT", "funding_fee": "FUNDING_FEE",
           "liquidation": "ORDER", "adl": "ADL", "leverage": "ORDER",
           "margin_type": "MARGIN_TYPE_CHANGE", "admin": "ADJUSTMENT"}
_TICKER_KEYS = (
    ("p", "priceChange"), ("P", "priceChangePercent"), ("w", "weightedAvgPrice"),
    ("x", "prevClosePrice"), ("c", "lastPrice"), ("Q", "lastQty"), ("b", "bidPrice"),
    ("B", "bidQty"), ("a", "askPrice"), ("A", "askQty"), ("o", "openPrice"),
    ("h", "highPrice"), ("l", "lowPrice"), ("v", "volume"), ("q", "quoteVolume"),
    ("O", "openTime"), ("C", "closeTime"), ("F", "firstId"), ("L", "lastId"), ("n", "count"),
)


def _num(spot: bool) -> Any:
    return fixed if spot else plain


def ticker(inst: Instrument, stats: TickerStats, mini: bool) -> str:
    """`24hrTicker` / `24hrMiniTicker`, with the REST ticker's numbers at the same time."""
    spot = inst.kind is InstrumentKind.SPOT
    full = rest.ticker(inst, stats, spot=spot)
    event: dict[str, Any] = {"e": "24hrMiniTicker" if mini else "24hrTicker",
                             "E": stats.close_ms, "s": full["symbol"]}
    if mini:
        event |= {"c": full["lastPrice"], "o": full["openPrice"], "h": full["highPrice"],
                  "l": full["lowPrice"], "v": full["volume"], "q": full["quoteVolume"]}
    else:
        event |= {short: full[name] for short, name in _TICKER_KEYS if name in full}
    return dumps(event)


def book_ticker(inst: Instrument, stats: TickerStats, update_id: int) -> str:
    spot = inst.kind is InstrumentKind.SPOT
    num = _num(spot)
    qty = num(inst.min_qty * 10)
    event: dict[str, Any] = {} if spot else {"e": "bookTicker"}
    event |= {"u": update_id}
    if not spot:
        event |= {"E": stats.close_ms, "T": stats.close_ms}
    event |= {"s": rest.market_id(inst), "b": num(stats.bid), "B": qty, "a": num(stats.ask),
              "A": qty}
    return dumps(event)


def kline(inst: Instrument, interval: str, candle: Candle, now_ms: int, closed: bool) -> str:
    row = rest.kline(inst, candle)
    spot = inst.kind is InstrumentKind.SPOT
    num = _num(spot)
    return dumps({"e": "kline", "E": now_ms, "s": rest.market_id(inst), "k": {
        "t": candle.open_ms, "T": candle.close_ms, "s": rest.market_id(inst), "i": interval,
        "f": 0, "L": candle.trades - 1, "o": num(candle.open), "c": num(candle.close),
        "h": num(candle.high), "l": num(candle.low), "v": num(candle.volume),
        "n": candle.trades, "x": closed, "q": num(candle.quote_volume),
        "V": row[9] if spot else plain(Decimal(row[9])),
        "Q": row[10] if spot else plain(Decimal(row[10])), "B": "0",
    }})


def trades(inst: Instrument, tape: list[PublicTrade], now_ms: int, aggregate: bool) -> list[str]:
    """`trade` / `aggTrade` events, one per tape trade (each trade is its own aggregate)."""
    spot = inst.kind is InstrumentKind.SPOT
    num = _num(spot)
    out = []
    for trade in tape:
        event: dict[str, Any] = {"e": "aggTrade" if aggregate else "trade", "E": now_ms,
                                 "s": rest.market_id(inst)}
        if aggregate:
            event |= {"a": trade.id, "p": num(trade.price), "q": num(trade.qty)}
            if not spot:
                event["nq"] = num(trade.qty)
            event |= {"f": trade.id, "l": trade.id}
        else:
            event |= {"t": trade.id, "p": num(trade.price), "q": num(trade.qty)}
            if not spot:
                event["X"] = "MARKET"
        event |= {"T": trade.time_ms, "m": trade.buyer_is_maker}
        if spot:
            event["M"] = True
        out.append(dumps(event))
    return out


def depth_update(inst: Instrument, old: BookSnapshot, new: BookSnapshot, bids: list[Level],
                 asks: list[Level]) -> str:
    """A diff event: `U`..`u` are the book update ids it covers (`pu`: the previous `u`)."""
    spot = inst.kind is InstrumentKind.SPOT
    num = _num(spot)
    event: dict[str, Any] = {"e": "depthUpdate", "E": new.time_ms}
    if not spot:
        event["T"] = new.time_ms
    event |= {"s": rest.market_id(inst), "U": old.sequence + 1, "u": new.sequence}
    if not spot:
        event["pu"] = old.sequence
    event |= {"b": [[num(lv.price), num(lv.qty)] for lv in bids],
              "a": [[num(lv.price), num(lv.qty)] for lv in asks]}
    return dumps(event)


# --- user data ------------------------------------------------------------------------


def user_events(event: AccountEvent, market: Market, futures: bool,
                wallet: str = SPOT_WALLET) -> list[str]:
    """The user data messages an account event makes on the spot or USDⓈ-M stream; a
    spot-type stream is one wallet's (the spot account's, or a margin account's by its
    listenToken): another wallet's orders and balances are not on it."""
    if isinstance(event, OrderUpdate):
        if (event.order.kind is InstrumentKind.LINEAR) != futures:
            return []
        if not futures and event.order.wallet != wallet:
            return []
        inst = market.catalog.instruments[event.order.symbol]
        if futures:
            return [dumps(_order_trade_update(event, inst))]
        return [dumps(_execution_report(event, inst))]
    if futures:
        if event.reason is UpdateReason.LEVERAGE:
            return [dumps(_account_config_update(event, market, symbol))
                    for symbol in event.positions]
        if not event.derivative_assets and not event.positions:
            return []
        return [dumps(_account_update(event, market))]
    if not event.spot_assets or wallet not in event.wallets:
        return []
    return [dumps(_account_position(event, wallet))]


def _last(event: OrderUpdate) -> tuple[Decimal, Decimal, Decimal, str | None, int, bool]:
    """Last fill: qty, price, fee, fee asset, trade id, maker."""
    fill = event.fill
    if fill is None:
        return _ZERO, _ZERO, _ZERO, None, -1, False
    return fill.qty, fill.price, fill.fee, fill.fee_asset, fill.trade_id, fill.maker


def _execution_report(event: OrderUpdate, inst: Instrument) -> dict[str, Any]:
    order = event.order
    qty, price, fee, fee_asset, trade_id, maker = _last(event)
    canceled = event.kind is ExecKind.CANCELED
    return {
        "e": "executionReport", "E": event.at_ms, "s": rest.market_id(inst),
        "c": f"web_{order.id}" if canceled else order.client_id,
        "S": order.side.value.upper(), "o": order.type.value.upper(),
        "f": order.time_in_force.value, "q": fixed(order.qty), "p": fixed(order.price or _ZERO),
        "P": fixed(_ZERO), "F": fixed(_ZERO), "g": -1,
        "C": order.client_id if canceled else "", "x": _EXEC[event.kind],
        "X": _status(order), "r": "NONE", "i": order.id, "l": fixed(qty),
        "z": fixed(order.filled), "L": fixed(price), "n": fixed(fee), "N": fee_asset,
        "T": event.at_ms, "t": trade_id, "I": event.at_ms,
        "w": order.status.is_open, "m": maker, "M": False, "O": order.created_ms,
        "Z": fixed(order.cost), "Y": fixed(qty * price), "Q": fixed(_ZERO),
        "W": order.created_ms, "V": "EXPIRE_MAKER",
    }


def _order_trade_update(event: OrderUpdate, inst: Instrument) -> dict[str, Any]:
    order = event.order
    qty, price, fee, fee_asset, trade_id, maker = _last(event)
    average = order.average.quantize(inst.tick_size) if order.average else _ZERO
    body: dict[str, Any] = {
        "s": rest.market_id(inst), "c": order.client_id, "S": order.side.value.upper(),
        "o": order.type.value.upper(), "f": order.time_in_force.value, "q": plain(order.qty),
        "p": plain(order.price or _ZERO), "ap": plain(average), "sp": "0",
        "x": "CALCULATED" if order.liquidation else _EXEC[event.kind],
        "X": _status(order), "i": order.id, "l": plain(qty),
        "z": plain(order.filled), "L": plain(price),
    }
    if fee_asset is not None:
        body |= {"N": fee_asset, "n": plain(fee)}
    body |= {
        "T": event.at_ms, "t": max(trade_id, 0), "b": "0", "a": "0", "m": maker,
        "R": order.reduce_only, "wt": "CONTRACT_PRICE",
        "ot": order.type.value.upper(), "ps": order.position_side.value.upper(), "cp": False,
        "rp": plain(event.fill.realized_pnl if event.fill else _ZERO), "pP": False,
        "si": 0, "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0,
    }
    if order.type is OrderType.MARKET and not order.filled:
        body["ap"] = "0"
    return {"e": "ORDER_TRADE_UPDATE", "E": event.at_ms, "T": event.at_ms, "o": body}


def _account_position(event: AccountUpdate, wallet: str) -> dict[str, Any]:
    held = event.account.wallets.get(wallet, {})
    balances = []
    for asset in event.spot_assets:
        holding = held.get(asset)
        free = holding.free if holding else _ZERO
        locked = holding.locked if holding else _ZERO
        balances.append({"a": asset, "f": fixed(free), "l": fixed(locked)})
    return {"e": "outboundAccountPosition", "E": event.at_ms, "u": event.at_ms, "B": balances}


def _account_update(event: AccountUpdate, market: Market) -> dict[str, Any]:
    account = event.account
    balances = [{"a": asset, "wb": plain(account.derivatives.get(asset, _ZERO)),
                 "cw": plain(derivatives.cross_wallet(account, asset)), "bc": "0"}
                for asset in event.derivative_assets]
    catalog = market.catalog.instruments
    return {"e": "ACCOUNT_UPDATE", "E": event.at_ms, "T": event.at_ms, "a": {
        "m": _REASON[event.reason.value], "B": balances,
        "P": [stream_position(account, slot) for symbol in event.positions
              for slot in symbol_slots(account, market, catalog[symbol])],
    }}


def _account_config_update(event: AccountUpdate, market: Market, symbol: str) -> dict[str, Any]:
    """A leverage change: Binance's `ACCOUNT_CONFIG_UPDATE` (`ac`: symbol and leverage)."""
    inst = market.catalog.instruments[symbol]
    settings = event.account.perp.settings
    leverage = settings.leverage_for(symbol, settings.margin_for(symbol))
    return {"e": "ACCOUNT_CONFIG_UPDATE", "E": event.at_ms, "T": event.at_ms,
            "ac": {"s": rest.market_id(inst), "l": int(leverage)}}


def listen_key_expired(listen_key: str, now_ms: int) -> str:
    return dumps({"e": "listenKeyExpired", "E": now_ms, "listenKey": listen_key})

