"""Kraken's wire shapes: asset and pair names, market data, balances, orders, errors.

Kraken names things its own way, and ccxt's parsers depend on it: legacy assets
carry an X (crypto) or Z (fiat) prefix with a shorter altname (`XXBT`/`XBT`,
`ZUSD`/`USD`, `XXDG`/`XDG`), newer ones are their own altname (`SOL`, `USDT`); a
pair between two legacy assets is keyed by both ids (`XXBTZUSD`), any other by
the altnames (`XBTUSDT`), and orders describe their pair by altname. Numbers are
strings with per-pair decimals; every answer is `{"error": [...], "result": ...}`
with HTTP 200, errors included, because Kraken puts its verdict in the body.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ctsd.sim import accounts
from ctsd.sim.auth import AuthFailure
from ctsd.sim.lending import marginable
from ctsd.sim.market import Candle, Instrument, TickerStats
from ctsd.sim.wire import VenueError, fixed

INVALID_KEY = "EAPI:Invalid key"
INVALID_SIGNATURE = "EAPI:Invalid signature"
INVALID_NONCE = "EAPI:Invalid nonce"
PERMISSION_DENIED = "EGeneral:Permission denied"
API_RATE_LIMIT = "EAPI:Rate limit exceeded"
ORDER_RATE_LIMIT = "EOrder:Rate limit exceeded"
INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
UNKNOWN_METHOD = "EGeneral:Unknown method"
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
UNKNOWN_ASSET = "EQuery:Unknown asset"
UNKNOWN_ORDER = "EOrder:Unknown order"
INVALID_ORDER = "EOrder:Invalid order"
ORDER_MINIMUM = "EOrder:Order minimum not met"
SERVICE_UNAVAILABLE = "EService:Unavailable"

AUTH_ERRORS: dict[AuthFailure, str] = {
    AuthFailure.MISSING_KEY: INVALID_KEY,
    AuthFailure.UNKNOWN_KEY: INVALID_KEY,
    AuthFailure.BAD_PASSPHRASE: INVALID_KEY,
    AuthFailure.BAD_SIGNATURE: INVALID_SIGNATURE,
    AuthFailure.NONCE_REUSED: INVALID_NONCE,
    AuthFailure.STALE_TIMESTAMP: INVALID_NONCE,
    AuthFailure.IP_NOT_ALLOWED: PERMISSION_DENIED,
    AuthFailure.PERMISSION_DENIED: PERMISSION_DENIED,
}
"""Kraken answers an address outside the key's whitelist like a missing permission."""

LEVERAGES = (2, 3, 4, 5)
"""The leverages Kraken offers on the marginable pairs (`leverage_buy`, `leverage_sell`)."""

_REJECTIONS: dict[accounts.RejectKind, str] = {
    accounts.RejectKind.INSUFFICIENT_FUNDS: "EOrder:Insufficient funds",
    accounts.RejectKind.UNKNOWN_ORDER: UNKNOWN_ORDER,
    accounts.RejectKind.ORDER_NOT_OPEN: UNKNOWN_ORDER,
    accounts.RejectKind.UNKNOWN_SYMBOL: UNKNOWN_PAIR,
    accounts.RejectKind.PRICE_FILTER: "EGeneral:Invalid arguments:price",
    accounts.RejectKind.LOT_SIZE: "EGeneral:Invalid arguments:volume",
    accounts.RejectKind.MIN_NOTIONAL: "EOrder:Cost minimum not met",
    accounts.RejectKind.DUPLICATE_CLIENT_ID: INVALID_ORDER,
    accounts.RejectKind.BAD_PARAMETER: INVALID_ARGUMENTS,
    accounts.RejectKind.WOULD_TAKE: "EOrder:Post only order",
    accounts.RejectKind.WOULD_TRIGGER: INVALID_ARGUMENTS,
    accounts.RejectKind.BORROW_LIMIT: "EOrder:Insufficient margin",
    accounts.RejectKind.REDUCE_ONLY: "EOrder:Reduce only:Non-PC",
    accounts.RejectKind.POSITION_SIDE: INVALID_ARGUMENTS,
    accounts.RejectKind.POSITION_LIMIT: "EOrder:Positions limit exceeded",
}


def error(message: str, status: int = 200, headers: Mapping[str, str] | None = None) -> VenueError:
    return VenueError(status, {"error": [message], "result": {}}, headers)


def ok(result: Any) -> dict[str, Any]:
    return {"error": [], "result": result}


def rejection(exc: accounts.Rejection) -> VenueError:
    """A core `Rejection` in Kraken's words."""
    return error(_REJECTIONS[exc.kind])


