"""Bybit v5's wire shapes: the envelope, error codes, instruments, tickers, klines,
the unified wallet, API-key info and orders.

Every answer is `{"retCode", "retMsg", "result", "retExtInfo", "time"}`, errors
included (at HTTP 200): ccxt's `bybit.handle_errors` reads `retCode` and maps it
through its `exceptions['exact']` table, and a few messages through
`exceptions['broad']`, so codes and messages here are Bybit's own. Numbers are
strings; orders and instruments carry the fields ccxt's parsers read (and the
ones around them, for other clients).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from ctsd.sim import tiers
from ctsd.sim.accounts import (
    Account,
    Permission,
    RejectKind,
)
from ctsd.sim.auth import AuthFailure
from ctsd.sim.endpoints import AccountCall
from ctsd.sim.lending import marginable
from ctsd.sim.market import Candle, Instrument, InstrumentKind, TickerStats
from ctsd.sim.wire import RequestData, VenueError, plain

SPOT, LINEAR = "spot", "linear"
"""The categories simulated; `inverse` and `option` are answered empty."""
_ZERO = Decimal(0)
_PCT = Decimal("0.000001")


def envelope(result: Any, now_ms: int, code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": now_ms}


def error(code: int, msg: str, now_ms: int, headers: Mapping[str, str] | None = None) -> VenueError:
    """A business error as Bybit sends it: HTTP 200, `retCode` ≠ 0, empty `result`."""
    return VenueError(200, envelope({}, now_ms, code, msg), headers)


RATE_LIMITED = (10006, "Too many visits!")
"""ccxt: RateLimitExceeded."""
RESTARTING = (10016, "Service is restarting, please retry later.")
"""Bybit's documented answer while a service restarts; ccxt: ExchangeError (not retryable!)."""
ROUTE_NOT_FOUND = (10017, "Route not found")
ILLEGAL_CATEGORY = (10001, "Illegal category")
NOT_SUPPORTED_SYMBOLS = (10001, "Not supported symbols")
"""Market-data answer for an unknown symbol; ccxt's broad map makes it BadSymbol."""

AUTH_ERRORS: dict[AuthFailure, tuple[int, str]] = {
    AuthFailure.MISSING_KEY: (
        10001, "empty value: apiTimestamp[{ts}] apiKey[] apiSignature[{sign}]: "
               "openapi sign params error!"),
    AuthFailure.UNKNOWN_KEY: (
        10003, "API key is invalid. Check whether the key and domain are matched, "
               "there are 4 env: mainnet, testnet, mainnet-demo, testnet-demo"),
    AuthFailure.BAD_SIGNATURE: (10004, "error sign! origin_string[{origin}]"),
    AuthFailure.STALE_TIMESTAMP: (
        10002, "invalid request, please check your server timestamp or recv_window param. "
               "req_timestamp[{ts}],server_timestamp[{now}],recv_window[{recv}]"),
    AuthFailure.PERMISSION_DENIED: (
        10005, "Permission denied, please check your API key permissions."),
    AuthFailure.IP_NOT_ALLOWED: (
        10010, "Unmatched IP, please check your API key's bound IP addresses."),
}
"""ccxt: 10001 broad 'openapi sign params error!' and 10003/10004 → AuthenticationError,
10002 → InvalidNonce, 10005/10010 → PermissionDenied (an AuthenticationError)."""

