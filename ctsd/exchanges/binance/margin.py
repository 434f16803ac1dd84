"""Binance spot margin and options accounts, and the permissions that govern them.

The key's margin (`enableMargin`) and options (`enableVanillaOptions`)
permissions are in `/sapi/v1/account/apiRestrictions`, not in the spot account
the spot permissions come from. The cross margin account is
`/sapi/v1/margin/account` (marginLevel: total assets over total debt, 999 when
nothing is owed), the isolated one `/sapi/v1/margin/isolated/account` (a level per
pair). ccxt 4.5.90's `fetch_balance({"type": "option"})` reads the spot account,
so the options wallet is read from `/eapi/v1/marginAccount`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ctsd.exchanges.answers import amount, mapping, rows
from ctsd.exchanges.model import Debt, Holding, KeyPermissions, MarginAccount, OptionsAccount
from ctsd.exchanges.profile import VenueCalls

NO_DEBT_LEVEL = Decimal(999)
"""What Binance shows as the margin level of an account that owes nothing."""


def restrictions(answer: Any) -> KeyPermissions:
    """`/sapi/v1/account/apiRestrictions`: every permission of the key, IP binding too."""
    found = mapping(answer, "apiRestrictions answer")
    if "enableMargin" not in found:
        raise ValueError("apiRestrictions answer without enableMargin")
    return KeyPermissions(
        read=bool(found.get("enableReading", True)),
        trade=bool(found.get("enableSpotAndMarginTrading")),
        withdraw=bool(found.get("enableWithdrawals")),
        ip_restricted=bool(found.get("ipRestrict")),
        margin=bool(found["enableMargin"]),
        options=bool(found.get("enableVanillaOptions")))


def _debt(asset: Mapping[str, Any]) -> Debt:
    return Debt(str(asset["asset"]), amount(asset.get("borrowed")),
                amount(asset.get("interest")))


def _level(raw: Any, owes: bool) -> Decimal | None:
    level = amount(raw)
    return level if owes and level and level < NO_DEBT_LEVEL else None


async def read_margin_account(client: VenueCalls, mode: str) -> MarginAccount:
    if mode == "isolated":
        raw = mapping(await client.call("sapiGetMarginIsolatedAccount", {}, signed=True),
                      "isolated margin account")
        pairs = rows(raw.get("assets"), "isolated margin pairs")
        debts = tuple(d for pair in pairs for d in (_debt(pair["baseAsset"]),
                                                    _debt(pair["quoteAsset"]))
                      if d.borrowed or d.interest)
        levels = [level for pair in pairs
                  if (level := _level(pair.get("marginLevel"), any(
                      amount(pair[side].get("borrowed")) for side in ("baseAsset", "quoteAsset"))))]
        return MarginAccount("isolated", True, min(levels, default=None), "margin level",
                             debts, amount(raw.get("totalNetAssetOfBtc")), "BTC")
    raw = mapping(await client.call("sapiGetMarginAccount", {}, signed=True),
                  "cross margin account")
    debts = tuple(d for d in map(_debt, rows(raw.get("userAssets"), "margin assets"))
                  if d.borrowed or d.interest)
    enabled = bool(raw.get("tradeEnabled", True)) and bool(raw.get("borrowEnabled", True))
    return MarginAccount(
        "cross", enabled, _level(raw.get("marginLevel"), bool(debts)), "margin level", debts,
        amount(raw.get("totalNetAssetOfBtc")), "BTC",
        "" if enabled else "Binance has disabled trading or borrowing on the margin account")


async def read_options_account(client: VenueCalls) -> OptionsAccount:
    raw = mapping(await client.call("eapiPrivateGetMarginAccount", {}, signed=True),
                  "options margin account")
    held = tuple(Holding(str(a["asset"]), amount(a.get("available")), amount(a.get("locked")),
                         amount(a.get("equity")))
                 for a in rows(raw.get("asset"), "options assets"))
    return OptionsAccount(held)