# --- names ------------------------------------------------------------------------

_LEGACY: dict[str, tuple[str, str]] = {
    "BTC": ("XXBT", "XBT"), "ETH": ("XETH", "ETH"), "LTC": ("XLTC", "LTC"),
    "XRP": ("XXRP", "XRP"), "XLM": ("XXLM", "XLM"), "ETC": ("XETC", "ETC"),
    "DOGE": ("XXDG", "XDG"), "XMR": ("XXMR", "XMR"), "ZEC": ("XZEC", "ZEC"),
    "MLN": ("XMLN", "MLN"), "REP": ("XREP", "REP"),
    "USD": ("ZUSD", "USD"), "EUR": ("ZEUR", "EUR"), "GBP": ("ZGBP", "GBP"),
    "JPY": ("ZJPY", "JPY"), "CAD": ("ZCAD", "CAD"), "AUD": ("ZAUD", "AUD"),
}
"""Unified code → (Kraken asset id, altname) for the assets Kraken still prefixes."""
_TEN_DECIMALS = frozenset({"BTC", "ETH"})


@dataclass(frozen=True, slots=True)
class KrakenAsset:
    code: str
    """The unified (ccxt) code: `BTC`."""
    id: str
    """Kraken's asset id, the key of balances: `XXBT`."""
    altname: str
    """The short name used in pair names: `XBT`."""

    @property
    def legacy(self) -> bool:
        return self.id != self.altname

    @property
    def fiat(self) -> bool:
        return self.id.startswith("Z") and self.legacy

    @property
    def decimals(self) -> int:
        return 4 if self.fiat else 10 if self.code in _TEN_DECIMALS else 8

    def info(self) -> dict[str, Any]:
        return {"aclass": "currency", "altname": self.altname, "decimals": self.decimals,
                "display_decimals": 2 if self.fiat else 5, "collateral_value": 1.0,
                "status": "enabled"}


def asset(code: str) -> KrakenAsset:
    kraken_id, altname = _LEGACY.get(code, (code, code))
    return KrakenAsset(code, kraken_id, altname)


@dataclass(frozen=True, slots=True)
class KrakenPair:
    inst: Instrument
    base: KrakenAsset
    quote: KrakenAsset

    @classmethod
    def of(cls, inst: Instrument) -> KrakenPair:
        return cls(inst, asset(inst.base), asset(inst.quote))

    @property
    def key(self) -> str:
        """`XXBTZUSD` between two legacy assets, else the altname (`XBTUSDT`)."""
        if self.base.legacy and self.quote.legacy:
            return self.base.id + self.quote.id
        return self.altname

    @property
    def altname(self) -> str:
        return self.base.altname + self.quote.altname

    @property
    def wsname(self) -> str:
        return f"{self.base.altname}/{self.quote.altname}"

    def price(self, value: Decimal) -> str:
        return fixed(value, self.inst.price_decimals)


VOLUME_DECIMALS = 8
COST_DECIMALS = 5
_FEE_VOLUMES = (0, 10_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
                5_000_000, 10_000_000)
_TAKER_STEPS = ("0.40", "0.35", "0.24", "0.22", "0.20", "0.18", "0.16", "0.14", "0.12", "0.10")
_MAKER_STEPS = ("0.25", "0.20", "0.14", "0.12", "0.10", "0.08", "0.06", "0.04", "0.02", "0.00")


def _fee_tiers(first: Decimal, steps: tuple[str, ...]) -> list[list[float]]:
    """Kraken's volume tiers in percent, anchored at the fee the simulator charges."""
    shift = first * 100 - Decimal(steps[0])
    tiers = zip(_FEE_VOLUMES, steps, strict=True)
    return [[volume, float(max(Decimal(step) + shift, Decimal(0)))] for volume, step in tiers]


def asset_pair(pair: KrakenPair, fees: accounts.FeeSchedule) -> dict[str, Any]:
    inst = pair.inst
    return {
        "altname": pair.altname, "wsname": pair.wsname, "aclass_base": "currency",
        "base": pair.base.id, "aclass_quote": "currency", "quote": pair.quote.id,
        "lot": "unit", "cost_decimals": COST_DECIMALS, "pair_decimals": inst.price_decimals,
        "lot_decimals": inst.qty_decimals, "lot_multiplier": 1,
        "leverage_buy": list(LEVERAGES) if marginable(inst) else [],
        "leverage_sell": list(LEVERAGES) if marginable(inst) else [],
        "fees": _fee_tiers(fees.taker, _TAKER_STEPS),
        "fees_maker": _fee_tiers(fees.maker, _MAKER_STEPS), "fee_volume_currency": "ZUSD",
        "margin_call": 80, "margin_stop": 40, "ordermin": f"{inst.min_qty.normalize():f}",
        "costmin": f"{inst.min_notional.normalize():f}",
        "tick_size": f"{inst.tick_size.normalize():f}", "status": "online",
    }


