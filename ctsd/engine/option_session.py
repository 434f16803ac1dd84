"""The options part of an engine session: what it checks before it trades, and expiry.

Kept out of `ctsd.engine.engine` like the perpetuals' and spot margin's parts. An
options engine places limit orders on named contracts and sells back what it bought;
it does not write options (no short positions, so no margin), and it reads tickers
only (the venues serve no candles of option contracts here).

Expiry: once the engine's clock passes a contract's expiry (its market's), the venue
cancels the contract's resting orders and settles its positions in cash at the
underlying's price at expiry. The engine then cancels what it still holds open on it
(PAPER; LIVE learns the venue's cancel) and, once the venue publishes that settlement
price, books the settlement as one fill per contract: the position sold (a short
bought back) at its intrinsic value, no fee, under the id `expiry-<engine>-<symbol>`,
so the ledger closes the position with the PnL the venue paid, and a restart replays
it like any fill. PAPER's account moves the same way (`on_settle`); LIVE's balance
comes from the venue.

Positions (LIVE): each cycle the venue's option positions are compared with the
ledger (`differences`), as on perpetuals: a contract traded by anything but this
engine (by hand, another program, a venue's exercise) is a difference, and the engine
stops fail-closed naming it (or, with `on_position_mismatch=adopt`, books an
adjustment at the mark). An expired contract is left out: the venue has settled it,
the ledger books the settlement once the price is published.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal

from ctsd.engine.account_ports import OptionAccount
from ctsd.engine.config import EngineConfig
from ctsd.engine.ledger import Ledger
from ctsd.engine.market_ports import OptionMarketData
from ctsd.engine.options import OptionTerms
from ctsd.engine.orders import Execution, Fill, Order, OrderStatus
from ctsd.engine.position_check import Difference, compare
from ctsd.errors import FailedPrecondition, FieldViolation
from ctsd.strategies.base import DataNeeds
from ctsd.strategies.model import OrderType, Position, PositionSide, Side

log = logging.getLogger("ctsd.engine")
ZERO = Decimal(0)
EXPIRY_TAG = "expiry"


class OptionSession:
    """Per engine: the contracts' terms and their settlement prices."""

    def __init__(self, config: EngineConfig, market: OptionMarketData, connection_id: str,
                 on_settle: Callable[[Fill], None] | None = None,
                 account: OptionAccount | None = None) -> None:
        self._config = config
        self.market = market
        self.account = account
        """LIVE: the venue's positions, compared with the ledger each cycle."""
        self._connection_id = connection_id
        self._on_settle = on_settle
        """PAPER: the paper account moves for a settlement as the venue's would."""
        self.terms: dict[str, OptionTerms] = {}

    async def prepare(self, needs: DataNeeds, now_ms: int) -> None:
        """The contracts' terms; refuses (FailedPrecondition naming the field) leverage,
        a strategy set to go short or reading candles, and a contract already expired."""
        found: list[FieldViolation] = []
        if self._config.leverage:
            found.append(FieldViolation("config.leverage", "leverage does not apply to options"))
        if needs.shorts:
            found.append(FieldViolation(
                "config.params", f"{self._config.strategy} is set to open short positions; "
                "options engines buy contracts and sell back what they hold, they do not "
                "write options"))
        if needs.candles:
            found.append(FieldViolation(
                "config.strategy", f"{self._config.strategy} reads candles; the venues serve "
                "none of option contracts here (a strategy on tickers, such as grid, trades "
                "options)"))
        for index, symbol in enumerate(self._config.symbols):
            terms = await self.market.contract(symbol, f"config.symbols[{index}]")
            if terms.expiry_ms <= now_ms:
                found.append(FieldViolation(f"config.symbols[{index}]",
                                            f"{symbol} has expired"))
            self.terms[symbol] = terms
        if found:
            raise FailedPrecondition("; ".join(f"{v.field}: {v.description}" for v in found),
                                     found)

    def expired(self, now_ms: int) -> frozenset[str]:
        return frozenset(s for s, t in self.terms.items() if t.expiry_ms <= now_ms)

    async def differences(self, ledger: Ledger, marks: Mapping[str, Decimal],
                          now_ms: int) -> list[Difference]:
        """The contracts not yet expired whose venue position is not the ledger's (none
        without a LIVE account)."""
        if self.account is None:
            return []
        live = tuple(s for s in self._config.symbols if s not in self.expired(now_ms))
        if not live:
            return []
        held = await self.account.positions(live)
        return compare(ledger, {(s, PositionSide.BOTH): a for s, a in held.items()}, marks,
                       live)

    async def settlements(self, engine_id: str, cycle: int, positions: Sequence[Position],
                          now_ms: int) -> tuple[Execution, ...]:
        """One settlement per expired contract still held whose settlement price the venue
        has published (the others wait for the next cycle)."""
        done = []
        expired = self.expired(now_ms)
        for position in positions:
            if position.symbol not in expired or not position.amount:
                continue
            price = await self.market.settlement_price(position.symbol)
            if price is None:
                continue
            execution = self._settlement(engine_id, cycle, position,
                                         self.terms[position.symbol], price, now_ms)
            log.info("option settled at expiry", extra={
                "connection_id": self._connection_id, "symbol": position.symbol,
                "amount": str(position.amount), "settlement_price": str(price),
                "value": str(execution.order.average_price)})
            if self._on_settle is not None:
                for fill in execution.fills:
                    self._on_settle(fill)
            done.append(execution)
        return tuple(done)

    @staticmethod
    def _settlement(engine_id: str, cycle: int, position: Position, terms: OptionTerms,
                    price: Decimal, now_ms: int) -> Execution:
        side = Side.SELL if position.amount > 0 else Side.BUY
        amount, value = abs(position.amount), terms.intrinsic(price)
        cid = f"{EXPIRY_TAG}-{engine_id}-{position.symbol}"
        at_ms = min(terms.expiry_ms, now_ms)
        order = Order(cid, position.symbol, side, OrderType.LIMIT, amount, value, EXPIRY_TAG,
                      cycle, OrderStatus.FILLED, amount, value, ZERO, "",
                      f"settled at expiry: the underlying at {price}", at_ms, now_ms)
        fill = Fill(f"{cid}-settle", cid, position.symbol, side, amount, value, ZERO,
                    terms.settle, at_ms, False)
        return Execution(order, (fill,))

