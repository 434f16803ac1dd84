"""Bybit unified-account spot margin and options accounts.

Spot margin is one switch of the unified account
(`/v5/spot-margin-trade/state`: `spotMarginMode` "1" on), lending across the
whole account (cross: Bybit has no isolated spot margin on a unified account).
Loans show per coin in the wallet (`borrowAmount`, `accruedInterest`) and their
safety as the account's maintenance-margin rate (`accountMMRate`, liquidation at
100 %). Options settle in USDT from the same unified wallet.
"""

from __future__ import annotations

from typing import Any

from ctsd.exchanges.answers import amount, mapping, rows
from ctsd.exchanges.model import Debt, Holding, MarginAccount, OptionsAccount
from ctsd.exchanges.profile import VenueCalls

OPTIONS_SETTLE = frozenset({"USDT", "USDC"})


async def _wallet(client: VenueCalls) -> Any:
    raw = await client.call("privateGetV5AccountWalletBalance", {"accountType": "UNIFIED"},
                            signed=True)
    found = rows(mapping(mapping(raw, "wallet balance").get("result"), "wallet result")
                 .get("list"), "wallet list")
    if not found:
        raise ValueError("wallet balance lists no account")
    return found[0]


async def read_margin_account(client: VenueCalls, mode: str) -> MarginAccount:
    raw = await client.call("privateGetV5SpotMarginTradeState", {}, signed=True)
    state = mapping(mapping(raw, "spot margin state").get("result"), "spot margin state")
    enabled = str(state.get("spotMarginMode")) == "1"
    wallet = await _wallet(client)
    debts = tuple(d for d in (Debt(str(c["coin"]), amount(c.get("borrowAmount")),
                                   amount(c.get("accruedInterest")))
                              for c in rows(wallet.get("coin"), "wallet coins"))
                  if d.borrowed or d.interest)
    return MarginAccount(
        "cross", enabled, amount(wallet.get("accountMMRate")) if debts else None,
        "maintenance margin rate", debts, amount(wallet.get("totalEquity")), "USD",
        "" if enabled else "spot margin trading is off on the unified account "
                           "(/v5/spot-margin-trade/switch-mode)", engine_enables=True)


async def read_options_account(client: VenueCalls) -> OptionsAccount:
    wallet = await _wallet(client)
    held = tuple(Holding(str(c["coin"]), amount(c.get("walletBalance")) - amount(c.get("locked")),
                         amount(c.get("locked")), amount(c.get("equity")))
                 for c in rows(wallet.get("coin"), "wallet coins")
                 if str(c.get("coin")) in OPTIONS_SETTLE)
    return OptionsAccount(held)
