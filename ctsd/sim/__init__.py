"""Loopback exchange simulator: Binance, Bybit, OKX and Kraken REST and WebSockets on 127.0.0.1.

Public surface:

- `SimulatorServer` (`ctsd.sim.server`): the app on a TCP port, an async context
  manager exposing `base_url`, the `sim` state object and `streams` (the WebSockets).
- `Simulator`, `SimulatorConfig` (`ctsd.sim.state`): the state and its Python
  admin API (provision, faults, set_price, advance, reset, snapshot).
- `point_at_simulator` (`ctsd.sim.ccxt_target`): a ccxt instance's URLs moved onto the
  simulator (through `ctsd.exchanges.ccxt_internals`; the simulator imports no ccxt).

Layout: `market` (catalog, price path), `accounts` + `matching` (balances,
orders), `positions` + `derivatives` + `tiers` + `funding` + `liquidation`
(perpetuals), `ratelimit` (accounting primitives), `faults` (injection), `auth`
(signature helpers), `wire` (HTTP helpers), `venue` + `venues` (registry),
`app` + `server` (aiohttp), and one module per exchange (`binance`, …; with
`<name>_wire` for shapes and `<name>_deriv` for perpetuals endpoints);
`events` (account changes as they happen) and `ws` (the WebSocket APIs).
"""

from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator, SimulatorConfig

__all__ = ["Simulator", "SimulatorConfig", "SimulatorServer"]
