"""OKX v5 wire shapes: envelopes, error codes, instruments, tickers, candles, balances
(orders: `ctsd.sim.okx_order_wire`).

Every answer is `{"code": "0", "msg": "", "data": [...]}` with numbers as strings,
and ccxt's `okx` parsers read exactly these field names. Two OKX conventions the
rest of the simulator does not share live here: perpetual sizes are counted in
contracts of `ctVal` base units (`sz`, `accFillSz`, `vol24h`, `minSz`, `lotSz`),
and fees are reported negative (a charge) with their currency in `feeCcy`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ctsd.sim import tiers
from ctsd.sim.accounts import (
    Account,
    Holding,
    OrderStatus,
    Permission,
    RejectKind,
)
from ctsd.sim.auth import AuthFailure
from ctsd.sim.lending import marginable
from ctsd.sim.market import Candle, Instrument, InstrumentKind, Market, TickerStats
from ctsd.sim.matching import derivatives_balances
from ctsd.sim.wire import VenueError, dumps, plain

_ZERO = Decimal(0)
CONTRACTS_PER_STEP = 1000
"""`ctVal` is 1,000 lot steps: 0.01 BTC, 0.1 ETH, 1 SOL, 1,000 DOGE — OKX's own values."""
BATCH_MAX = 20


# --- envelopes and errors ---------------------------------------------------------


def ok(data: list[Any]) -> dict[str, Any]:
    return {"code": "0", "msg": "", "data": data}


def error(status: int, code: str, msg: str) -> VenueError:
    """A request-level failure: `{"code": "5XXXX", "msg": ..., "data": []}`."""
    return VenueError(status, {"code": code, "data": [], "msg": msg})


def empty_param(name: str) -> VenueError:
    return error(400, "50014", f"Parameter {name} can not be empty")


def bad_param(name: str) -> VenueError:
    return error(400, "51000", f"Parameter {name} error")


def int_param(params: Mapping[str, str], name: str) -> int | None:
    """An integer query parameter (None when absent); anything else is 51000."""
    raw = params.get(name)
    if not raw:
        return None
    if not raw.lstrip("-").isdigit():
        raise bad_param(name)
    return int(raw)


def rate_limited(headers: Mapping[str, str] | None = None) -> VenueError:
    """HTTP 429 / 50011: ccxt raises RateLimitExceeded from the code, not the status."""
    return VenueError(429, {"msg": "Too Many Requests", "code": "50011"}, headers)


MAINTENANCE_BODY = {
    "code": "50001", "data": [], "msg": "Service temporarily unavailable. Please try again later.",
}

