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

from ctsd.exchanges.answers import amount, mapping, rows, settle_price
from ctsd.exchanges.lending import DEFAULT_DAILY_RATE, DEFAULT_DAILY_RATES, hourly
from ctsd.exchanges.model import (
    Debt,
    Holding,
    InterestCharge,
    KeyPermissions,
    LendingTerms,
    MarginAccount,
    OptionsAccount,
)
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


# --- what a margin engine needs --------------------------------------------------------

CROSS_LEVERAGE = Decimal(3)
LIQUIDATION_LEVEL = Decimal("1.1")


def order_params(leverage: int | None) -> Mapping[str, Any]:
    """A cross-margin order that borrows what it lacks and repays from what it brings in
    (Binance's `AUTO_BORROW_REPAY`); the cross account's leverage is Binance's (3x)."""
    return {"marginMode": "cross", "sideEffectType": "AUTO_BORROW_REPAY"}


async def read_terms(client: VenueCalls, assets: tuple[str, ...], leverage: int | None,
                     keyed: bool) -> LendingTerms:
    """Cross margin: 3x, liquidation at level 1.1, hourly interest, the first hour charged
    at the borrow (`ON_BORROW`); the account's daily rates (`interestRateHistory`), else
    Binance's VIP 0 rates."""
    rates = []
    for asset in assets:
        daily = DEFAULT_DAILY_RATES.get(asset, DEFAULT_DAILY_RATE)
        if keyed:
            raw = await client.call("sapiGetMarginInterestRateHistory", {"asset": asset},
                                    signed=True)
            found = rows(raw, "interest rate history")
            if found:
                daily = amount(found[0].get("dailyInterestRate"))
        rates.append((asset, hourly(daily)))
    return LendingTerms(CROSS_LEVERAGE, LIQUIDATION_LEVEL, tuple(rates), charge_on_borrow=True)


async def read_interest(client: VenueCalls, symbols: tuple[str, ...],
                        assets: tuple[str, ...], since_ms: int,
                        ) -> tuple[InterestCharge, ...]:
    """`margin/interestHistory` through ccxt's `fetch_borrow_interest`, per asset."""
    found = []
    for asset in assets:
        raw = await client.call("fetch_borrow_interest", asset, None, since_ms, 100,
                                {"marginMode": "cross"}, signed=True)
        for row in rows(raw, "borrow interest"):
            info = mapping(row.get("info"), "borrow interest info")
            found.append(InterestCharge(f"binance:{info['txId']}", str(row["currency"]),
                                        amount(row.get("interest")), int(row["timestamp"])))
    return tuple(c for c in found if c.timestamp_ms >= since_ms)


async def read_liquidations(client: VenueCalls, symbol: str, since_ms: int) -> frozenset[str]:
    """`margin/forceLiquidationRec`: the orders Binance placed to close the account out.
    Asked without a symbol (ccxt would send it as `isolatedSymbol`, which asks for the
    isolated pair's record) and filtered by the symbol's id here."""
    raw = await client.call("sapiGetMarginForceLiquidationRec",
                            {"startTime": since_ms, "size": 100}, signed=True)
    listed = rows(mapping(raw, "liquidation record").get("rows"), "liquidation rows")
    market_id = symbol.replace("/", "")
    return frozenset(str(row["orderId"]) for row in listed
                     if str(row.get("symbol")) == market_id and not row.get("isIsolated"))


async def read_settlement(client: VenueCalls, market: Mapping[str, Any]) -> Decimal | None:
    """`/eapi/v1/exerciseHistory` (public, newest first, per underlying such as BTCUSDT):
    `realStrikePrice` is the underlying's price the contract settled at."""
    underlying = str(market.get("info", {}).get("underlying") or
                     f"{market['base']}{market['quote']}")
    found = await client.call("eapiPublicGetExerciseHistory", {"underlying": underlying})
    row = next((r for r in rows(found, "exercise history") if r.get("symbol") == market["id"]),
               None)
    return None if row is None else settle_price(row.get("realStrikePrice"))
