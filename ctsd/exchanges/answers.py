"""ccxt's unified dicts → `ctsd.exchanges.model` values, refusing what does not parse.

ccxt 4.5.90 raises nothing for a 200 answer whose body is not JSON (or is cut
short): its parsers fill the unified structure with None. Every reader here
checks the fields a caller relies on and raises "malformed answer" instead of
handing a None (or a 0) onward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import Candle, Holding, Order, Position, Ticker, Trade


def decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        return None
    return result if result.is_finite() else None


def _required(value: Any, what: str) -> Decimal:
    result = decimal(value)
    if result is None:
        raise malformed(f"{what} is missing")
    return result


def _dict(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise malformed(f"{what} is not an object")
    return value


def server_time(value: Any) -> int:
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise malformed(f"server time is {type(value).__name__}")
    return int(value)


def holdings(balance: Any) -> tuple[Holding, ...]:
    balance = _dict(balance, "balance")
    if not isinstance(balance.get("info"), Mapping | list):
        raise malformed("balance carries no account data")
    totals = _dict(balance.get("total") or {}, "balance totals")
    free, used = balance.get("free") or {}, balance.get("used") or {}
    result = []
    for asset, total in sorted(totals.items()):
        amount = decimal(total)
        if amount is None:
            continue
        result.append(Holding(asset, decimal(free.get(asset)) or Decimal(0),
                              decimal(used.get(asset)) or Decimal(0), amount))
    return tuple(result)


def ticker(raw: Any, symbol: str, underlying_field: str | None = None) -> Ticker:
    """`underlying_field`: where the venue's answer (ccxt's `info`) quotes the underlying's
    price with an option contract's."""
    raw = _dict(raw, "ticker")
    last = decimal(raw.get("last")) or decimal(raw.get("close"))
    if last is None or last <= 0:
        raise malformed(f"ticker of {symbol} has no last price")
    stamp = raw.get("timestamp")
    info = raw.get("info")
    underlying = decimal(info.get(underlying_field)) if underlying_field and isinstance(
        info, dict) else None
    return Ticker(str(raw.get("symbol") or symbol), last, decimal(raw.get("bid")),
                  decimal(raw.get("ask")), int(stamp) if isinstance(stamp, int) else None,
                  underlying, decimal(raw.get("markPrice")) or None)


def candles(raw: Any, symbol: str) -> list[Candle]:
    if not isinstance(raw, list):
        raise malformed(f"candles of {symbol} are not a list")
    result = []
    for row in raw:
        if not isinstance(row, list | tuple) or len(row) < 6 or not isinstance(row[0], int):
            raise malformed(f"a candle of {symbol} is not [time, o, h, l, c, v]")
        values = [_required(v, f"a candle value of {symbol}") for v in row[1:6]]
        result.append(Candle(row[0], *values))
    return result


def order(raw: Any, symbol: str | None = None, order_id: str | None = None) -> Order:
    """`order_id`: the id asked about, for answers that do not repeat it (Kraken's cancel)."""
    raw = _dict(raw, "order")
    order_id = raw.get("id") or order_id
    if order_id in (None, ""):
        raise malformed("order has no id")
    stamp = raw.get("timestamp")
    return Order(
        id=str(order_id), client_id=raw.get("clientOrderId"),
        symbol=str(raw.get("symbol") or symbol or ""), side=str(raw.get("side") or ""),
        type=str(raw.get("type") or ""), status=raw.get("status") or None,
        amount=decimal(raw.get("amount")), filled=decimal(raw.get("filled")),
        price=decimal(raw.get("price")), average=decimal(raw.get("average")),
        timestamp_ms=int(stamp) if isinstance(stamp, int) else None,
        reduce_only=raw.get("reduceOnly") is True, **_fee(raw))


