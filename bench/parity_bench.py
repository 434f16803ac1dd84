"""PAPER against LIVE: the same strategy on the same seeded price path, side by side.

For each row (a venue, a market type, a symbol, its settings) two engines run the
same `sma_cross` on the same simulator: one PAPER (the daemon's own fill model:
`PaperBroker` on spot, `PaperPerpBroker` on perpetuals) and one LIVE (real orders
through unmodified ccxt on a simulator account funded like the paper one). The
simulator's market clock is stepped one candle per cycle, so every cycle of both
engines sees the same closed candles, tickers, funding terms and marks; the
perpetuals row runs at a leverage and crosses funding times (1,000 one-minute
cycles are 16.7 hours: at least two of the 8-hourly funding times).

Printed per row: fills in each, equity of each (starting capital + realized +
unrealized PnL from each engine's ledger), `equity_diff_pct` (the difference over
the starting capital, in percent) and `live_vs_venue_pct` (LIVE's ledger against
the simulator's own account: the ledger matches the venue). Targets: the same
number of fills and `equity_diff_pct` <= 0.25 on every row.

Everything runs in this process: the simulator (its limits scaled up, as the
daemon's rate limiter is: this bench measures fidelity, not rate limits), the
exchange layer, the engines and a SQLite store. A row only says what differs.

Spot margin rows (`margin`, `margin-bybit`, `-okx`, `-kraken`) run sma_cross long and
short: each short borrows the BTC it sells and pays interest per the venue's periods
while held (`interest_*`). Options rows (`options`, `options-bybit`) run a grid on a BTC
contract whose expiry falls in the middle of the run (`option_row`): what the grid holds
then is settled at the venue's published price and booked in both engines.

    .venv/bin/python -m bench.parity_bench [--cycles 1000] [--rows spot,perp,margin]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ctsd.engine.assembly import assemble_engine  # noqa: E402
from ctsd.engine.config import EngineConfig, PaperSettings, TradingMode, validate_config  # noqa: E402
from ctsd.engine.engine import Engine  # noqa: E402
from ctsd.engine.perpetual import AccountModes, MarginMode  # noqa: E402
from ctsd.engine.store_ports import DesiredState, EngineRecord  # noqa: E402
from ctsd.exchanges.client import ExchangeClient  # noqa: E402
from ctsd.exchanges.factory import ExchangeClientFactory  # noqa: E402
from ctsd.exchanges.model import ApiCredentials, ConnectionTarget  # noqa: E402
from ctsd.exchanges.registry import ExchangeRegistry  # noqa: E402
from ctsd.exchanges.settings import ExchangeSettings  # noqa: E402
from ctsd.exchanges.spec import ApiType  # noqa: E402
from ctsd.ratelimit import Lane, LimitOverride, RateLimiter, RateLimitOverrides  # noqa: E402
from ctsd.sim import derivatives, option_trading  # noqa: E402
from ctsd.sim.accounts import AccountSpec, Permission  # noqa: E402
from ctsd.sim.clock import ManualClock  # noqa: E402
from ctsd.sim.ratelimit import RateLimitConfig  # noqa: E402
from ctsd.sim.server import SimulatorServer  # noqa: E402
from ctsd.sim.state import SimulatorConfig  # noqa: E402
from ctsd.store.database import Database  # noqa: E402
from ctsd.store.engines import SqlEngineStore  # noqa: E402
from ctsd.strategies.grid import GRID  # noqa: E402
from ctsd.strategies.registry import StrategyRegistry  # noqa: E402
from ctsd.strategies.sma_cross import SMA_CROSS  # noqa: E402
from ctsd.wiring.engine_exchange import engine_resources  # noqa: E402

SEED, MARKETS = 11, 12
CAPITAL = Decimal(10_000)
LIMIT_SCALE = 100
CANDLE_S = 60
KEY, SECRET, PASSPHRASE = "parity-key-0001", "parity-secret-0001", "parity-pass-0001"
TARGET_EQUITY_DIFF_PCT = 0.25


@dataclass(frozen=True)
class Row:
    """One market the strategy trades twice; everything not given is the default."""

    name: str
    venue: str
    api_type: ApiType
    symbol: str
    params: Mapping[str, str] = field(default_factory=lambda: {
        "fast": "3", "slow": "8", "quote_amount": "2000", "timeframe": "1m"})
    leverage: int | None = None
    modes: AccountModes = field(default_factory=AccountModes)
    direction: str = "auto"
    """sma_cross's direction; margin rows go long and short (shorts borrow the base)."""
    strategy: str = "sma_cross"
    """Options rows trade a grid (no candles of option contracts are served)."""

    def config(self, mode: TradingMode) -> EngineConfig:
        params = dict(self.params)
        if self.strategy == "sma_cross":
            params["direction"] = self.direction
        return EngineConfig(self.strategy, (self.symbol,), params, mode,
                            float(CANDLE_S),
                            paper=PaperSettings((("USDT", CAPITAL),), Decimal(0)),
                            leverage={self.symbol: self.leverage} if self.leverage else {})


