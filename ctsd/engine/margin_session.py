"""The spot-margin part of an engine session: what it checks and sets before it trades.

Kept out of `ctsd.engine.engine` like the perpetuals' part (`perp_session`): the
engine calls `prepare` once per session, before it reconciles. A margin engine
trades cross margin (its orders borrow against the whole margin account); where a
venue keeps a setting the engine needs (Bybit's spot-margin switch, a leverage the
config names) LIVE sets it, a venue's refusal failing the start with its reason.
"""

from __future__ import annotations

import logging

from ctsd.engine.account_ports import MarginAccount
from ctsd.engine.config import EngineConfig
from ctsd.engine.market_ports import MarginMarketData
from ctsd.engine.perpetual import AppliedSetting, MarginMode
from ctsd.errors import FailedPrecondition, FieldViolation

log = logging.getLogger("ctsd.engine")


def check_margin(margin_mode: MarginMode, connection: str) -> None:
    """What a margin engine cannot do here: isolated margin (engines trade cross)."""
    if margin_mode is not MarginMode.CROSS:
        violation = FieldViolation("connection.margin_mode",
                                   "margin engines trade cross margin; set it to cross")
        raise FailedPrecondition(
            f"{connection} is set to isolated margin; margin engines trade cross margin "
            "(change the connection's margin_mode to cross)", [violation])


class MarginSession:
    """Per engine: the lending terms' source, and the LIVE account when trading live."""

    def __init__(self, config: EngineConfig, margin_mode: MarginMode,
                 market: MarginMarketData, account: MarginAccount | None,
                 connection_id: str) -> None:
        self._config = config
        self._margin_mode = margin_mode
        self.market = market
        self.account = account
        self._connection_id = connection_id

    async def prepare(self) -> tuple[AppliedSetting, ...]:
        check_margin(self._margin_mode, f"connections/{self._connection_id}")
        self.market.check_leverage(self._config.leverage)
        if self.account is None:
            return ()
        applied = await self.account.prepare(self._config.symbols, self._config.leverage)
        for setting in applied:
            log.info("margin setting applied", extra={
                "connection_id": self._connection_id, "setting": str(setting)})
        return applied
