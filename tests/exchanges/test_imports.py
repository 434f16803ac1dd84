"""ccxt (half a second, ~100 MB) is imported on first use, never on the daemon's start path."""

from __future__ import annotations

import subprocess
import sys

MODULES = ("ctsd.daemon", "ctsd.exchanges.factory", "ctsd.exchanges.client",
           "ctsd.exchanges.registry", "ctsd.ratelimit")


def test_importing_the_daemon_and_the_exchange_layer_does_not_import_ccxt() -> None:
    code = f"import {', '.join(MODULES)}, sys; assert 'ccxt' not in sys.modules, 'ccxt imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