ROWS = (
    Row("spot", "binance", ApiType.SPOT, "BTC/USDT"),
    Row("perp", "binance", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", leverage=5,
        modes=AccountModes(MarginMode.CROSS, hedge=False)),
    Row("perp-bybit-hedge", "bybit", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", leverage=5,
        modes=AccountModes(MarginMode.ISOLATED, hedge=True)),
    Row("perp-okx", "okx", ApiType.PERPETUAL_FUTURES, "BTC/USDT:USDT", leverage=5,
        modes=AccountModes(MarginMode.CROSS, hedge=False)),
    # spot margin: sma_cross long and short, each short borrowing the BTC it sells and
    # paying hourly interest on it (16.7 hours at 1,000 cycles)
    Row("margin", "binance", ApiType.MARGIN, "BTC/USDT", direction="long_short"),
    Row("margin-bybit", "bybit", ApiType.MARGIN, "BTC/USDT", direction="long_short"),
    Row("margin-okx", "okx", ApiType.MARGIN, "BTC/USDT", direction="long_short"),
    Row("margin-kraken", "kraken", ApiType.MARGIN, "BTC/USDT", direction="long_short"),
    # options: a grid on the BTC call struck nearest the price whose expiry falls in the
    # middle of the run (`option_row`); what it holds then settles at expiry
    Row("options", "binance", ApiType.OPTIONS, "", strategy="grid"),
    Row("options-bybit", "bybit", ApiType.OPTIONS, "", strategy="grid"),
)
DEFAULT_ROWS = "spot,perp,margin,margin-okx,margin-kraken,options"
ROW_INDEX = {row.name: n for n, row in enumerate(ROWS)}