_SPOT_REJECTIONS: dict[RejectKind, tuple[int, str]] = {
    RejectKind.INSUFFICIENT_FUNDS: (170131, "Insufficient balance."),
    RejectKind.UNKNOWN_ORDER: (170213, "Order does not exist."),
    RejectKind.ORDER_NOT_OPEN: (170213, "Order does not exist."),
    RejectKind.UNKNOWN_SYMBOL: (170121, "Invalid symbol."),
    RejectKind.PRICE_FILTER: (170134, "Order price decimal too long."),
    RejectKind.LOT_SIZE: (170137, "Order volume decimal too long."),
    RejectKind.MIN_NOTIONAL: (170140, "Order value exceeded lower limit."),
    RejectKind.DUPLICATE_CLIENT_ID: (170141, "Duplicate clientOrderId."),
    RejectKind.BAD_PARAMETER: (170130, "Data sent for parameter '{}' is not valid."),
    RejectKind.WOULD_TAKE: (170218, "The LIMIT-MAKER order is rejected due to its price."),
    RejectKind.WOULD_TRIGGER: (170130, "Data sent for parameter 'triggerPrice' is not valid."),
    RejectKind.REDUCE_ONLY: (170130, "Data sent for parameter 'reduceOnly' is not valid."),
    RejectKind.POSITION_SIDE: (170130, "Data sent for parameter 'positionIdx' is not valid."),
    RejectKind.POSITION_LIMIT: (170130, "Data sent for parameter 'qty' is not valid."),
    RejectKind.BORROW_LIMIT: (170131, "Insufficient balance."),
}
"""The last three cannot happen on spot (no positions); listed so every kind maps."""
_LINEAR_REJECTIONS: dict[RejectKind, tuple[int, str]] = {
    RejectKind.INSUFFICIENT_FUNDS: (110007, "ab not enough for new order"),
    RejectKind.UNKNOWN_ORDER: (110001, "order not exists or too late to cancel"),
    RejectKind.ORDER_NOT_OPEN: (110001, "order not exists or too late to cancel"),
    RejectKind.UNKNOWN_SYMBOL: (10001, "params error: symbol invalid"),
    RejectKind.PRICE_FILTER: (10001, "params error: price invalid"),
    RejectKind.LOT_SIZE: (10001, "Qty invalid"),
    RejectKind.MIN_NOTIONAL: (110094, "Order does not meet minimum order value 5USDT"),
    RejectKind.DUPLICATE_CLIENT_ID: (110072, "OrderLinkedID is duplicate"),
    RejectKind.BAD_PARAMETER: (110017, "Reduce-only rule not satisfied"),
    RejectKind.WOULD_TAKE: (10001, "PostOnly order would take liquidity"),
    RejectKind.WOULD_TRIGGER: (110092, "expect Rising, but trigger_price <= current"),
    RejectKind.REDUCE_ONLY: (110017, "Reduce-only rule not satisfied"),
    RejectKind.POSITION_SIDE: (10001, "position idx not match position mode"),
    RejectKind.POSITION_LIMIT: (
        110090, "Order placement failed as your position may exceed the max limit. Please "
                "adjust your leverage to lower or below to increase the max. position limit"),
    RejectKind.BORROW_LIMIT: (110007, "ab not enough for new order"),
}
"""ccxt: 170131/110007 → InsufficientFunds, 170213/110001 → OrderNotFound, the rest
InvalidOrder or (10001) BadRequest."""


def rejection(kind: RejectKind, category: str, detail: str, now_ms: int) -> VenueError:
    table = _SPOT_REJECTIONS if category == SPOT else _LINEAR_REJECTIONS
    code, msg = table[kind]
    if kind is RejectKind.WOULD_TRIGGER and category != SPOT and "last" in detail:
        trigger, last = (part.split()[-1] for part in detail.split(","))
        rising = Decimal(trigger) <= Decimal(last)
        code, msg = (110092, f"expect Rising, but trigger_price[{trigger}] <= current[{last}]"
                     ) if rising else (
            110093, f"expect Falling, but trigger_price[{trigger}] >= current[{last}]")
    return error(code, msg.format(detail), now_ms)


def lot_size(inst: Instrument, qty: Decimal, now_ms: int) -> VenueError:
    """Bybit says which bound a quantity missed, where the core only says LOT_SIZE."""
    spot = inst.kind is InstrumentKind.SPOT
    if qty < inst.min_qty:
        code, msg = (170136, "Order quantity lower than the minimum.") if spot else (
            10001, "The number of contracts exceeds minimum limit allowed")
    elif qty > inst.max_qty:
        code, msg = (170135, "Order quantity too large.") if spot else (
            10001, "The number of contracts exceeds maximum limit allowed")
    else:
        code, msg = (170137, "Order volume decimal too long.") if spot else (10001, "Qty invalid")
    return error(code, msg, now_ms)


def market_id(inst: Instrument) -> str:
    return f"{inst.base}{inst.quote}"


# --- pagination -----------------------------------------------------------------------


def cursor(key: str, value: str) -> str:
    """An opaque-looking cursor (`next%3DBTCUSDT`), percent-encoded as Bybit sends it."""
    return quote(f"{key}={value}", safe="")


def cursor_value(raw: str | None, key: str) -> str | None:
    """The value of a cursor made by `cursor`, as the query parser already decoded it."""
    if not raw or not raw.startswith(f"{key}="):
        return None
    return raw[len(key) + 1:]