def _fee(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The cumulative fee: ccxt's `fees` summed in the first one's asset (a fee in a second
    asset, e.g. a BNB discount, is left out), else its single `fee`."""
    fees = [f for f in (raw.get("fees") or [raw.get("fee")]) if isinstance(f, Mapping)]
    priced: list[tuple[Decimal, str]] = []
    for item in fees:
        cost, asset = decimal(item.get("cost")), item.get("currency")
        if cost is not None and asset:
            priced.append((cost, str(asset)))
    if not priced:
        return {}
    asset = priced[0][1]
    return {"fee": sum((c for c, a in priced if a == asset), Decimal(0)), "fee_asset": asset}


def with_trades(order: Order, trades: Sequence[Trade]) -> Order:
    """`order` with its trades, its fee their sum as `_fee` sums an order's (in the first
    fee's asset); an order that paid nothing keeps its own fee."""
    priced = [t for t in trades if t.fee_asset]
    if not priced:
        return replace(order, trades=tuple(trades))
    asset = priced[0].fee_asset
    return replace(order, trades=tuple(trades), fee_asset=asset,
                   fee=sum((t.fee for t in priced if t.fee_asset == asset), Decimal(0)))


def contract_size(markets: Any, symbol: str) -> Decimal:
    """Base units per contract of `symbol` in ccxt's `markets`: amounts of contract
    markets (OKX swaps) are counted in contracts by the venue and in base units by
    everything above the exchange layer. 1 for everything else."""
    market = markets.get(symbol) if isinstance(markets, Mapping) else None
    size = decimal(market.get("contractSize")) if isinstance(market, Mapping) else None
    return size if size and market and market.get("contract") else Decimal(1)


def in_base(order: Order, size: Decimal) -> Order:
    """`order` with its amounts in base units, `size` base units a contract."""
    if size == 1:
        return order
    return replace(order, amount=None if order.amount is None else order.amount * size,
                   filled=None if order.filled is None else order.filled * size)


def orders(raw: Any) -> list[Order]:
    if not isinstance(raw, list):
        raise malformed("order list is not a list")
    return [order(item) for item in raw]


def trades(raw: Any, contract_size: Decimal = Decimal(1)) -> list[Trade]:
    """Own fills; amounts in base units (contracts times `contract_size`)."""
    if not isinstance(raw, list):
        raise malformed("trade list is not a list")
    found = []
    for item in raw:
        item = _dict(item, "trade")
        fee = _fee(item)
        stamp = item.get("timestamp")
        found.append(Trade(
            id=str(item.get("id") or ""), order_id=str(item.get("order") or ""),
            symbol=str(item.get("symbol") or ""), side=str(item.get("side") or ""),
            amount=_required(item.get("amount"), "a trade's amount") * contract_size,
            price=_required(item.get("price"), "a trade's price"),
            fee=fee.get("fee", Decimal(0)), fee_asset=fee.get("fee_asset", ""),
            timestamp_ms=int(stamp) if isinstance(stamp, int) else 0,
            maker=item.get("takerOrMaker") == "maker"))
    return found


# --- raw venue answers (the margin and options readers of `ctsd/exchanges/<venue>/`) ---

def amount(value: Any) -> Decimal:
    """A venue's number where one must be: "" or a missing one reads as zero."""
    return decimal(value) or Decimal(0)


def settle_price(value: Any) -> Decimal:
    """A settlement price where the venue lists one: a positive number, else ValueError
    (malformed: a missing price must not settle as zero)."""
    price = decimal(value)
    if price is None or price <= 0:
        raise ValueError(f"settlement price {value!r} is not a positive number")
    return price


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """`value` if it is an object; ValueError naming `what` otherwise (malformed)."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return value


def rows(value: Any, what: str) -> list[Mapping[str, Any]]:
    """The objects of a list answer; ValueError naming `what` if it is not a list."""
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list")
    return [row for row in value if isinstance(row, Mapping)]


def position_row(row: Mapping[str, Any], contracts: Decimal, contract_size: Decimal,
                 exchange: str) -> Position:
    """One ccxt position row (REST or stream) as a `Position` in base units. A flat leg
    (`contracts` 0, as the private streams report a close) keeps its hedge leg; ccxt gives
    a flat one-way position no side, and none is needed: its amount is 0."""
    symbol = str(row["symbol"])
    side = row.get("side")
    hedged = bool(row.get("hedged"))
    if side not in ("long", "short"):
        if contracts or hedged:
            raise malformed(f"{exchange} position of {symbol} has side {side!r}")
        side = "long"
    entry = decimal(row.get("entryPrice"))
    if entry is None:
        if contracts:
            raise malformed(f"{exchange} position of {symbol} has no entry price")
        entry = Decimal(0)
    margin = decimal(row.get("initialMargin"))
    if margin is None:
        margin = decimal(row.get("collateral"))
    return Position(
        symbol, str(side), hedged, abs(contracts) * contract_size, entry,
        decimal(row.get("markPrice")), decimal(row.get("leverage")),
        row.get("marginMode") or None, margin,
        decimal(row.get("liquidationPrice")) or None,
        decimal(row.get("unrealizedPnl")))
