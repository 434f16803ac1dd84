"""OKX spot margin and options accounts (a "Spot and futures mode" account or above).

OKX lends on spot pairs through the order's trade mode (`tdMode` cross or
isolated) to accounts of `acctLv` 2 and above; a simple-mode account (1) does
not. Each borrowing order opens a MARGIN position that carries the loan (`liab`,
negative, in `liabCcy`), its `interest` and its margin ratio (`mgnRatio`:
equity over maintenance margin, liquidation at 1). Options are coin-margined
(settled in BTC or ETH) from the trading account, once options trading is
activated on it (`opAuth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ctsd.exchanges import model
from ctsd.exchanges.answers import amount, decimal, mapping, rows
from ctsd.exchanges.lending import default_hourly
from ctsd.exchanges.profile import CHANGED, Setting, VenueCalls

LENDING_LEVELS = frozenset({"2", "3", "4"})
"""Spot and futures, multi-currency and portfolio margin modes lend; simple mode not."""


async def _config(client: VenueCalls) -> Mapping[str, Any]:
    raw = mapping(await client.call("privateGetAccountConfig", {}, signed=True),
                  "account config")
    found = rows(raw.get("data"), "account config data")
    if not found:
        raise ValueError("account config is empty")
    return found[0]


async def _data(client: VenueCalls, method: str, params: dict[str, Any],
                what: str) -> list[Mapping[str, Any]]:
    raw = mapping(await client.call(method, params, signed=True), what)
    return rows(raw.get("data"), what)


async def read_margin_account(client: VenueCalls, mode: str) -> model.MarginAccount:
    config = await _config(client)
    enabled = str(config.get("acctLv")) in LENDING_LEVELS
    positions = [p for p in await _data(client, "privateGetAccountPositions",
                                        {"instType": "MARGIN"}, "margin positions")
                 if str(p.get("mgnMode")) == mode]
    debts = tuple(model.Debt(str(p.get("liabCcy")), abs(amount(p.get("liab"))),
                             amount(p.get("interest"))) for p in positions if amount(p.get("liab")))
    ratios = [r for p in positions if (r := decimal(p.get("mgnRatio"))) is not None]
    balance = await _data(client, "privateGetAccountBalance", {}, "account balance")
    equity = amount(balance[0].get("totalEq")) if balance else Decimal(0)
    return model.MarginAccount(
        mode, enabled, min(ratios, default=None), "margin ratio", debts, equity, "USD",
        "" if enabled else f"the account is in simple mode (acctLv {config.get('acctLv')}), "
                           "which does not lend: switch it to Spot and futures mode")


async def read_options_account(client: VenueCalls) -> model.OptionsAccount:
    config = await _config(client)
    enabled = str(config.get("opAuth")) == "1"
    balance = await _data(client, "privateGetAccountBalance", {}, "account balance")
    details = rows(balance[0].get("details"), "balance details") if balance else []
    held = tuple(model.Holding(str(d["ccy"]), amount(d.get("availEq") or d.get("availBal")),
                               amount(d.get("frozenBal")), amount(d.get("eq")))
                 for d in details if str(d.get("ccy")) in ("BTC", "ETH"))
    return model.OptionsAccount(held, enabled, "" if enabled else
                                "options trading is not activated on the account (opAuth 0)")


# --- what a margin engine needs --------------------------------------------------------

DEFAULT_LEVERAGE = 5
LEVERAGE_RANGE = (1, 10)
LIQUIDATION_LEVEL = Decimal("1.05")


def order_params(leverage: int | None) -> Mapping[str, Any]:
    """`tdMode` cross: the spot order borrows what it lacks into a MARGIN position."""
    return {"marginMode": "cross"}


async def close_short(client: VenueCalls, symbol: str, client_id: str) -> None:
    """`trade/close-position` (ccxt `close_position`) of the cross MARGIN position: OKX
    closes it at market whole, its liability and interest repaid; `ccy`, the margin
    currency, is "required in the case of closing cross MARGIN position" in the account
    modes that lend (the quote: what the engine's positions post). The answer names no
    order id, only the `clOrdId` the order is then read by."""
    quote = symbol.split("/")[1]
    await client.call("close_position", symbol, None,
                      {"marginMode": "cross", "clOrdId": client_id, "ccy": quote}, signed=True)


async def prepare(client: VenueCalls, symbols: tuple[str, ...],
                  leverage: Mapping[str, int]) -> tuple[Setting, ...]:
    """The configured leverage of each spot instrument, cross (OKX answers success to a
    leverage it already has, so it reads as changed)."""
    done = []
    for symbol in symbols:
        if symbol in leverage:
            await client.call("set_leverage", leverage[symbol], symbol,
                              {"marginMode": "cross"}, signed=True)
            done.append(Setting(symbol, "margin leverage", f"{leverage[symbol]}x", CHANGED))
    return tuple(done)


async def read_terms(client: VenueCalls, assets: tuple[str, ...], leverage: int | None,
                     keyed: bool) -> model.LendingTerms:
    """Positions post 1/leverage of their cost as margin whichever their side (5x unless
    set; okx.com/help-center/6997123251341: "Short positions: initial margin = open
    amount / leverage * open price"), liquidation at a margin ratio of 1 (level 1.05),
    hourly interest at the account's rates (`interest-rate`)."""
    rates = []
    for asset in assets:
        rate = default_hourly(asset)
        if keyed:
            raw = await _data(client, "privateGetAccountInterestRate", {"ccy": asset},
                              "interest rate")
            if raw:
                rate = amount(raw[0].get("interestRate"))
        rates.append((asset, rate))
    return model.LendingTerms(Decimal(leverage or DEFAULT_LEVERAGE), LIQUIDATION_LEVEL,
                              tuple(rates), margin_per_order=True)


async def read_interest(client: VenueCalls, symbols: tuple[str, ...],
                        assets: tuple[str, ...], since_ms: int,
                        ) -> tuple[model.InterestCharge, ...]:
    """`account/interest-accrued` per instrument (ccxt's `fetch_borrow_interest`); rows
    have no id: the instrument, coin, time and place among equal rows name one."""
    found: list[model.InterestCharge] = []
    for symbol in symbols:
        raw = await client.call("fetch_borrow_interest", None, symbol, since_ms, 100,
                                {"marginMode": "cross"}, signed=True)
        seen: dict[tuple[str, int, str], int] = {}
        for row in reversed(rows(raw, "borrow interest")):
            info = mapping(row.get("info"), "borrow interest info")
            key = (str(info.get("ccy")), int(info["ts"]), str(info.get("interest")))
            n = seen[key] = seen.get(key, 0) + 1
            found.append(model.InterestCharge(f"okx:{info.get('instId')}:{key[0]}:{key[1]}:"
                                              f"{key[2]}:{n}", key[0], amount(key[2]), key[1]))
    return tuple(c for c in found if c.timestamp_ms >= since_ms)