AUTH_ERRORS: dict[AuthFailure, tuple[str, str]] = {
    AuthFailure.MISSING_KEY: ("50103", 'Request header "OK-ACCESS-KEY" can not be empty.'),
    AuthFailure.UNKNOWN_KEY: ("50111", "Invalid OK-ACCESS-KEY"),
    AuthFailure.BAD_SIGNATURE: ("50113", "Invalid Sign"),
    AuthFailure.STALE_TIMESTAMP: ("50102", "Timestamp request expired"),
    AuthFailure.NONCE_REUSED: ("50102", "Timestamp request expired"),
    AuthFailure.BAD_PASSPHRASE: ("50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.'),
    AuthFailure.IP_NOT_ALLOWED: (
        "50110", "Your IP {} is not included in your API key's IP whitelist."),
    AuthFailure.PERMISSION_DENIED: ("50120", "API key doesn't have permission"),
}
"""Every authentication failure is HTTP 401 with `{"msg", "code"}` (no `data`)."""


def auth_error(failure: AuthFailure, detail: str = "") -> VenueError:
    code, msg = AUTH_ERRORS[failure]
    return VenueError(401, {"msg": msg.format(detail), "code": code})


def missing_header(name: str) -> VenueError:
    code = {"OK-ACCESS-PASSPHRASE": "50104", "OK-ACCESS-SIGN": "50106",
            "OK-ACCESS-TIMESTAMP": "50107"}[name]
    return VenueError(401, {"msg": f'Request header "{name}" can not be empty.', "code": code})


_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_ms(stamp: str) -> int:
    """`2024-01-02T03:04:05.678Z` → epoch ms; any other form is 50112."""
    if not _TIMESTAMP.fullmatch(stamp):
        raise VenueError(401, {"msg": "Invalid OK-ACCESS-TIMESTAMP", "code": "50112"})
    return (datetime.fromisoformat(stamp) - _EPOCH) // timedelta(milliseconds=1)


class OrderFailure(Exception):
    """One order of a (batch) request failed: rendered as its `sCode`/`sMsg`, not raised."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg


def order_failure(kind: RejectKind, inst: Instrument, buy: bool) -> OrderFailure:
    """A core `Rejection` as the `sCode` OKX puts in the order's slot of the answer."""
    if kind is RejectKind.INSUFFICIENT_FUNDS:
        if inst.kind is InstrumentKind.LINEAR:
            return OrderFailure("51008", f"Order failed. Insufficient {inst.quote} margin in "
                                         "account")
        ccy = inst.quote if buy else inst.base
        return OrderFailure("51008", f"Order failed. Insufficient {ccy} balance in account")
    code, msg = _REJECTIONS[kind]
    return OrderFailure(code, msg)


MIN_AMOUNT = ("51020", "Your order should meet or exceed the minimum order amount.")
_REJECTIONS: dict[RejectKind, tuple[str, str]] = {
    RejectKind.UNKNOWN_SYMBOL: ("51001", "Instrument ID does not exist."),
    RejectKind.PRICE_FILTER: ("51000", "Parameter px error"),
    RejectKind.LOT_SIZE: ("51121", "Order quantity must be a multiple of the lot size."),
    RejectKind.MIN_NOTIONAL: MIN_AMOUNT,
    RejectKind.DUPLICATE_CLIENT_ID: ("51016", "Duplicated clOrdId"),
    RejectKind.BAD_PARAMETER: (  # the core's only one left: a reduce-only order that adds
        "51169", "Order failed because you don't have any positions in this direction for "
                 "this contract to reduce or close."),
    RejectKind.REDUCE_ONLY: (
        "51169", "Order failed because you don't have any positions in this direction for "
                 "this contract to reduce or close."),
    RejectKind.POSITION_SIDE: ("51000", "Parameter posSide error"),
    RejectKind.POSITION_LIMIT: ("51004", "Order amount exceeds current tier limit"),
    RejectKind.UNKNOWN_ORDER: ("51603", "Order does not exist"),
    RejectKind.WOULD_TAKE: ("51000", "Parameter px error"),
    RejectKind.WOULD_TRIGGER: ("51280", "SL trigger price cannot be higher than the last price"),
    RejectKind.BORROW_LIMIT: ("51008", "Order failed. Insufficient account balance, and the "
                                       "adjusted equity in USD is less than IMR."),
    RejectKind.ORDER_NOT_OPEN: (
        "51400", "Order cancellation failed as the order has been filled, canceled or does "
                 "not exist."),
}
CANCEL_UNKNOWN = _REJECTIONS[RejectKind.ORDER_NOT_OPEN]
CANCEL_DONE = {
    OrderStatus.CANCELED: ("51401", "Cancellation failed as the order is already canceled."),
    OrderStatus.EXPIRED: ("51401", "Cancellation failed as the order is already canceled."),
    OrderStatus.FILLED: ("51402", "Cancellation failed as the order is already completed."),
}


def batch(results: list[dict[str, Any]], in_us: int, out_us: int) -> dict[str, Any]:
    """Top-level code of a per-order answer: 0 all placed, 1 none, 2 some (HTTP 200 always)."""
    failed = sum(1 for r in results if r["sCode"] != "0")
    if not failed:
        code, msg = "0", ""
    elif failed == len(results):
        code, msg = "1", "All operations failed"
    else:
        code, msg = "2", "Bulk operation partially succeeded"
    return {"code": code, "data": results, "inTime": str(in_us), "msg": msg,
            "outTime": str(out_us)}


# --- instruments ------------------------------------------------------------------


def inst_id(inst: Instrument) -> str:
    base = f"{inst.base}-{inst.quote}"
    return f"{base}-SWAP" if inst.kind is InstrumentKind.LINEAR else base


def inst_type(inst: Instrument) -> str:
    return "SWAP" if inst.kind is InstrumentKind.LINEAR else "SPOT"


def contract_value(inst: Instrument) -> Decimal:
    return (inst.step_size * CONTRACTS_PER_STEP).normalize()


def size(inst: Instrument, qty: Decimal) -> str:
    """Base quantity as OKX counts it: base units on spot, contracts on swaps."""
    if inst.kind is InstrumentKind.LINEAR:
        return plain(qty / contract_value(inst))
    return plain(qty)


def instrument(inst: Instrument, code: int) -> dict[str, Any]:
    swap = inst.kind is InstrumentKind.LINEAR
    ct_val = contract_value(inst) if swap else Decimal(1)
    max_sz = plain(inst.max_qty / ct_val)
    return {
        "alias": "", "auctionEndTime": "", "baseCcy": "" if swap else inst.base,
        "category": "1", "contTdSwTime": "", "ctMult": "1" if swap else "",
        "ctType": "linear" if swap else "", "ctVal": plain(ct_val) if swap else "",
        "ctValCcy": inst.base if swap else "", "expTime": "", "futureSettlement": False,
        "instFamily": f"{inst.base}-{inst.quote}" if swap else "", "instId": inst_id(inst),
        "instIdCode": code, "instType": inst_type(inst),
        "lever": plain(tiers.max_leverage(inst)) if swap else (
            "10" if marginable(inst) else ""),
        "listTime": str(inst.listed_ms),
        "lotSz": plain(inst.step_size / ct_val), "maxIcebergSz": max_sz,
        "maxLmtAmt": "20000000", "maxLmtSz": max_sz, "maxMktAmt": "1000000",
        "maxMktSz": max_sz if swap else "1000000", "maxStopSz": max_sz,
        "maxTriggerSz": max_sz, "maxTwapSz": max_sz, "minSz": plain(inst.min_qty / ct_val),
        "openType": "", "optType": "", "quoteCcy": "" if swap else inst.quote,
        "ruleType": "normal", "settleCcy": inst.quote if swap else "", "state": "live",
        "stk": "", "tickSz": plain(inst.tick_size),
        "tradeQuoteCcyList": [] if swap else [inst.quote],
        "uly": f"{inst.base}-{inst.quote}" if swap else "",
    }


def instruments_body(instruments: Iterable[Instrument], codes: Mapping[str, int]) -> str:
    """A `public/instruments` answer, serialised (the list can be 2,000 long)."""
    return dumps(ok([instrument(inst, codes[inst_id(inst)]) for inst in instruments]))


# --- market data ------------------------------------------------------------------

BARS = {
    "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "1h", "2H": "2h",
    "4H": "4h", "6Hutc": "6h", "12Hutc": "12h", "1Dutc": "1d", "3Dutc": "3d", "1Wutc": "1w",
}
"""OKX `bar` → unified timeframe; the Hong Kong-aligned bars (`1D`, `1W`, …) are not simulated."""
CANDLES_MAX = 300


def ticker(
    inst: Instrument, t: TickerStats, sod_utc0: Decimal, sod_utc8: Decimal,
) -> dict[str, Any]:
    swap = inst.kind is InstrumentKind.LINEAR
    depth = inst.min_qty * 10
    return {
        "instType": inst_type(inst), "instId": inst_id(inst), "last": plain(t.last),
        "lastSz": size(inst, inst.min_qty), "askPx": plain(t.ask), "askSz": size(inst, depth),
        "bidPx": plain(t.bid), "bidSz": size(inst, depth), "open24h": plain(t.open),
        "high24h": plain(t.high), "low24h": plain(t.low),
        "volCcy24h": plain(t.volume if swap else t.quote_volume),
        "vol24h": size(inst, t.volume), "ts": str(t.close_ms), "sodUtc0": plain(sod_utc0),
        "sodUtc8": plain(sod_utc8),
    }


def candle(inst: Instrument, c: Candle, now_ms: int) -> list[str]:
    """`[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`; vol is contracts on swaps."""
    swap = inst.kind is InstrumentKind.LINEAR
    return [
        str(c.open_ms), plain(c.open), plain(c.high), plain(c.low), plain(c.close),
        size(inst, c.volume), plain(c.volume if swap else c.quote_volume),
        plain(c.quote_volume), "1" if c.close_ms < now_ms else "0",
    ]


# --- accounts ---------------------------------------------------------------------


def _usd_price(market: Market, asset: str) -> Decimal:
    if asset == market.catalog.quote:
        return Decimal(1)
    symbol = f"{asset}/{market.catalog.quote}"
    return market.price(symbol) if market.catalog.get(symbol) else _ZERO


def _margin_holdings(account: Account) -> dict[str, Holding]:
    """What OKX's MARGIN positions (`ctsd.sim.okx_margin` wallets) hold and owe, per
    currency: part of the trading balance, the debt as its `liab` and `interest`."""
    found: dict[str, Holding] = {}
    for name, holdings in account.wallets.items():
        if name.startswith("okx:"):
            for asset, h in holdings.items():
                total = found.setdefault(asset, Holding())
                total.free += h.free
                total.locked += h.locked
                total.borrowed += h.borrowed
                total.interest += h.interest
    return found


def trading_balance(account: Account, market: Market, ccys: set[str] | None) -> dict[str, Any]:
    """The unified trading account: spot holdings and the swap wallet reported as one.

    The core keeps them as two pools; OKX's trading account shows one balance per
    currency, so each detail sums both (cash, frozen, unrealised PnL).
    """
    now = market.now_ms()
    wallets = {b.asset: b for b in derivatives_balances(account, market)}
    on_margin = _margin_holdings(account)
    details, total_usd, upl_usd, imr_usd = [], _ZERO, _ZERO, _ZERO
    for asset in sorted(set(account.spot) | set(wallets) | set(on_margin)):
        if ccys and asset not in ccys:
            continue
        held = account.spot.get(asset) or Holding()
        wallet = wallets.get(asset)
        in_margin = on_margin.get(asset) or Holding()
        liab = in_margin.debt
        cash = held.total + in_margin.total - liab + (wallet.wallet if wallet else _ZERO)
        upl = wallet.unrealized_pnl if wallet else _ZERO
        margin = wallet.position_margin + wallet.order_margin if wallet else _ZERO
        frozen = held.locked + margin
        eq = cash + upl
        if not eq and not frozen and not liab:
            continue
        usd = _usd_price(market, asset)
        total_usd += eq * usd
        upl_usd += upl * usd
        imr_usd += margin * usd
        details.append({
            "availBal": plain(cash - frozen), "availEq": plain(eq - frozen), "borrowFroz": "",
            "cashBal": plain(cash), "ccy": asset, "crossLiab": plain(liab) if liab else "",
            "disEq": plain(eq * usd),
            "eq": plain(eq), "eqUsd": plain(eq * usd), "fixedBal": "0", "frozenBal": plain(frozen),
            "imr": plain(margin), "interest": plain(in_margin.interest) if liab else "",
            "isoEq": "0", "isoLiab": "", "isoUpl": "0", "liab": plain(liab) if liab else "",
            "maxLoan": "", "mgnRatio": "", "mmr": plain(margin / 2),
            "notionalLever": "", "ordFrozen": plain(held.locked + (wallet.order_margin if wallet
                                                                   else _ZERO)),
            "rewardBal": "0", "spotInUseAmt": "", "spotIsoBal": "0", "stgyEq": "0", "twap": "0",
            "uTime": str(now), "upl": plain(upl), "uplLiab": "",
        })
    return {
        "adjEq": "", "borrowFroz": "", "details": details, "imr": plain(imr_usd), "isoEq": "0",
        "mgnRatio": "", "mmr": plain(imr_usd / 2), "notionalUsd": "", "ordFroz": "",
        "totalEq": plain(total_usd), "uTime": str(now), "upl": plain(upl_usd),
    }


_CHAINS = {"BTC": "Bitcoin", "USDT": "TRC20", "SOL": "Solana", "XRP": "Ripple"}


def currency(asset: str) -> dict[str, Any]:
    """One chain of `asset/currencies` (ccxt groups chains by `ccy`)."""
    return {
        "canDep": True, "canInternal": True, "canWd": True, "ccy": asset,
        "chain": f"{asset}-{_CHAINS.get(asset, 'ERC20')}", "ctAddr": "", "depEstOpenTime": "",
        "depQuotaFixed": "", "depQuoteDailyLayer2": "", "fee": "0.0001", "logoLink": "",
        "mainNet": True, "maxFee": "0.0001", "maxFeeForCtAddr": "", "maxWd": "10000000",
        "minDep": "0.0001", "minDepArrivalConfirm": "12", "minFee": "0.0001",
        "minFeeForCtAddr": "", "minInternal": "0.0001", "minWd": "0.001",
        "minWdUnlockConfirm": "12", "name": asset, "needTag": False, "usedDepQuotaFixed": "",
        "usedWdQuota": "0", "wdQuota": "10000000", "wdTickSz": "8",
    }


_PERMS = {Permission.READ: "read_only", Permission.TRADE: "trade", Permission.WITHDRAW: "withdraw"}


def account_config(account: Account, pos_mode: str) -> dict[str, Any]:
    """`account/config` of a "Futures mode" account (acctLv 2), in its position mode."""
    uid = str(account.uid)
    perms = ",".join(_PERMS[p] for p in _PERMS if p in account.spec.permissions)
    return {
        "acctLv": "2", "acctStpMode": "cancel_maker", "autoLoan": False,
        "ctIsoMode": "automatic", "enableSpotBorrow": False, "feeType": "0", "greeksType": "PA",
        "ip": ",".join(account.spec.ip_whitelist), "kycLv": "2", "label": "ctsd-sim",
        "level": "Lv1", "levelTmp": "", "liquidationGear": "-1", "mainUid": uid,
        "mgnIsoMode": "automatic", "opAuth": "1", "perm": perms, "posMode": pos_mode,
        "roleType": "0", "settleCcy": "USDT", "settleCcyList": ["USDT"],
        "spotBorrowAutoRepay": False, "spotOffsetType": "", "spotRoleType": "0",
        "spotTraderInsts": [], "traderInsts": [], "type": "0", "uid": uid,
    }
