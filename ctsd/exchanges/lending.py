"""Numbers the venues' margin readers share: default borrow rates and period rates.

Where a paper engine has no key to ask the account's own rates, it charges these:
the majors' daily rates at the venues' lowest tier (Binance VIP 0, about the same on
Bybit and OKX), and a middling rate for any other asset.
"""

from __future__ import annotations

from decimal import Decimal

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
RATE_STEP = Decimal("1e-12")
DEFAULT_DAILY_RATES = {"USDT": Decimal("0.0002"), "USDC": Decimal("0.0002"),
                       "BTC": Decimal("0.00004"), "ETH": Decimal("0.00006")}
DEFAULT_DAILY_RATE = Decimal("0.0003")


def hourly(daily: Decimal) -> Decimal:
    """A daily rate as the rate of one hour (venues quantize it to 12 places)."""
    return (daily * HOUR_MS / DAY_MS).quantize(RATE_STEP)


def default_hourly(asset: str) -> Decimal:
    return hourly(DEFAULT_DAILY_RATES.get(asset, DEFAULT_DAILY_RATE))
