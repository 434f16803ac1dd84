"""Kraken margin: an order's `leverage` (2 to 5 on the marginable pairs) opens, grows or
closes a position; `OpenPositions` and the margin fields of `TradeBalance`.

Over `ctsd.sim.lending`: each pair's positions are one position wallet
`kraken:<symbol>`. A leveraged buy posts 1/leverage of its cost from the spot balance as
margin and borrows the rest of the quote; a leveraged sell posts 1/leverage of its cost
too (Kraken's used margin is cost over leverage on either side) and borrows the base it
sells; the opposite leveraged order closes first (its proceeds repay), then opens the
other way; one for the position's volume closes it, and what a short still owes in the
base (its fees) is paid out of its quote (`MarginTerms.close_in_quote`). Kraken keeps
the posted margin in the account's `Balance` until the position closes, so `Balance` and
`BalanceEx` add it back. Rollover is 0.02 % per 4 hours of the path clock, charged at
opening too (Kraken's opening fee); at a margin level of 40 % (`margin_stop`: equity at
40 % of the margin used) the position is liquidated. `Ledgers` lists the opening fees
(type `margin`) and rollovers (type `rollover`) as Kraken books them: amount 0, the
charge in `fee`, in the borrowed asset; other ledger types (trades, deposits) are not
simulated and list nothing.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ctsd.sim import kraken_wire as render
from ctsd.sim import lending
from ctsd.sim.accounts import SPOT_WALLET, Account
from ctsd.sim.kraken_wire import LEVERAGES, KrakenPair
from ctsd.sim.loans import LoanKind, MarginTerms
from ctsd.sim.matching import OrderRequest
from ctsd.sim.wire import fixed

if TYPE_CHECKING:
    from ctsd.sim.kraken import Call, KrakenSim

PREFIX = "kraken:"
ROLLOVER_MS = 4 * 3_600_000
ROLLOVER_RATE = Decimal("0.0002")
LEDGER_PAGE = 50
LEDGER_TYPES = ("all", "margin", "rollover")
"""The `type`s of `Ledgers` with entries here (Kraken has more; they list nothing)."""
TERMS = MarginTerms(max_leverage=Decimal(max(LEVERAGES)), liquidation_level=Decimal(1),
                    period_ms=ROLLOVER_MS, charge_on_borrow=True, period_rate=ROLLOVER_RATE,
                    position=True, liquidation_margin=Decimal("0.4"), close_in_quote=True)


def wallet_name(pair: KrakenPair) -> str:
    return f"{PREFIX}{pair.inst.symbol}"


def margin_request(account: Account, pair: KrakenPair, raw: str | None,
                   req: OrderRequest) -> OrderRequest:
    """AddOrder's `leverage`: "none" (or absent) trades spot; 2..5 trades the pair's
    position wallet."""
    if raw in (None, "", "none"):
        return req
    try:
        leverage = Decimal(raw.split(":")[0])
    except ArithmeticError as exc:
        raise render.error(f"{render.INVALID_ARGUMENTS}:leverage") from exc
    if not lending.marginable(pair.inst):
        raise render.error("EOrder:Cannot open position")
    if leverage not in LEVERAGES:
        raise render.error(f"{render.INVALID_ARGUMENTS}:leverage")
    wallet = wallet_name(pair)
    lending.open_wallet(account, wallet, TERMS)
    return dataclasses.replace(req, wallet=wallet, auto_borrow=True, auto_repay=True,
                               leverage=leverage)


def posted(account: Account) -> dict[str, Decimal]:
    """Margin posted into open positions, per asset (what `Balance` still counts)."""
    out: dict[str, Decimal] = {}
    for wallet in lending.margin_wallets(account):
        if wallet.startswith(PREFIX):
            quote = wallet.split("/")[1]
            out[quote] = out.get(quote, Decimal(0)) + lending.posted_margin(account, wallet)
    return out


class KrakenMargin:
    def __init__(self, state: KrakenSim) -> None:
        self.state = state

    def _positions(self, account: Account) -> list[dict[str, Any]]:
        market = self.state.sim.market
        rows = []
        for wallet in lending.margin_wallets(account):
            if not wallet.startswith(PREFIX):
                continue
            held = lending.position(account, wallet)
            size, entry = held.size, held.entry
            if not size:
                continue
            pair = self.state.pair_of(wallet.removeprefix(PREFIX))
            # the order that opened the current position: its id names the position
            opening = account.orders.get(held.opening.order_id) if held.opening else None
            margin = lending.posted_margin(account, wallet)
            cost = abs(size) * entry
            mark = market.price(pair.inst.symbol)
            owed = pair.inst.quote if size > 0 else pair.inst.base
            rollover = sum((e.amount * lending.price_of(market, e.asset)
                            for e in lending.loan_charges(account, wallet, owed)), Decimal(0))
            rows.append({
                "ordertxid": render.order_txid(opening.id) if opening else "",
                "posstatus": "open", "pair": pair.altname,
                "time": (opening.created_ms if opening else 0) / 1000,
                "type": "buy" if size > 0 else "sell",
                "ordertype": opening.type.value if opening else "market",
                "cost": fixed(cost, render.COST_DECIMALS),
                "fee": fixed(held.fee, render.COST_DECIMALS),
                "vol": fixed(abs(size), render.VOLUME_DECIMALS), "vol_closed": fixed(
                    Decimal(0), render.VOLUME_DECIMALS),
                "margin": fixed(margin, render.COST_DECIMALS),
                "value": fixed(abs(size) * mark, render.COST_DECIMALS),
                "net": fixed(size * (mark - entry) - rollover, render.COST_DECIMALS),
                "terms": "0.0200% per 4 hours",
                "rollovertm": str((lending.interest_index(market, TERMS) + 1) * ROLLOVER_MS
                                  // 1000),
                "leverage": fixed(opening.leverage or Decimal(0), 5) if opening else "0",
                "misc": "", "oflags": "",
            })
        return rows

    async def ledgers(self, call: Call) -> Any:
        """`Ledgers`: opening fees (`margin`) and rollovers (`rollover`) of the account's
        positions, newest first, 50 from `ofs`, within `start`/`end` (seconds,
        exclusive) and the `asset`s named."""
        kind = call.params.get("type") or "all"
        if kind not in LEDGER_TYPES and kind not in ("trade", "deposit", "withdrawal",
                                                     "transfer", "adjustment", "credit",
                                                     "settled", "staking", "sale"):
            raise render.error(f"{render.INVALID_ARGUMENTS}:type")
        start, end = call.decimal("start"), call.decimal("end")
        assets = {a for a in (call.params.get("asset") or "").split(",") if a}
        account = call.owner()
        rows = []
        for entry in reversed(account.loans.ledger):
            if entry.kind is not LoanKind.INTEREST or not entry.wallet.startswith(PREFIX):
                continue
            entry_kind = "margin" if entry.on_borrow else "rollover"
            a = render.asset(entry.asset)
            if kind not in ("all", entry_kind) or (assets and not assets & {a.id, a.altname}) \
                    or (start is not None and entry.time_ms / 1000 <= start) \
                    or (end is not None and entry.time_ms / 1000 >= end):
                continue
            rows.append((entry, entry_kind, a))
        offset = call.integer("ofs") or 0
        return {"ledger": {render.ledger_id(e.id): {
            "refid": render.trade_txid(e.id), "time": e.time_ms / 1000, "type": kind_,
            "subtype": "", "aclass": "currency", "asset": a.id,
            "amount": fixed(Decimal(0), a.decimals), "fee": fixed(e.amount, a.decimals),
            "balance": fixed(account.holding(e.asset, SPOT_WALLET).total, a.decimals)}
            for e, kind_, a in rows[offset:offset + LEDGER_PAGE]}, "count": len(rows)}

    async def open_positions(self, call: Call) -> Any:
        rows = self._positions(call.owner())
        if call.params.get("consolidation") == "market":
            return [{k: row[k] for k in ("pair", "type", "leverage", "cost", "fee", "vol",
                                         "vol_closed", "margin", "value", "net")}
                    | {"positions": "1"} for row in rows]
        return {f"T{row['ordertxid'][1:]}": row for row in rows}

    async def trade_balance(self, call: Call) -> Any:
        """Trade balance in the quote: collateral, margin used, open positions' PnL."""
        account, market = call.owner(), self.state.sim.market
        held = posted(account)
        total = sum((h.total * lending.price_of(market, a) for a, h in account.spot.items()),
                    Decimal(0)) + sum(held.values(), Decimal(0))
        rows = self._positions(account)
        used = sum((Decimal(r["margin"]) for r in rows), Decimal(0))
        net = sum((Decimal(r["net"]) for r in rows), Decimal(0))
        cost = sum((Decimal(r["cost"]) for r in rows), Decimal(0))
        value = sum((Decimal(r["value"]) for r in rows), Decimal(0))
        equity = total + net
        out = {"eb": total, "tb": total, "m": used, "n": net, "c": cost, "v": value,
               "e": equity, "mf": equity - used, "uv": Decimal(0)}
        result: dict[str, str] = {k: fixed(v, 4) for k, v in out.items()}
        if used:
            result["ml"] = fixed(equity / used * 100, 2)
        return result

