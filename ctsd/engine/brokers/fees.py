"""`TradeFees`: a LIVE order's booked fee is the sum of the venue's per-trade fees.

Why a ledger of trade ids: the broker books one fill per new cumulative filled amount,
with the fee the cumulative fee grew by. That holds where the venue reports the order's
own cumulative fee (Bybit `cumExecFee`, OKX `fee`, Kraken's REST `fee`), but Binance
reports each trade's fee alone (`n` of an execution report), and Kraken's stream names
an order's fee only as a USD equivalent (`fee_usd_equiv`). Binance's REST order answers
carry none (the reader sums the order's own fills) and ccxt.pro sums the `n` of the
messages its cache saw. After a lost message, or a resubscribe that starts a fresh
cache, that streamed sum is short of the truth, and `remote.fee - order.fee` books too
little, or a negative fee.

So where the venue reports per-trade fees the order carries the trades the reader saw
(`ExchangeOrder.trades`), and the fee of a new filled amount is taken from trades:
- all of them, less what was booked, when their amounts add up to the order's filled
  amount (REST's own-fill read always; a stream that missed nothing);
- else the ones not booked yet (by trade id), when their amounts add up to exactly the
  new filled amount (a fresh cache that saw only the newest trades);
- else the update cannot say what the new amount paid: it is *inconsistent*, and the
  broker does not book it from the stream but reconciles over REST, whose own-fill read
  lists every trade. A fee delta is never negative.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from ctsd.engine.order_ports import ExchangeOrder, OrderTrade
from ctsd.engine.orders import Order

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class FeeDelta:
    fee: Decimal
    """What the new filled amount paid, as far as the update says (never negative)."""
    consistent: bool
    """False: trades the update does not list filled part of it (see the module doc)."""


class TradeFees:
    """The trade ids booked per open order (client order id), forgotten when it leaves."""

    def __init__(self) -> None:
        self._booked: dict[str, set[str]] = {}

    def delta(self, order: Order, remote: ExchangeOrder) -> FeeDelta:
        """The fee of what `remote` filled beyond what `order` booked."""
        if remote.trades is None:
            return FeeDelta(max(remote.fee - order.fee, ZERO), True)
        if _amount(remote.trades) == remote.filled:
            return FeeDelta(max(_fee(remote.trades, remote.fee_asset) - order.fee, ZERO), True)
        booked = self._booked.get(order.client_order_id, set())
        new = [t for t in remote.trades if t.trade_id not in booked]
        return FeeDelta(max(_fee(new, remote.fee_asset), ZERO),
                        _amount(new) == remote.filled - order.filled)

    def book(self, remote: ExchangeOrder) -> None:
        """`remote`'s trades are in the ledger now."""
        if remote.trades:
            self._booked.setdefault(remote.client_order_id, set()).update(
                t.trade_id for t in remote.trades)

    def forget(self, client_order_id: str) -> None:
        self._booked.pop(client_order_id, None)


def _amount(trades: Iterable[OrderTrade]) -> Decimal:
    return sum((t.amount for t in trades), ZERO)


def _fee(trades: Iterable[OrderTrade], asset: str) -> Decimal:
    """Fees in the order's fee asset (one in a second asset, e.g. BNB, is not counted,
    as `ctsd.exchanges.answers` does for an order's fees)."""
    return sum((t.fee for t in trades if t.fee_asset == asset or not asset), ZERO)