# --- market data --------------------------------------------------------------------


def server_time(now_ms: int) -> dict[str, Any]:
    at = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    return {"unixtime": now_ms // 1000,
            "rfc1123": f"{at:%a}, {at.day:2d} {at:%b %y %H:%M:%S} +0000"}


def iso_seconds(now_ms: int) -> str:
    return f"{dt.datetime.fromtimestamp(now_ms // 1000, dt.UTC):%Y-%m-%dT%H:%M:%SZ}"


def ticker(pair: KrakenPair, day: TickerStats, today: Candle) -> dict[str, Any]:
    """`a`/`b`: [price, whole-lot volume, lot volume]; pairs: [today, last 24 hours]."""
    places = max(pair.inst.price_decimals, 5)

    def px(value: Decimal) -> str:
        return fixed(value, places)

    def vol(value: Decimal) -> str:
        return fixed(value, VOLUME_DECIMALS)

    depth = pair.inst.min_qty * 10
    today_vwap = today.quote_volume / today.volume if today.volume else today.close
    return {
        "a": [px(day.ask), str(max(int(depth), 1)), fixed(depth, 3)],
        "b": [px(day.bid), str(max(int(depth), 1)), fixed(depth, 3)],
        "c": [px(day.last), vol(pair.inst.min_qty)],
        "v": [vol(today.volume), vol(day.volume)],
        "p": [px(today_vwap), px(day.vwap)],
        "t": [today.trades, day.trades],
        "l": [px(today.low), px(day.low)],
        "h": [px(today.high), px(day.high)],
        "o": px(today.open),
    }


def ohlc_row(pair: KrakenPair, c: Candle) -> list[Any]:
    """[time (s), open, high, low, close, vwap, volume, count]."""
    vwap = c.quote_volume / c.volume if c.volume else c.close
    return [c.open_ms // 1000, pair.price(c.open), pair.price(c.high), pair.price(c.low),
            pair.price(c.close), pair.price(vwap), fixed(c.volume, VOLUME_DECIMALS), c.trades]


# --- account ------------------------------------------------------------------------


def balance(account: accounts.Account, posted: Mapping[str, Decimal]) -> dict[str, str]:
    """`Balance`: total per asset id, with the margin `posted` into open positions
    (Kraken keeps it in the balance until a position closes)."""
    return {a: entry["balance"] for a, entry in balance_ex(account, posted).items()}


def balance_ex(account: accounts.Account, posted: Mapping[str, Decimal],
               ) -> dict[str, dict[str, str]]:
    """`BalanceEx`: total and what open orders hold (`hold_trade`) per asset id."""
    out = {}
    for code in sorted(set(account.spot) | set(posted)):
        holding = account.spot.get(code) or accounts.Holding()
        a = asset(code)
        out[a.id] = {"balance": fixed(holding.total + posted.get(code, Decimal(0)), a.decimals),
                     "hold_trade": fixed(holding.locked, a.decimals)}
    return out


_ID_SPACE = 36**16


def _unit_multiplier(fraction: float) -> int:
    """A multiplier invertible modulo 36^16 that spreads consecutive ids over the space."""
    mul = int(_ID_SPACE * fraction)
    while mul % 2 == 0 or mul % 3 == 0:
        mul += 1
    return mul


_ORDER_MUL, _TRADE_MUL = _unit_multiplier(0.6180339887), _unit_multiplier(0.7548776662)
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _encode(prefix: str, number: int, mul: int) -> str:
    value = number * mul % _ID_SPACE
    chars = []
    for _ in range(16):
        value, rem = divmod(value, 36)
        chars.append(_ALPHABET[rem])
    text = prefix + "".join(reversed(chars))
    return f"{text[:6]}-{text[6:11]}-{text[11:]}"


def order_txid(order_id: int) -> str:
    """`OQCLML-BW3P3-BUCMWZ`-shaped, reversible; the simulator's ids are integers."""
    return _encode("O", order_id, _ORDER_MUL)


def trade_txid(order_id: int) -> str:
    return _encode("T", order_id, _TRADE_MUL)


