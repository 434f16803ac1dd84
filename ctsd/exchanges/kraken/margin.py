"""Kraken spot margin: positions opened by orders with `leverage`, valued by TradeBalance.

Kraken has no margin account apart from the spot one: a leveraged order opens
(or closes) a position of its pair, on collateral of the whole account (cross).
`TradeBalance` gives the margin used (`m`), equity (`e`) and, while positions are
open, the margin level `ml` (equity over margin used, in %; Kraken closes
positions at 40 %). `OpenPositions` gives each position; what it owes is its
cost less its margin in the quote (a long) or its volume in the base (a short),
and its rollover is what its `net` is short of its price change.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ctsd.exchanges.answers import amount, decimal, mapping
from ctsd.exchanges.model import Debt, MarginAccount
from ctsd.exchanges.profile import VenueCalls


def _debt(symbol: str, position: Mapping[str, Any]) -> Debt:
    base, quote = symbol.split("/")[0], symbol.split("/")[-1]
    volume = amount(position.get("vol")) - amount(position.get("vol_closed"))
    cost, value = amount(position.get("cost")), amount(position.get("value"))
    long = str(position.get("type")) == "buy"
    moved = value - cost if long else cost - value
    rollover = max(moved - amount(position.get("net")), Decimal(0))
    if long:
        return Debt(quote, cost - amount(position.get("margin")), rollover)
    return Debt(base, volume, rollover)


async def read_margin_account(client: VenueCalls, mode: str) -> MarginAccount:
    balance = mapping(mapping(await client.call("privatePostTradeBalance", {}, signed=True),
                              "trade balance").get("result"), "trade balance")
    raw = mapping(await client.call("privatePostOpenPositions", {}, signed=True),
                  "open positions")
    positions = mapping(raw.get("result") or {}, "open positions")
    debts = tuple(_debt(client.symbol_of(str(p.get("pair"))), p)
                  for p in positions.values() if isinstance(p, Mapping))
    return MarginAccount("cross", True, decimal(balance.get("ml")), "margin level (%)", debts,
                         amount(balance.get("e")), "USD")
