"""The simulator's state object: one per server, passed to every venue.

No module-level state anywhere in `ctsd.sim`: the market, the accounts, the
faults, the counters and each venue's own limiter state hang off a `Simulator`,
so tests run many simulators side by side. The methods here are the admin API
in Python; `ctsd.sim.app` exposes the same operations as `/admin/...` JSON.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ctsd.sim import (
    events,
    funding,
    lending,
    liquidation,
    margin_liquidation,
    matching,
    option_trading,
)
from ctsd.sim.accounts import (
    Account,
    AccountSpec,
    AccountStore,
    FeeSchedule,
    Order,
)
from ctsd.sim.clock import Clock, SystemClock
from ctsd.sim.faults import FaultInjector, FaultSpec
from ctsd.sim.funding import FundingSchedule
from ctsd.sim.market import Market, MarketCatalog
from ctsd.sim.options import OptionChain
from ctsd.sim.ratelimit import RateLimitConfig, ViolationLog
from ctsd.sim.ws.config import WsConfig
from ctsd.sim.ws.tokens import StreamTokens


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 1
    markets: int = 50
    """Number of pairs; each is listed as spot and as a linear perpetual."""
    limits: RateLimitConfig = field(default_factory=RateLimitConfig)
    accounts: tuple[AccountSpec, ...] = ()
    hang_max_s: float = 120.0
    """Upper bound on a HANG fault, so a forgotten fault cannot wedge a test run."""
    ws: WsConfig = field(default_factory=WsConfig)
    fill_split: int = 1
    """Orders fill in up to this many trades (`ctsd.sim.matching`); 1: one trade each."""


def load_accounts_file(path: Path) -> tuple[AccountSpec, ...]:
    """`{"accounts": [{api_key, secret, passphrase?, balances, permissions, ...}]}`."""
    raw = json.loads(path.read_text())
    entries = raw["accounts"] if isinstance(raw, dict) else raw
    return tuple(AccountSpec.from_json(entry) for entry in entries)


class Simulator:
    """Market, accounts, faults and counters of one simulated exchange world."""

    def __init__(self, config: SimulatorConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.clock: Clock = clock or SystemClock()
        self.market = Market(MarketCatalog(self.config.seed, self.config.markets), self.clock)
        self.funding = FundingSchedule(self.market, self.config.seed)
        self.options = OptionChain(self.market, self.config.seed)
        """Listed option contracts and their marks (`ctsd.sim.options`)."""
        self.events = events.EventBus(lambda: self.market.now_ms())
        """Account changes as they happen, for the private WebSocket streams."""
        self.accounts = AccountStore(self.events)
        for spec in self.config.accounts:
            self.accounts.provision(spec)
        self.faults = FaultInjector()
        self.stats = ViolationLog()
        self.stream_tokens = StreamTokens(self.clock, self.config.ws)
        """listenKeys and WebSocket tokens the REST APIs issue and the streams check."""
        self.closing = asyncio.Event()
        """Set on shutdown: cuts HANG faults short."""
        self._reset_hooks: list[Callable[[], None]] = []
        self._fault_hooks: list[Callable[[], None]] = []
        self.fill_split = self.config.fill_split
        """Parts new orders fill in (admin `/admin/fills`), so a client meets orders
        filled in several trades, each with its own fee, on REST and on the streams."""
        self.unserved: Counter[str] = Counter()
        """`venue METHOD path` → requests for paths the simulator does not serve."""

    @property
    def limits(self) -> RateLimitConfig:
        return self.config.limits

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Venues register their own state (limiters, bans) to be cleared by `reset`."""
        self._reset_hooks.append(hook)

    def on_clear_faults(self, hook: Callable[[], None]) -> None:
        """Fault state kept outside `faults` (WebSocket stalls, periodic drops) ends here."""
        self._fault_hooks.append(hook)

    # --- admin API -------------------------------------------------------------

    def provision(self, spec: AccountSpec) -> Account:
        return self.accounts.provision(spec)

    def remove_account(self, api_key: str) -> bool:
        return self.accounts.remove(api_key)

    def add_fault(self, spec: FaultSpec) -> None:
        self.faults.add(spec)

    def clear_faults(self) -> None:
        self.faults.clear()
        for hook in self._fault_hooks:
            hook()

    def set_price(self, symbol: str, price: Decimal) -> None:
        """Move `symbol`'s pair to `price` now; resting orders it crosses fill."""
        self.market.set_price(symbol, price)
        self._sync_all()

    def advance(self, seconds: float) -> None:
        """Move every price path forward (the server clock is untouched).

        Funding times the jump crosses are settled now (`ctsd.sim.funding`): those
        the clock passed before it first, at their own stamps.
        """
        self.funding.observe()
        self._sync_all()
        self.market.advance(seconds)
        self.funding.observe_jump()
        self._sync_all()

    def set_funding_rate(self, symbol: str, rate: Decimal, at_index: int | None = None) -> int:
        """Fix the funding rate `symbol`'s pair pays at its next funding time (or
        funding index `at_index`); returns the index."""
        inst = self.market.catalog.get(symbol)
        if inst is None:
            raise KeyError(symbol)
        return self.funding.set_rate(inst.pair, rate, at_index)

    def reset(self) -> None:
        """Back to the start: path, balances, orders, faults, counters, limiters."""
        self.market.reset()
        self.funding.reset()
        self.options = OptionChain(self.market, self.config.seed)
        self.accounts.reset()
        self.faults.clear()
        self.stats.reset()
        self.stream_tokens.reset()
        self.fill_split = self.config.fill_split
        for hook in (*self._reset_hooks, *self._fault_hooks):
            hook()

    def snapshot(self) -> dict[str, Any]:
        """Counters for `/admin/stats`: requests served and limit violations per venue,
        and the unserved paths clients asked for."""
        return {**self.stats.snapshot(), "unserved": dict(self.unserved)}

    def note_unserved(self, venue: str, method: str, path: str) -> bool:
        """Count a request for a path the simulator does not serve; True the first time."""
        key = f"{venue} {method} {path}"
        self.unserved[key] += 1
        return self.unserved[key] == 1

    # --- used by venues --------------------------------------------------------

    def touch(self, account: Account) -> None:
        """Bring an authenticated account up to date: pay funding and charge interest
        that fell due, fill orders the price reached, liquidate the positions and margin
        wallets the price took under."""
        funding.settle(account, self.market, self.funding)
        lending.accrue(account, self.market)
        option_trading.sync(account, self.market, self.options)
        were_open = account.open_orders()
        if were_open:
            fills_before = len(account.fills)
            matching.sync(account, self.market, self.accounts.next_trade_id)
            events.publish_synced(self.events, account, were_open, fills_before, self.market)
        fills_before = len(account.fills)
        liquidation.check(account, self.market, self.accounts.next_order_id,
                          self.accounts.next_trade_id)
        margin_liquidation.check(account, self.market, self.accounts.next_order_id,
                                 self.accounts.next_trade_id)
        events.publish_synced(self.events, account, [], fills_before, self.market,
                              events.UpdateReason.LIQUIDATION)

    def place_order(
        self, account: Account, request: matching.OrderRequest, fees: FeeSchedule,
    ) -> Order:
        order = matching.place(account, self.market, request, fees,
                               self.accounts.next_order_id(), self.accounts.next_trade_id,
                               self.fill_split)
        events.publish_placed(self.events, account, order, self.market)
        return order

    def cancel_order(self, account: Account, order: Order) -> Order:
        matching.cancel(account, self.market, order)
        events.publish_canceled(self.events, account, order, self.market)
        return order

    def _sync_all(self) -> None:
        for account in self.accounts:
            self.touch(account)