def ledger_id(entry_id: int) -> str:
    """`L4UESK-KG3EQ-UFO4T5`-shaped, from the loan ledger's entry id."""
    return _encode("L", entry_id, _ORDER_MUL)


def parse_txid(txid: str, prefix: str = "O", mul: int = _ORDER_MUL) -> int | None:
    """The order id behind an order txid, or None when it is not one."""
    raw = txid.replace("-", "")
    if len(txid) != 19 or len(raw) != 17 or raw[0] != prefix:
        return None
    try:
        value = int(raw[1:], 36)
    except ValueError:
        return None
    return value * pow(mul, -1, _ID_SPACE) % _ID_SPACE


def parse_trade_txid(txid: str) -> int | None:
    """The fill's trade id behind a trade txid, or None when it is not one."""
    return parse_txid(txid, "T", _TRADE_MUL)


_STATUS = {accounts.OrderStatus.NEW: "open", accounts.OrderStatus.FILLED: "closed",
           accounts.OrderStatus.CANCELED: "canceled", accounts.OrderStatus.EXPIRED: "canceled"}
_REASON = {accounts.OrderStatus.CANCELED: "User requested"}


def description(side: str, volume: str, pair: KrakenPair, price: Decimal | None,
                trigger: accounts.Trigger | None = None, leverage: Decimal | None = None) -> str:
    """`buy 0.01000000 XBTUSDT @ limit 58500.0`, `sell 1.00000000 XBTUSDT @ stop loss
    57000.0 -> limit 56500.0`, `... with 5:1 leverage` — ccxt parses these sentences."""
    where = f"limit {pair.price(price)}" if price is not None else "market"
    if trigger is not None:
        kind = "stop loss" if trigger.rises is (side == "buy") else "take profit"
        where = f"{kind} {pair.price(trigger.price)}" + (
            f" -> limit {pair.price(price)}" if price is not None else "")
    levered = f" with {leverage.normalize():f}:1 leverage" if leverage else ""
    return f"{side} {volume} {pair.altname} @ {where}{levered}"


def _ordertype(order: accounts.Order) -> str:
    if order.trigger is None:
        return order.type.value
    kind = "stop-loss" if order.stop_loss else "take-profit"
    return f"{kind}-limit" if order.type is accounts.OrderType.LIMIT else kind


@dataclass(frozen=True, slots=True)
class OrderTags:
    """What the client attached to an order, rendered back as Kraken does."""

    userref: int | None = None
    cl_ord_id: str | None = None
    oflags: str = "fciq"


def order(order: accounts.Order, pair: KrakenPair, tags: OrderTags, *, trades: bool = False,
          fills: Sequence[accounts.Fill] = ()) -> dict[str, Any]:
    """One entry of `OpenOrders`, `ClosedOrders` and `QueryOrders`; with `trades`, the
    txids of the order's `fills`."""
    out: dict[str, Any] = {"refid": None, "userref": tags.userref}
    if tags.cl_ord_id is not None:
        out["cl_ord_id"] = tags.cl_ord_id
    limit = pair.price(order.price) if order.price is not None else "0"
    price, price2 = (pair.price(order.trigger.price), limit) if order.trigger else (limit, "0")
    out |= {"status": _STATUS[order.status], "reason": _REASON.get(order.status),
            "opentm": order.created_ms / 1000}
    if not order.status.is_open:
        out["closetm"] = order.updated_ms / 1000
    out |= {
        "starttm": 0, "expiretm": 0,
        "descr": {"pair": pair.altname, "type": order.side.value,
                  "ordertype": _ordertype(order), "price": price, "price2": price2,
                  "leverage": f"{order.leverage.normalize():f}:1" if order.leverage else "none",
                  "order": description(
                      order.side.value, fixed(order.qty, VOLUME_DECIMALS), pair, order.price,
                      order.trigger, order.leverage),
                  "close": ""},
        "vol": fixed(order.qty, VOLUME_DECIMALS),
        "vol_exec": fixed(order.filled, VOLUME_DECIMALS),
        "cost": fixed(order.cost, COST_DECIMALS), "fee": fixed(order.fee, COST_DECIMALS),
        "price": pair.price(order.average or Decimal(0)),
        "stopprice": fixed(order.trigger.price if order.trigger else Decimal(0), 5),
        "limitprice": fixed(order.price if order.trigger and order.price else Decimal(0), 5),
        "misc": "", "oflags": tags.oflags,
    }
    if order.trigger is not None:
        out["trigger"] = "last"
    if trades and order.filled:
        out["trades"] = [trade_txid(f.trade_id) for f in fills]
    return out
