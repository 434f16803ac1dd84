"""ccxt (half a second, ~100 MB) is imported on first use, never on the daemon's start path."""

from __future__ import annotations

import subprocess
import sys

MODULES = ("ctsd.daemon", "ctsd.exchanges.factory", "ctsd.exchanges.client",
           "ctsd.exchanges.registry", "ctsd.ratelimit")


def test_importing_the_daemon_and_the_exchange_layer_does_not_import_ccxt() -> None:
    code = f"import {', '.join(MODULES)}, sys; assert 'ccxt' not in sys.modules, 'ccxt imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


OFF_LOOP = """
import asyncio, sys, threading
from ctsd.exchanges.model import ConnectionTarget
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import RateLimiter
from ctsd.sim.server import SimulatorServer
from tests.support.exchange_clients import make_factory

importers = {}

class Recorder:
    # a meta-path finder that only notes which thread imports ccxt's two roots
    def find_spec(self, name, path=None, target=None):
        if name in ("ccxt.async_support", "ccxt.pro"):
            importers[name] = threading.current_thread() is threading.main_thread()
        return None

sys.meta_path.insert(0, Recorder())

async def main():
    async with SimulatorServer() as server, RateLimiter() as limiter, make_factory(
            server, limiter) as factory:
        target = ConnectionTarget("kraken", ApiType.SPOT)
        client = await factory.client(target)
        await client.close()
        stream = await factory.market_stream(target)
        await stream.close()

asyncio.run(main())
assert importers == {"ccxt.async_support": False, "ccxt.pro": False}, importers
"""


def test_the_first_ccxt_import_runs_off_the_event_loop() -> None:
    """Importing ccxt takes seconds of CPU on a loaded machine: on the loop it froze every
    task, and a request in flight (the in-process simulator's too) timed out."""
    subprocess.run([sys.executable, "-c", OFF_LOOP], check=True, timeout=120)
