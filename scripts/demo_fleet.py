"""`make demo-fleet`: three daemons on one PostgreSQL and one Redis, a failover, a drain.

Private PostgreSQL and Redis servers (tests/support/servers.py, Debian's packages
installed by `make servers`), the simulator, and three `ctsd` on one database with
the same master key and shared rate limits. Two LIVE grid engines start through the
first daemon, placed by load (one there, one on another member); it is SIGKILLed, and
`cts fleet` on a survivor shows its engine adopted (reconciled with the venue first)
within the lease TTL; then a survivor is drained and its engines move to the other. Everything is
removed at the end, whatever happens.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from demo import (  # noqa: E402
    BIN,
    SECRET,
    TRADING_KEY,
    Walkthrough,
    add,
    provision,
    sim_price,
    start_simulator,
    stop,
)

from tests.support import servers  # noqa: E402

TTL_S = 6


def start_daemon(root: Path, name: str, pg_url: str, redis_url: str, sim_url: str,
                 key: Path | None) -> tuple[subprocess.Popen[bytes], Path]:
    home = root / name
    state = home / "state"
    state.mkdir(parents=True, mode=0o700)
    if key is not None:  # one master key for the fleet: the secrets live in one database
        shutil.copy2(key, state / "master-key")
    config = home / "ctsd.toml"
    config.write_text(f'[store]\nurl = "{pg_url}"\n[fleet]\nredis_url = "{redis_url}"\n'
                      f'member = "{name}"\nengine_lease_ttl_s = {TTL_S}\n')
    sock = home / "ctsd.sock"
    print(f"$ ctsd --config {config} --state-dir {state} --listen unix:{sock} "
          f"--sim-endpoint {sim_url}", flush=True)
    proc = subprocess.Popen(
        [str(BIN / "ctsd"), "--config", str(config), "--state-dir", str(state),
         "--listen", f"unix:{sock}", "--sim-endpoint", sim_url],
        stderr=open(home / "ctsd.log", "wb"),  # noqa: SIM115 - lives as long as the daemon
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"demo: {name} did not start:\n" + (home / "ctsd.log").read_text())
        time.sleep(0.05)
    return proc, sock


def fleet_json(address: str) -> dict[str, object]:
    answer = subprocess.run([str(BIN / "cts"), "--addr", address, "fleet", "-o", "json"],
                            capture_output=True, text=True, timeout=30, check=False)
    return json.loads(answer.stdout) if answer.returncode == 0 else {}


def live_owners(address: str) -> list[str]:
    """The owner of each live engine lease, from one read of the fleet."""
    leases = fleet_json(address).get("leases", [])
    assert isinstance(leases, list)
    return [str(lease["owner"]) for lease in leases if lease.get("live")]


def moved(address: str, away_from: str, engines: int = 2) -> bool:
    """Every engine under a live lease of a member other than `away_from`."""
    owners = live_owners(address)
    return len(owners) == engines and not any(o.startswith(away_from) for o in owners)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="cts-fleet-", dir="/tmp"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with servers.postgres_url() as pg_url, servers.redis_url() as redis_url:
            print(f"# PostgreSQL at {pg_url.split('@')[-1]}, Redis at {redis_url}", flush=True)
            procs["ctsd.sim"], sim_url = start_simulator(root)
            provision(sim_url, TRADING_KEY, SECRET)
            socks: dict[str, Path] = {}
            for name in ("d1", "d2", "d3"):
                key = root / "d1" / "state" / "master-key" if name != "d1" else None
                procs[name], socks[name] = start_daemon(root, name, pg_url, redis_url,
                                                        sim_url, key)
            d1, d2, d3 = (Walkthrough(f"unix:{socks[n]}") for n in ("d1", "d2", "d3"))
            d1.say("Two connections through d1, tested, each with a LIVE grid started through d1: "
                   "placed by load, one on d1, one on the least-loaded other member")
            grid = ("--strategy", "grid", "--symbol", "BTC/USDT", "--param", "spacing_pct=0.5",
                    "--param", "levels=2", "--param", "amount=0.001",
                    "--param", f"reference_price={sim_price(sim_url)}", "--interval", "1s",
                    "--live", "--yes")  # fmt: skip
            for cid in ("grid-a", "grid-b"):
                add(d1, cid, "bybit", "spot", TRADING_KEY, SECRET)
                d1.run("connections", "test", cid)
                d1.run("engine", "start", cid, *grid)
            d2.say("Any member answers for the fleet: members, engines, leases (asked on d2)")
            time.sleep(3)  # a few cycles for the show
            d2.run("fleet")
            d2.run("engine", "list")
            d2.say("SIGKILL d1, the owner of grid-a")
            procs.pop("d1").send_signal(signal.SIGKILL)
            killed = time.monotonic()
            print("$ kill -KILL d1", flush=True)
            while not moved(f"unix:{socks['d2']}", "d1-"):
                if time.monotonic() - killed > 60:
                    raise SystemExit("demo: the engines were not adopted within 60 s")
                time.sleep(0.2)
            d2.say(f"Adopted by the survivors {time.monotonic() - killed:.1f} s after the kill "
                   f"(lease TTL {TTL_S} s), reconciled with the venue first")
            d2.run("fleet")
            d2.run("engine", "list")
            fleet = fleet_json(f"unix:{socks['d2']}")
            members = fleet.get("members", [])
            assert isinstance(members, list)
            busiest = max((m for m in members if m.get("alive")),
                          key=lambda m: len(m.get("engines", [])))
            d2.say(f"Drain {busiest['id']} for an upgrade: its engines move to the others")
            d2.run("fleet", "drain", str(busiest["id"]))
            drained = time.monotonic()
            while not moved(f"unix:{socks['d2']}", str(busiest["id"])):
                if time.monotonic() - drained > 60:
                    raise SystemExit("demo: the drain did not finish within 60 s")
                time.sleep(0.2)
            d3.run("fleet")
            d3.say("Stop the engines through d3 (wherever they run): their orders are cancelled")
            for cid in ("grid-a", "grid-b"):
                d3.run("engine", "stop", cid)
            for name in ("d2", "d3"):
                stop(name, procs.pop(name))
            stop("ctsd.sim", procs.pop("ctsd.sim"))
    finally:
        for name, proc in procs.items():
            stop(name, proc)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
