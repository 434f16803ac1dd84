"""Bybit's unified wallet (`/v5/account/wallet-balance`, the `wallet` stream): one entry
per coin summing the spot holding, its spot-margin debt and the derivatives wallet.

A coin's `walletBalance` is what the account holds of it less what it owes (negative
while a spot-margin loan is bigger than the holding, as Bybit shows it), with the
loan in `borrowAmount` and its interest in `accruedInterest`; ccxt reports the two
as the balance's `debt`. `availableToWithdraw` is blank, as Bybit now sends it for
UNIFIED accounts, so ccxt derives `used` from `locked + totalPositionIM +
totalOrderIM`. The account's IM and MM rates count the spot loans: their initial
margin is what the spot leverage requires (debt / (leverage - 1)), their maintenance
what keeps the margin level above the liquidation level.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ctsd.sim import lending
from ctsd.sim.accounts import SPOT_WALLET, Account, DerivativesBalance, Holding
from ctsd.sim.market import Market
from ctsd.sim.matching import derivatives_balances
from ctsd.sim.wire import plain

_ZERO = Decimal(0)


def wallet_balance(account: Account, market: Market, wanted: set[str] | None = None,
                   *, held_only: bool = True) -> dict[str, Any]:
    """The `result` of `/v5/account/wallet-balance?accountType=UNIFIED`."""
    derivs = {b.asset: b for b in derivatives_balances(account, market)}
    terms = account.loans.terms.get(SPOT_WALLET)
    coins, borrow_im, borrow_mm = [], _ZERO, _ZERO
    for asset in sorted(set(account.spot) | set(derivs)):
        holding, deriv = account.spot.get(asset), derivs.get(asset)
        held = (holding is not None and (holding.total or holding.debt)) or (
            deriv is not None and (deriv.wallet or deriv.unrealized_pnl))
        if (held_only and not held) or (wanted is not None and asset not in wanted):
            continue
        usd = lending.price_of(market, asset)
        borrowable = lending.max_borrowable(account, market, SPOT_WALLET, asset) if terms \
            else None
        coins.append(wallet_coin(asset, holding, deriv, usd, borrowable))
        if terms is not None and holding is not None and holding.debt:
            borrow_im += holding.debt * usd / (terms.max_leverage - 1)
            borrow_mm += holding.debt * usd * (terms.liquidation_level - 1)
    return unified_wallet(coins, borrow_im, borrow_mm)


def wallet_coin(
    asset: str, holding: Holding | None, deriv: DerivativesBalance | None, usd_price: Decimal,
    borrowable: Decimal | None = None,
) -> dict[str, Any]:
    """One coin of the unified wallet."""
    spot_net = holding.net if holding else _ZERO
    locked = holding.locked if holding else _ZERO
    wallet = spot_net + (deriv.wallet if deriv else _ZERO)
    upnl = deriv.unrealized_pnl if deriv else _ZERO
    position_im = deriv.position_margin if deriv else _ZERO
    order_im = deriv.order_margin if deriv else _ZERO
    equity = wallet + upnl
    return {
        "availableToBorrow": "" if borrowable is None else plain(borrowable), "bonus": "0",
        "accruedInterest": plain(holding.interest if holding else _ZERO),
        "availableToWithdraw": "", "totalOrderIM": plain(order_im), "equity": plain(equity),
        "totalPositionMM": plain(position_im / 2), "usdValue": plain(equity * usd_price),
        "spotHedgingQty": "0", "unrealisedPnl": plain(upnl), "collateralSwitch": True,
        "borrowAmount": plain(holding.borrowed if holding else _ZERO),
        "totalPositionIM": plain(position_im), "walletBalance": plain(wallet),
        "cumRealisedPnl": "0", "locked": plain(locked), "marginCollateral": True,
        "coin": asset,
    }


def unified_wallet(coins: list[dict[str, Any]], borrow_im: Decimal = _ZERO,
                   borrow_mm: Decimal = _ZERO) -> dict[str, Any]:
    """The UNIFIED account entry; account-level totals are in USD."""

    def usd(field: str) -> Decimal:
        total = _ZERO
        for c in coins:
            equity = Decimal(c["equity"])
            rate = Decimal(c["usdValue"]) / equity if equity else _ZERO
            total += Decimal(c[field]) * rate
        return total

    equity = sum((Decimal(c["usdValue"]) for c in coins), _ZERO)
    initial = usd("totalPositionIM") + usd("totalOrderIM") + borrow_im
    maintenance = usd("totalPositionMM") + borrow_mm
    return {"list": [{
        "totalEquity": plain(equity), "accountIMRate": plain(_rate(initial, equity)),
        "totalMarginBalance": plain(equity), "totalInitialMargin": plain(initial),
        "accountType": "UNIFIED", "totalAvailableBalance": plain(equity - initial),
        "accountMMRate": plain(_rate(maintenance, equity)),
        "totalPerpUPL": plain(usd("unrealisedPnl")),
        "totalWalletBalance": plain(usd("walletBalance")), "accountLTV": "0",
        "totalMaintenanceMargin": plain(maintenance), "coin": coins,
    }]}


def _rate(part: Decimal, whole: Decimal) -> Decimal:
    return (part / whole).quantize(Decimal("0.0001")) if whole else _ZERO
