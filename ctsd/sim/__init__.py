"""Loopback exchange simulator: Binance, Bybit, OKX and Kraken REST and WebSockets on 127.0.0.1.

Public surface:

- `SimulatorServer` (`ctsd.sim.server`): the app on a TCP port, an async context
  manager exposing `base_url`, the `sim` state object and `streams` (the WebSockets).
- `Simulator`, `SimulatorConfig` (`ctsd.sim.state`): the state and its Python
  admin API (provision, faults, set_price, advance, reset, snapshot).
- `point_at_simulator` (`ctsd.sim.ccxt_target`): a ccxt instance's URLs moved onto the
  simulator (through `ctsd.exchanges.ccxt_internals`; the simulator imports no ccxt).

Layout: `market` (catalog, price path), `accounts` + `matching` (balances,
orders), `book` + `tape` (order books, trade tape), `positions` + `derivatives` +
`tiers` + `funding` + `liquidation` + `slots` (perpetuals), `loans` + `lending` +
`margin_liquidation` (spot margin: borrowing, interest, forced liquidation),
`options` + `option_trading` (European options: chain, marks, settlement),
`ratelimit` (accounting primitives), `faults` (injection), `auth` (signature
helpers), `wire` (HTTP helpers), `unserved` (each venue's answer to an unknown
path), `venue` + `venues` (registry), `app` + `server` (aiohttp), and per
exchange one module (`binance`, …) with per-concern modules beside it:
`<name>_wire` (shapes), `<name>_market`, `<name>_account`, `<name>_orders`,
`<name>_deriv` (perpetuals), `<name>_margin` (spot margin) and `<name>_options`;
`events` (account changes as they happen) and `ws` (the WebSocket APIs).
"""

from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator, SimulatorConfig

__all__ = ["Simulator", "SimulatorConfig", "SimulatorServer"]
