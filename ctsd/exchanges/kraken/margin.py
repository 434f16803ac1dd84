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
from ctsd.exchanges.model import Debt, InterestCharge, LendingTerms, MarginAccount
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


# --- what a margin engine needs --------------------------------------------------------

DEFAULT_LEVERAGE = 2
LEVERAGE_RANGE = (2, 5)
ROLLOVER_RATE = Decimal("0.0002")
"""0.02 % of what is borrowed per 4 hours, and once at opening (Kraken's opening fee)."""
ROLLOVER_MS = 4 * 3_600_000
MARGIN_STOP = Decimal("0.4")


def order_params(leverage: int | None) -> Mapping[str, Any]:
    """A leveraged order opens (or the opposite one closes) a position of the pair."""
    return {"leverage": leverage or DEFAULT_LEVERAGE}


async def read_terms(client: VenueCalls, assets: tuple[str, ...], leverage: int | None,
                     keyed: bool) -> LendingTerms:
    """The order's leverage (2x unless set), 0.02 % per 4 hours and at opening on every
    asset, positions closed when equity falls to 40 % of their margin."""
    lever = Decimal(leverage or DEFAULT_LEVERAGE)
    return LendingTerms(lever, Decimal(1), tuple((a, ROLLOVER_RATE) for a in assets),
                        ROLLOVER_MS, charge_on_borrow=True, liquidation_margin=MARGIN_STOP,
                        margin_per_order=True)


async def read_interest(client: VenueCalls, symbols: tuple[str, ...],
                        assets: tuple[str, ...], since_ms: int,
                        ) -> tuple[InterestCharge, ...]:
    """Kraken keeps no interest history here: each open position's rollover so far is
    what its `net` falls short of its price change; it is split into the charges it is
    made of (one at opening, one per 4 hours), each of 0.02 % of what the position
    borrowed, named by the position and their number."""
    raw = mapping(await client.call("privatePostOpenPositions", {}, signed=True),
                  "open positions")
    found: list[InterestCharge] = []
    for txid, position in mapping(raw.get("result") or {}, "open positions").items():
        if not isinstance(position, Mapping):
            continue
        symbol = client.symbol_of(str(position.get("pair")))
        if symbol not in symbols:
            continue
        debt = _debt(symbol, position)
        moved = amount(position.get("value")) - amount(position.get("cost"))
        if str(position.get("type")) != "buy":
            moved = -moved
        rollover = max(moved - amount(position.get("net")), Decimal(0))
        per_charge = debt.borrowed * ROLLOVER_RATE
        in_quote = per_charge  # a long owes the quote; a short the base, valued now
        if str(position.get("type")) != "buy" and debt.borrowed:
            in_quote = per_charge * amount(position.get("value")) / debt.borrowed
        count = int((rollover / in_quote).to_integral_value()) if in_quote > 0 else 0
        opened = int(float(position.get("time") or 0) * 1000)
        found += [InterestCharge(f"kraken:{txid}:{n}", debt.asset, per_charge.quantize(STEP),
                                 opened + (n - 1) * ROLLOVER_MS) for n in range(1, count + 1)]
    return tuple(found)


STEP = Decimal("0.00000001")
