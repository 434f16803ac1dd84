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
    """Orders post margin at their leverage (2x unless set), cost over leverage for a
    short as for a long (support.kraken.com 203053156), while the pair's maximum
    (5x) bounds what a position may borrow, 0.02 % per 4 hours and at opening on every
    asset, positions closed when equity falls to 40 % of their margin; a position an
    order for its volume closes is settled, its fees out of its quote
    (support.kraken.com 202966956)."""
    return LendingTerms(Decimal(LEVERAGE_RANGE[1]), Decimal(1),
                        tuple((a, ROLLOVER_RATE) for a in assets), ROLLOVER_MS,
                        charge_on_borrow=True, liquidation_margin=MARGIN_STOP,
                        margin_per_order=True,
                        order_leverage=Decimal(leverage or DEFAULT_LEVERAGE),
                        close_in_quote=True)


async def read_interest(client: VenueCalls, symbols: tuple[str, ...],
                        assets: tuple[str, ...], since_ms: int,
                        ) -> tuple[InterestCharge, ...]:
    """Kraken books each charge in its ledger: a position's opening fee as a `margin`
    entry of amount 0 with the charge in `fee` (a `margin` entry with an amount is a
    margin trade, its fee a trading fee: not interest), each 4-hourly rollover as a
    `rollover` entry; in the asset charged, named by the ledger id. Read from
    `since_ms`, a page of 50 at a time. (Derived from `OpenPositions` before, a
    position's charges were counted again under each new position id and lost when
    it closed between two reads.)"""
    found: list[InterestCharge] = []
    for kind in ("margin", "rollover"):
        offset = 0
        while True:
            rows = await client.call("fetch_ledger", None, since_ms, None,
                                     {"type": kind, "ofs": offset}, signed=True)
            for row in rows:
                info = mapping(row.get("info"), "ledger entry")
                fee, code = amount(info.get("fee")), str(row.get("currency"))
                if code not in assets or fee <= 0 or (kind == "margin" and amount(
                        info.get("amount"))):
                    continue
                found.append(InterestCharge(f"kraken:{row.get('id')}", code, fee,
                                            int(row.get("timestamp") or 0)))
            if len(rows) < LEDGER_PAGE:
                break
            offset += LEDGER_PAGE
    return tuple(found)


LEDGER_PAGE = 50