# --- market data --------------------------------------------------------------------------


def spot_instrument(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": market_id(inst), "baseCoin": inst.base, "quoteCoin": inst.quote,
        "innovation": "0", "status": "Trading",
        "marginTrading": "utaOnly" if marginable(inst) else "none", "stTag": "0",
        "lotSizeFilter": {
            "basePrecision": plain(inst.step_size), "quotePrecision": plain(inst.tick_size),
            "minOrderQty": plain(inst.min_qty), "maxOrderQty": plain(inst.max_qty),
            "minOrderAmt": plain(inst.min_notional), "maxOrderAmt": "2000000",
        },
        "priceFilter": {"tickSize": plain(inst.tick_size)},
        "riskParameters": {"priceLimitRatioX": "0.05", "priceLimitRatioY": "0.1"},
    }


def linear_instrument(inst: Instrument) -> dict[str, Any]:
    return {
        "symbol": market_id(inst), "contractType": "LinearPerpetual", "status": "Trading",
        "baseCoin": inst.base, "quoteCoin": inst.quote, "launchTime": str(inst.listed_ms),
        "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": str(inst.price_decimals),
        "leverageFilter": {"minLeverage": "1", "maxLeverage": f"{tiers.max_leverage(inst):.2f}",
                           "leverageStep": "0.01"},
        "priceFilter": {"minPrice": plain(inst.min_price), "maxPrice": plain(inst.max_price),
                        "tickSize": plain(inst.tick_size)},
        "lotSizeFilter": {
            "maxOrderQty": plain(inst.max_qty), "minOrderQty": plain(inst.min_qty),
            "qtyStep": plain(inst.step_size), "postOnlyMaxOrderQty": plain(inst.max_qty),
            "maxMktOrderQty": plain(inst.max_qty), "minNotionalValue": plain(inst.min_notional),
        },
        "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": inst.quote,
        "copyTrading": "none", "upperFundingRate": "0.005", "lowerFundingRate": "-0.005",
        "isPreListing": False, "preListingInfo": None,
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
        "displayName": "",
    }


def _pct(t: TickerStats) -> str:
    return plain(((t.last - t.open) / t.open).quantize(_PCT))


def spot_ticker(inst: Instrument, t: TickerStats) -> dict[str, Any]:
    size = plain(inst.min_qty * 10)
    return {
        "symbol": market_id(inst), "bid1Price": plain(t.bid), "bid1Size": size,
        "ask1Price": plain(t.ask), "ask1Size": size, "lastPrice": plain(t.last),
        "prevPrice24h": plain(t.open), "price24hPcnt": _pct(t),
        "highPrice24h": plain(t.high), "lowPrice24h": plain(t.low),
        "turnover24h": plain(t.quote_volume), "volume24h": plain(t.volume),
        "usdIndexPrice": plain(t.last),
    }


def linear_ticker(
    inst: Instrument, t: TickerStats, price_1h_ago: Decimal, next_funding_ms: int,
    funding_rate: Decimal,
) -> dict[str, Any]:
    """The linear ticker; ccxt tells it from a spot one by `openInterestValue`."""
    open_interest = (t.volume / 10).quantize(inst.step_size)
    size = plain(inst.min_qty * 10)
    return {
        "symbol": market_id(inst), "lastPrice": plain(t.last), "indexPrice": plain(t.last),
        "markPrice": plain(t.last), "prevPrice24h": plain(t.open), "price24hPcnt": _pct(t),
        "highPrice24h": plain(t.high), "lowPrice24h": plain(t.low),
        "prevPrice1h": plain(price_1h_ago), "openInterest": plain(open_interest),
        "openInterestValue": plain((open_interest * t.last).quantize(Decimal("0.01"))),
        "turnover24h": plain(t.quote_volume), "volume24h": plain(t.volume),
        "fundingRate": plain(funding_rate), "nextFundingTime": str(next_funding_ms),
        "fundingIntervalHour": "8", "fundingCap": "0.005",
        "predictedDeliveryPrice": "", "basisRate": "", "deliveryFeeRate": "",
        "deliveryTime": "0", "ask1Size": size, "bid1Price": plain(t.bid),
        "ask1Price": plain(t.ask), "bid1Size": size, "basis": "", "preOpenPrice": "",
        "preQty": "", "curPreListingPhase": "",
    }