def option_row(row: Row, server: SimulatorServer, clock: ManualClock, cycles: int) -> Row:
    """The row on a contract: the market clock moved to half the run before the soonest
    expiry at least that far away, and a grid of two levels each side 3 % apart around the
    model's price of the contract struck nearest the price then: the call if the seeded
    path falls to expiry, else the put, so that the grid's buys fill on the way and what
    they bought is held to expiry (the bench measures paper against live, not profit)."""
    chain, half_ms = server.sim.options, cycles * CANDLE_S * 500
    expiry = min(c.expiry_ms for c in chain.contracts() if c.expiry_ms > clock.now_ms() + half_ms)
    clock.set_ms((expiry - half_ms) // 60_000 * 60_000 + 30_000)
    market = server.sim.market
    price = market.price("BTC/USDT")
    call = market.price("BTC/USDT", at_ms=expiry - market.path_offset_ms) < price
    contract = min((c for c in chain.contracts(underlying="BTC")
                    if c.call is call and c.expiry_ms == expiry),
                   key=lambda c: abs(c.strike - price))
    reference = chain.value(contract)[0].quantize(Decimal(5))
    symbol = f"BTC/USDT:USDT-{contract.yymmdd}-{contract.strike_text}-{contract.letter}"
    return replace(row, symbol=symbol, params={
        "reference_price": str(reference), "spacing_pct": "3", "levels": "2", "amount": "0.1"})


def log(message: str) -> None:
    print(f"[parity] {message}", file=sys.stderr, flush=True)


def account_spec(row: Row) -> AccountSpec:
    """The LIVE account: the paper account's capital, on spot and on the futures wallet (on
    Binance's margin or options wallet, not spot, for a margin or options row: the wallet
    it trades)."""
    apart = row.venue == "binance" and row.api_type in (ApiType.MARGIN, ApiType.OPTIONS)
    wallet = {"USDT": CAPITAL}
    return AccountSpec(api_key=KEY, secret=kraken_secret() if row.venue == "kraken" else SECRET,
                       passphrase=PASSPHRASE, spot={} if apart else wallet,
                       derivatives=wallet,
                       margin=wallet if apart and row.api_type is ApiType.MARGIN else {},
                       options=wallet if apart and row.api_type is ApiType.OPTIONS else {},
                       permissions=frozenset({Permission.READ, Permission.TRADE,
                                              Permission.MARGIN, Permission.OPTIONS}))


def kraken_secret() -> str:
    """Kraken's secrets are base64 (ccxt decodes them to sign)."""
    return base64.b64encode(SECRET.encode().ljust(64, b".")).decode()


def overrides(venue: str) -> RateLimitOverrides:
    spec = ExchangeRegistry.default().get(venue)
    assert spec is not None
    return RateLimitOverrides(limits={
        (venue, limit.name): LimitOverride(limit=limit.limit * LIMIT_SCALE)
        for limit in spec.rate_limits})


class Pair:
    """The PAPER and the LIVE engine of one row, on one store and one market clock."""

    def __init__(self, row: Row, server: SimulatorServer, factory: ExchangeClientFactory,
                 store: SqlEngineStore, clock: ManualClock) -> None:
        self.row, self._server, self._factory = row, server, factory
        self._store, self._clock = store, clock
        self.engines: dict[TradingMode, Engine] = {}
        self.clients: list[ExchangeClient] = []

    async def open(self) -> None:
        target = ConnectionTarget(self.row.venue, self.row.api_type)
        credentials = ApiCredentials(
            KEY, kraken_secret() if self.row.venue == "kraken" else SECRET, PASSPHRASE)
        for mode in (TradingMode.PAPER, TradingMode.LIVE):
            market = await self._factory.client(target, None, lane=Lane.POLL)
            keyed = await self._factory.client(
                target, credentials, lane=Lane.ORDER if mode is TradingMode.LIVE else Lane.POLL)
            self.clients += [market, keyed]
            live = mode is TradingMode.LIVE
            resources = engine_resources(market, keyed if live else None, self.row.modes,
                                         None if live else keyed, now_ms=self._clock.now_ms)
            config = self.row.config(mode)
            engine_id = f"{mode.value}{ROW_INDEX[self.row.name]:04d}"  # in client order ids
            record = EngineRecord(mode.value, engine_id, config, DesiredState.RUNNING)
            await self._store.create_engine(record)
            validated = validate_config(config, StrategyRegistry.of(SMA_CROSS, GRID))
            engine = assemble_engine(record, validated, resources, self._store, self._clock,
                                     lambda _status: None)
            await engine.prepare()
            await engine.reconcile()
            self.engines[mode] = engine

    async def cycle(self) -> None:
        for engine in self.engines.values():  # the same market time for both
            assert await engine.run_cycle()

    async def fills(self, mode: TradingMode) -> int:
        return len(await self._store.list_fills(mode.value))

    def equity(self, mode: TradingMode) -> Decimal:
        status = self.engines[mode].status
        return CAPITAL + status.realized_pnl + status.unrealized_pnl

    def venue_equity(self) -> Decimal:
        """The LIVE account as the simulator values it (its own model, not the daemon's)."""
        sim = self._server.sim
        account = sim.accounts.get(KEY)
        assert account is not None
        if self.row.api_type is ApiType.PERPETUAL_FUTURES:
            [balance] = [b for b in derivatives.balances(account, sim.market) if b.asset == "USDT"]
            return balance.wallet + balance.unrealized_pnl
        base = self.row.symbol.split("/")[0]
        price = {"USDT": Decimal(1)}
        held = Decimal(0)
        if self.row.api_type is ApiType.OPTIONS:  # the contracts at the model's price
            held = sum((p.qty * sim.options.value(p.contract)[0] for p in
                        option_trading.book_of(account).open_positions()), Decimal(0))
        else:
            price[base] = sim.market.price(self.row.symbol)
        return held + sum(((h.total - h.debt) * price.get(asset, Decimal(0))
                           for wallet in account.wallets.values()
                           for asset, h in wallet.items()), Decimal(0))


async def run_row(row: Row, cycles: int) -> dict[str, Any]:
    started = time.monotonic()
    config = SimulatorConfig(seed=SEED, markets=MARKETS, accounts=(account_spec(row),),
                             limits=RateLimitConfig(scale=LIMIT_SCALE))
    with tempfile.TemporaryDirectory(prefix="ctsd-parity-") as root:
        database = await Database.open(Path(root))
        try:
            async with SimulatorServer(config) as server, RateLimiter() as limiter:
                settings = {row.venue: ExchangeSettings.at_simulator(server.base_url, row.venue)}
                async with ExchangeClientFactory(limiter, exchanges=settings,
                                                 overrides=overrides(row.venue),
                                                 timeout_s=10.0) as factory:
                    clock = ManualClock(server.sim.clock.now_ms() // 60_000 * 60_000 + 30_000)
                    server.sim.market.clock = clock  # the market moves only when the bench says
                    if row.api_type is ApiType.OPTIONS:
                        row = option_row(row, server, clock, cycles)
                    pair = Pair(row, server, factory, SqlEngineStore(database), clock)
                    try:
                        await pair.open()
                        for n in range(cycles):
                            clock.advance(CANDLE_S)
                            await pair.cycle()
                            if (n + 1) % 100 == 0:
                                log(f"{row.name}: {n + 1} cycles")
                        return await summarize(pair, cycles, time.monotonic() - started)
                    finally:
                        for client in pair.clients:
                            await client.close()
        finally:
            await database.close()


async def summarize(pair: Pair, cycles: int, seconds: float) -> dict[str, Any]:
    paper, live = TradingMode.PAPER, TradingMode.LIVE
    paper_equity, live_equity = pair.equity(paper), pair.equity(live)
    venue_equity = pair.venue_equity()
    statuses = {m: pair.engines[m].status for m in (paper, live)}
    diff = abs(paper_equity - live_equity) / CAPITAL * 100
    fills = {m: await pair.fills(m) for m in (paper, live)}
    return {
        "row": pair.row.name, "venue": pair.row.venue, "symbol": pair.row.symbol,
        "leverage": pair.row.leverage, "cycles": cycles,
        "fills_paper": fills[paper], "fills_live": fills[live],
        "equity_paper": float(round(paper_equity, 4)), "equity_live": float(round(live_equity, 4)),
        "equity_diff_pct": float(round(diff, 4)),
        "live_vs_venue_pct": float(round(abs(live_equity - venue_equity) / CAPITAL * 100, 4)),
        "fees_paper": float(statuses[paper].fees), "fees_live": float(statuses[live].fees),
        "funding_paper": float(statuses[paper].funding_pnl),
        "funding_live": float(statuses[live].funding_pnl),
        "interest_paper": float(statuses[paper].interest_pnl),
        "interest_live": float(statuses[live].interest_pnl),
        "liquidations_paper": statuses[paper].liquidations,
        "liquidations_live": statuses[live].liquidations,
        "placed_paper": statuses[paper].orders_placed,
        "placed_live": statuses[live].orders_placed,
        "rejected_paper": statuses[paper].orders_rejected,
        "rejected_live": statuses[live].orders_rejected,
        "same_fills": fills[paper] == fills[live],
        "meets_target": fills[paper] == fills[live] and diff <= TARGET_EQUITY_DIFF_PCT,
        "seconds": round(seconds, 1),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = [r for r in ROWS if r.name in args.rows.split(",")]
    results = []
    for row in wanted:
        log(f"{row.name}: {args.cycles} cycles on {row.venue} {row.symbol}")
        result = await run_row(row, args.cycles)
        log(json.dumps(result))
        results.append(result)
    return {"bench": "parity", "cycles": args.cycles, "seed": SEED,
            "target_equity_diff_pct": TARGET_EQUITY_DIFF_PCT, "rows": results,
            "meets_target": all(r["meets_target"] for r in results)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--rows", default=DEFAULT_ROWS,
                        help=f"of {', '.join(r.name for r in ROWS)}")
    result = asyncio.run(run(parser.parse_args(argv)))
    print(json.dumps(result))
    return 0 if result["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
