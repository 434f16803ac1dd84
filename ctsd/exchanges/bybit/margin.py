"""Bybit unified-account spot margin and options accounts.

Spot margin is one switch of the unified account
(`/v5/spot-margin-trade/state`: `spotMarginMode` "1" on), lending across the
whole account (cross: Bybit has no isolated spot margin on a unified account).
Loans show per coin in the wallet (`borrowAmount`, `accruedInterest`) and their
safety as the account's maintenance-margin rate (`accountMMRate`, liquidation at
100 %). Options settle in USDT from the same unified wallet.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ctsd.errors import InvalidArgument
from ctsd.exchanges.answers import amount, mapping, rows, settle_price
from ctsd.exchanges.lending import default_hourly
from ctsd.exchanges.model import (
    Debt,
    Holding,
    InterestCharge,
    LendingTerms,
    MarginAccount,
    OptionsAccount,
)
from ctsd.exchanges.profile import ALREADY_SET, CHANGED, Setting, VenueCalls

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


async def read_settlement(client: VenueCalls, market: Mapping[str, Any]) -> Decimal | None:
    """`/v5/market/delivery-price` (public, `category=option`): the contract's
    `deliveryPrice` once it has settled."""
    raw = await client.call("publicGetV5MarketDeliveryPrice",
                            {"category": "option", "symbol": market["id"]})
    found = rows(mapping(mapping(raw, "delivery price").get("result"), "delivery result")
                 .get("list"), "delivery list")
    row = next((r for r in found if r.get("symbol") == market["id"]), None)
    return None if row is None else settle_price(row.get("deliveryPrice"))


# --- what a margin engine needs --------------------------------------------------------

DEFAULT_LEVERAGE = 10
LEVERAGE_RANGE = (2, 10)
LIQUIDATION_LEVEL = Decimal("1.05")
"""Spot loans' maintenance margin is 5 % of the debt: liquidation at assets/debt 1.05."""
HISTORY_PAGE = 50


def order_params(leverage: int | None) -> Mapping[str, Any]:
    """`isLeverage=1`: the spot order borrows what it lacks (what comes in repays first
    once spot margin is on)."""
    return {"isLeverage": 1}


async def prepare(client: VenueCalls, symbols: tuple[str, ...],
                  leverage: Mapping[str, int]) -> tuple[Setting, ...]:
    """Spot margin on (an account-wide switch), and its leverage where configured: one
    value for the whole account, so every symbol must ask the same."""
    done: list[Setting] = []
    raw = await client.call("privateGetV5SpotMarginTradeState", {}, signed=True)
    state = mapping(mapping(raw, "spot margin state").get("result"), "spot margin state")
    if str(state.get("spotMarginMode")) == "1":
        done.append(Setting("*", "spot margin", "on", ALREADY_SET))
    else:
        await client.call("privatePostV5SpotMarginTradeSwitchMode", {"spotMarginMode": "1"},
                          signed=True)
        done.append(Setting("*", "spot margin", "on", CHANGED))
    wanted = set(leverage.values())
    if len(wanted) > 1:
        raise InvalidArgument.field("config.leverage", "bybit spot margin has one leverage "
                                    "for the whole account: give every symbol the same")
    if wanted:
        value = wanted.pop()
        if amount(state.get("spotLeverage")) == value:
            done.append(Setting("*", "spot margin leverage", f"{value}x", ALREADY_SET))
        else:
            await client.call("privatePostV5SpotMarginTradeSetLeverage",
                              {"leverage": str(value)}, signed=True)
            done.append(Setting("*", "spot margin leverage", f"{value}x", CHANGED))
    return tuple(done)


async def read_terms(client: VenueCalls, assets: tuple[str, ...], leverage: int | None,
                     keyed: bool) -> LendingTerms:
    """Up to the account's spot-margin leverage (10x unless set), liquidation at an MM
    rate of 100 % (level 1.05), hourly interest at the public VIP rates."""
    raw = await client.call("publicGetV5SpotMarginTradeData", {"vipLevel": "No%20VIP"})
    tiers = rows(mapping(mapping(raw, "spot margin data").get("result"), "spot margin data")
                 .get("vipCoinList"), "spot margin tiers")
    coins = {str(c.get("currency")): amount(c.get("hourlyBorrowRate"))
             for tier in tiers for c in rows(tier.get("list"), "spot margin coins")}
    rates = tuple((a, coins[a] if a in coins else default_hourly(a)) for a in assets)
    return LendingTerms(Decimal(leverage or DEFAULT_LEVERAGE), LIQUIDATION_LEVEL, rates)


async def read_interest(client: VenueCalls, symbols: tuple[str, ...],
                        assets: tuple[str, ...], since_ms: int,
                        ) -> tuple[InterestCharge, ...]:
    """`/v5/account/borrow-history`: one row per hourly charge (no id of its own: the
    coin, the time and the row's place among equal ones name it)."""
    found: list[InterestCharge] = []
    for asset in assets:
        cursor = ""
        for _ in range(20):  # 1,000 hours at most per read
            params: dict[str, Any] = {"currency": asset, "startTime": since_ms,
                                      "limit": HISTORY_PAGE}
            if cursor:
                params["cursor"] = cursor
            raw = await client.call("privateGetV5AccountBorrowHistory", params, signed=True)
            result = mapping(mapping(raw, "borrow history").get("result"), "borrow history")
            found += _charges(asset, rows(result.get("list"), "borrow history"))
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                break
    return tuple(found)


def _charges(asset: str, listed: list[Mapping[str, Any]]) -> list[InterestCharge]:
    seen: dict[tuple[int, str], int] = {}
    charges = []
    for row in reversed(listed):  # oldest first: a later read numbers equal rows alike
        stamp, cost = int(row["createdTime"]), str(row.get("borrowCost"))
        n = seen[(stamp, cost)] = seen.get((stamp, cost), 0) + 1
        charges.append(InterestCharge(f"bybit:{asset}:{stamp}:{cost}:{n}", asset,
                                      amount(cost), stamp))
    return charges