def kline(c: Candle) -> list[str]:
    """`[startTime, open, high, low, close, volume, turnover]`, all strings."""
    return [str(c.open_ms), plain(c.open), plain(c.high), plain(c.low), plain(c.close),
            plain(c.volume), plain(c.quote_volume)]


# --- account ----------------------------------------------------------------------------


def api_key_info(account: Account) -> dict[str, Any]:
    """`/v5/user/query-api`: ccxt reads `unified`/`uta` to pick the account endpoints."""
    perms = account.spec.permissions
    trade = Permission.TRADE in perms
    wallet = ["AccountTransfer", "SubMemberTransfer"]
    if Permission.WITHDRAW in perms:
        wallet.append("Withdraw")
    return {
        "id": str(account.uid), "note": "simulator", "apiKey": account.api_key,
        "readOnly": 0 if trade else 1, "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"] if trade else [],
            "Spot": ["SpotTrade"] if trade else [], "Wallet": wallet,
            "Options": ["OptionsTrade"] if trade and Permission.OPTIONS in perms else [],
            "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [],
            "NFT": [], "Affiliate": [], "Earn": [],
        },
        "ips": list(account.spec.ip_whitelist) or ["*"], "type": 1, "deadlineDay": -1,
        "expiredAt": "", "createdAt": "2024-01-01T00:00:00Z", "unified": 0, "uta": 1,
        "userID": account.uid, "inviterID": 0, "vipLevel": "No VIP", "mktMakerLevel": "0",
        "affiliateID": 0, "rsaPublicKey": "", "isMaster": True, "parentUid": "0",
        "kycLevel": "LEVEL_DEFAULT", "kycRegion": "",
    }


def account_info(now_ms: int, margin_mode: str) -> dict[str, Any]:
    """`/v5/account/info`: status 5 is UTA 2.0, whose wallet holds spot and derivatives."""
    return {
        "unifiedMarginStatus": 5, "marginMode": margin_mode, "isMasterTrader": False,
        "spotHedgingStatus": "OFF", "updatedTime": str(now_ms), "dcpStatus": "OFF",
        "timeWindow": 10, "smpGroup": 0,
    }


def coin_info(asset: str) -> dict[str, Any]:
    chain = asset if asset in ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "TRX") else "ETH"
    return {
        "name": asset, "coin": asset, "remainAmount": "1000000",
        "chains": [{
            "chainType": chain, "confirmation": "12", "withdrawFee": "0.0001",
            "depositMin": "0", "withdrawMin": "0.001", "chain": chain, "chainDeposit": "1",
            "chainWithdraw": "1", "minAccuracy": "8", "withdrawPercentageFee": "0",
            "contractAddress": "", "safeConfirmNumber": "6", "withdrawFeeFromBalance": "0",
        }],
    }


# --- requests: Bybit's parameters, decoded ------------------------------------------------


def lack(name: str) -> str:
    return f"Missing some parameters that must be filled in, lack of {name}"


@dataclass(frozen=True, slots=True)
class Call(AccountCall):
    """What a handler gets: the parameters (query, or JSON body on POST) and the account."""

    params: Mapping[str, Any]
    account: Account | None
    now_ms: int

    def text(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def require(self, name: str) -> str:
        value = self.text(name)
        if value is None:
            raise error(10001, lack(name), self.now_ms)
        return value

    def decimal(self, name: str) -> Decimal | None:
        raw = self.text(name)
        try:
            return None if raw is None else Decimal(raw)
        except InvalidOperation as exc:
            raise error(10001, f"params error: {name} invalid", self.now_ms) from exc

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is not None and not raw.isdigit():
            raise error(10001, f"params error: {name} invalid", self.now_ms)
        return default if raw is None else min(max(int(raw), low), high)


@dataclass(frozen=True, slots=True)
class Serialized:
    """A `result` already encoded as JSON (the instrument lists are long and static)."""

    text: str


def params(data: RequestData, now_ms: int) -> Mapping[str, Any]:
    """Query parameters, or on POST the JSON body (Bybit signs and reads it as JSON)."""
    if data.method != "POST":
        return data.params
    try:
        body = data.json_body()
    except json.JSONDecodeError as exc:
        raise error(10001, "request params type error", now_ms) from exc
    return body if isinstance(body, dict) else {}
