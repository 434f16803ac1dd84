"""Loopback exchange simulator: Binance, Bybit, OKX and Kraken REST on 127.0.0.1.

Public surface:

- `SimulatorServer` (`ctsd.sim.server`): the app on a TCP port, an async context
  manager exposing `base_url` and the `sim` state object.
- `Simulator`, `SimulatorConfig` (`ctsd.sim.state`): the state and its Python
  admin API (provision, faults, set_price, advance, reset, snapshot).
- `point_at_simulator` (`ctsd.sim.ccxt_target`): a ccxt instance's URLs moved onto the
  simulator (through `ctsd.exchanges.ccxt_internals`; the simulator imports no ccxt).

Layout: `market` (catalog, price path), `accounts` + `matching` (balances,
orders), `ratelimit` (accounting primitives), `faults` (injection), `auth`
(signature helpers), `wire` (HTTP helpers), `venue` + `venues` (registry),
`app` + `server` (aiohttp), and one module per exchange (`binance`, …).
"""

from ctsd.sim.server import SimulatorServer
from ctsd.sim.state import Simulator, SimulatorConfig

__all__ = ["Simulator", "SimulatorConfig", "SimulatorServer"]
