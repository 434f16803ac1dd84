"""What a default daemon (one SQLite file, no fleet, no engine to resume) leaves unimported
until something asks for it: the one list `tests/test_start_path.py` and
`bench/startup_bench.py` check.

Every name here is a subsystem a start does not use before SERVING; each is imported
where it is first needed (the comment says where). A name covers its submodules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable

OFF_START_PATH: tuple[str, ...] = (
    "ccxt",  # about 1 s and 100 MB: the exchange layer, off the loop, on first use
    "prometheus_client",  # only with --metrics-listen (`ctsd.ops.metrics`)
    "psycopg", "psycopg_pool", "ctsd.store.database_pg",  # a PostgreSQL [store] url
    "redis", "ctsd.ratelimit.shared",  # [fleet] redis_url (`ctsd.wiring.fleet`)
    "ctsd.fleet.member", "ctsd.fleet.requests", "ctsd.fleet.statuses",  # a fleet member
    "ctsd.store.engine_requests", "ctsd.store.engine_statuses", "ctsd.store.audit",
    "ctsd.marketdata",  # the first stream asked for (`ctsd.wiring.market_hub`)
    "ctsd.wiring.engine_streams", "ctsd.wiring.engine_order_stream",
    "ctsd.engine.assembly", "ctsd.engine.engine", "ctsd.engine.supervisor",  # first engine
    "ctsd.engine.brokers", "ctsd.engine.market", "ctsd.engine.risk",
    "ctsd.engine.perp_session", "ctsd.engine.margin_session", "ctsd.engine.option_session",
    "ctsd.wiring.engine_margin", "ctsd.wiring.engine_options", "ctsd.wiring.engine_perpetual",
    "ctsd.exchanges.margin", "ctsd.exchanges.options", "ctsd.exchanges.perpetuals",
    "ctsd.connections.checks.tester", "ctsd.connections.checks.batch_tester",  # first test
    "ctsd.connections.checks.batch", "ctsd.connections.checks.service",
    "ctsd.wiring.check_probes", "ctsd.api.batch_codec",
    "platform",  # through uuid: 10 ms for a random id
)


def kept_off(modules: Iterable[str]) -> list[str]:
    """Which of `modules` (a process's `sys.modules`) the list says a start leaves alone."""
    return sorted(name for name in modules
                  if any(name == off or name.startswith(f"{off}.") for off in OFF_START_PATH))


def imported_by_daemon_modules() -> list[str]:
    """`kept_off` of a fresh interpreter that imported the daemon's entry modules."""
    code = "import json, sys, ctsd.cli, ctsd.daemon; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    return kept_off(json.loads(out.stdout))
