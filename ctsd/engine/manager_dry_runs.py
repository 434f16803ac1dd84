"""`DryRuns`: TestEngine, one cycle decided and nothing placed.

Without a config the running engine previews its next cycle. With one, the cycle
runs on the running engine's market data and portfolio, or, with no engine running,
on the connection's PAPER clients opened for the test and the config's paper
balances. The cycle's modules (`market`, `risk`, `perp_session`) are imported by
the first dry run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ctsd.engine.config import EngineConfig, TradingMode, ValidatedConfig, validate_config
from ctsd.engine.manager_runs import EngineRuns
from ctsd.engine.market_ports import MarketDataSource, PerpetualMarketData
from ctsd.errors import FailedPrecondition
from ctsd.strategies.model import Balance, MarketKind, Portfolio

if TYPE_CHECKING:
    from ctsd.engine.market import DryRun


class DryRuns(EngineRuns):
    """A strategy's decisions on the venue's market now, without trading."""

    async def test(self, connection_id: str, config: EngineConfig | None = None) -> DryRun:
        """One dry cycle, nothing placed: the running engine's, or `config`'s on this connection."""
        run = self._runs.get(connection_id)
        if config is None:
            if run is None or not run.active:
                raise FailedPrecondition(
                    f"no engine is running on connections/{connection_id}; give a config to test")
            return await run.engine.preview()
        validated = validate_config(config, self._strategies)
        if run is not None and run.active:
            perp = run.engine.perp
            return await self._dry(validated, run.engine.market_data, run.engine.portfolio(),
                                   perp.market if perp else None,
                                   perp is not None and perp.modes.hedge)
        resources = await self._backend.open(connection_id, TradingMode.PAPER)
        try:
            balances = tuple(Balance(a, v, v) for a, v in config.paper.balances)
            perps = resources.kind is MarketKind.PERPETUAL
            return await self._dry(validated, resources.market_data, Portfolio(balances=balances),
                                   resources.perp_market if perps else None,
                                   perps and resources.modes.hedge)
        finally:
            await self._backend.close(connection_id, resources)

    async def _dry(self, validated: ValidatedConfig, market_data: MarketDataSource,
                   portfolio: Portfolio, perp_market: PerpetualMarketData | None = None,
                   hedge: bool = False) -> DryRun:
        from ctsd.engine.market import decide_dry, fetch_infos, fetch_snapshot
        from ctsd.engine.perp_session import with_funding
        from ctsd.engine.risk import RiskGate

        strategy = validated.build_strategy()
        infos = await fetch_infos(market_data, validated.config.symbols)
        market = await fetch_snapshot(market_data, infos, strategy.needs, self._clock)
        if perp_market is not None:
            market = await with_funding(perp_market, market)
        gate = RiskGate(validated.config.risk, self._clock, hedge=hedge)
        return decide_dry(strategy, market, portfolio, gate)
