"""`make demo`: the simulator and the daemon on a throwaway state dir, driven by `cts`.

Every step prints the command a user would type, then its real output. The
exchange simulator (`python -m ctsd.sim`) stands in for Binance, Bybit, OKX
and Kraken; the daemon is pointed at it with `--sim-endpoint`. Both, and the
state, are removed at the end, whatever happens.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
SECRET = "ZGVtby1zZWNyZXQtbmV2ZXItcHJpbnRlZA=="  # base64, as Kraken's secrets are
PASSPHRASE = "demo-passphrase-never-printed"
TRADING_KEY = "demoTradingKey0042wxyz"


class Walkthrough:
    def __init__(self, address: str) -> None:
        self.env = {**os.environ, "CTS_ADDR": address}

    def say(self, text: str) -> None:
        print(f"\n\033[1m# {text}\033[0m", flush=True)

    def run(self, *args: str, stdin: str | None = None, expect: int = 0) -> str:
        shown = "cts " + " ".join(shlex.quote(a) for a in args)
        if stdin is not None:
            shown = f"printf '%s\\n' \"$SECRET\" | {shown}"
        print(f"$ {shown}", flush=True)
        proc = subprocess.run(
            [str(BIN / "cts"), *args], input=stdin, text=True, capture_output=True,
            env=self.env, timeout=60, check=False,
        )
        output = proc.stdout + proc.stderr
        print(output, end="" if output.endswith("\n") else "\n", flush=True)
        if SECRET in output:
            raise SystemExit("demo: the secret appeared in CLI output")
        if proc.returncode != expect:
            raise SystemExit(f"demo: expected exit {expect}, got {proc.returncode}")
        return proc.stdout


def start_simulator(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m ctsd.sim --port 0`; the URL comes from its first line."""
    print("$ python -m ctsd.sim --port 0", flush=True)
    out = root / "sim.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctsd.sim", "--port", "0"],
        stdout=open(out, "wb"),  # noqa: SIM115 - lives as long as the simulator
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        found = re.search(r"listening on (http://\S+)", out.read_text(errors="replace"))
        if found:
            print(out.read_text().strip(), flush=True)
            return proc, found.group(1)
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("demo: the simulator did not start:\n" + out.read_text())
        time.sleep(0.05)


def provision(sim_url: str, api_key: str, secret: str, **extra: object) -> None:
    """An account on the simulated exchanges, through its admin API."""
    account = {
        "api_key": api_key, "secret": secret, "passphrase": PASSPHRASE,
        "balances": {"spot": {"USDT": "25000", "BTC": "0.75", "ETH": "4"},
                     "derivatives": {"USDT": "10000"}},
        "permissions": ["read", "trade"], **extra,
    }  # fmt: skip
    shown = {**account, "secret": "$SECRET", "passphrase": "$PASSPHRASE"}
    print(f"$ curl -X POST {sim_url}/admin/accounts -d '{json.dumps(shown)}'", flush=True)
    request = urllib.request.Request(
        f"{sim_url}/admin/accounts", data=json.dumps(account).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(answer.read().decode(), flush=True)


def start_daemon(root: Path, sim_url: str) -> subprocess.Popen[bytes]:
    sock = root / "ctsd.sock"
    print(
        f"$ ctsd --state-dir {root}/state --listen unix:{sock} --sim-endpoint {sim_url}",
        flush=True,
    )
    proc = subprocess.Popen(
        [str(BIN / "ctsd"), "--state-dir", str(root / "state"), "--listen", f"unix:{sock}",
         "--sim-endpoint", sim_url],
        stderr=open(root / "ctsd.log", "wb"),  # noqa: SIM115 - lives as long as the daemon
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("demo: ctsd did not start:\n" + (root / "ctsd.log").read_text())
        time.sleep(0.05)
    return proc


def connections_walkthrough(cli: Walkthrough) -> None:
    cli.say("Supported exchanges, their api types and default rate limits")
    cli.run("exchanges")
    cli.say("Add a connection; the secret comes from stdin, never from the command line")
    cli.run("connections", "add", "--id", "main", "--exchange", "binance", "--api-type", "spot",
            "--name", "Main Binance", "--api-key", "demoApiKey0001abcd", "--secret-stdin",
            stdin=SECRET)
    cli.run("connections", "add", "--id", "perp", "--exchange", "bybit",
            "--api-type", "perpetual-futures", "--name", "Bybit perps", "--disabled",
            "--api-key", "demoApiKey0002wxyz", "--secret-stdin", stdin=SECRET)
    cli.say("Mistakes are refused with the field named (exit 1)")
    cli.run("connections", "add", "--exchange", "okx", "--api-type", "spot", "--name", "OKX",
            "--api-key", "demoApiKey0003", "--secret-stdin", stdin=SECRET, expect=1)
    cli.say("List: a table for people, JSON for scripts")
    cli.run("connections", "list")
    cli.run("connections", "list", "--exchange", "bybit", "-o", "json")
    cli.say("Edit only what changes (an UpdateConnection field mask)")
    cli.run("connections", "edit", "main", "--name", "Main Binance (spot)", "--testnet")
    cli.say("Enable, inspect, delete")
    cli.run("connections", "enable", "perp")
    cli.run("connections", "get", "perp")
    cli.run("connections", "rm", "perp")
    cli.run("connections", "list")


def add(cli: Walkthrough, cid: str, exchange: str, api_type: str, key: str, secret: str) -> None:
    stdin = f"{secret}\n{PASSPHRASE}" if exchange == "okx" else secret
    cli.run("connections", "add", "--id", cid, "--exchange", exchange, "--api-type", api_type,
            "--name", cid, "--api-key", key, "--secret-stdin", "-o", "json",
            stdin=stdin)  # fmt: skip


def testing_walkthrough(cli: Walkthrough) -> None:
    cli.say("One connection per exchange on the simulator, and one with a mistyped secret")
    add(cli, "binance-spot", "binance", "spot", TRADING_KEY, SECRET)
    add(cli, "bybit-perp", "bybit", "perpetual-futures", TRADING_KEY, SECRET)
    add(cli, "okx-spot", "okx", "spot", TRADING_KEY, SECRET)
    add(cli, "kraken-spot", "kraken", "spot", TRADING_KEY, SECRET)
    add(cli, "binance-typo", "binance", "spot", TRADING_KEY, "X" + SECRET[1:])
    cli.say("Test one: every step logs as it runs, then the result (exit 0: it works)")
    cli.run("connections", "test", "binance-spot")
    cli.say("The mistyped secret: the class, the exchange's words and the remedy (exit 1)")
    cli.run("connections", "test", "binance-typo", expect=1)
    cli.say("Test them all through the shared rate limits: a table and a summary (exit 1)")
    cli.run("connections", "test", "--all", expect=1)
    cli.say("Health: per connection, then the daemon, then the start-up checks")
    cli.run("health")
    cli.run("status")
    cli.run("verify")


def sim_price(sim_url: str, symbol: str = "BTCUSDT") -> str:
    """The simulator's current price, to centre the demo's grid on."""
    url = f"{sim_url}/binance/api/v3/ticker/24hr?symbol={symbol}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(json.load(answer)["lastPrice"])


def engine_walkthrough(cli: Walkthrough, sim_url: str) -> None:
    cli.say("A dry cycle first: what the grid strategy would do now; nothing is placed")
    grid = ("--strategy", "grid", "--symbol", "BTC/USDT", "--param", "spacing_pct=0.5",
            "--param", "levels=2", "--param", "amount=0.001",
            "--param", f"reference_price={sim_price(sim_url)}", "--interval", "1s")  # fmt: skip
    cli.run("engine", "test", "binance-spot", *grid)
    cli.say("Start paper engines (PAPER is the default; LIVE needs --live)")
    cli.run("engine", "start", "binance-spot", *grid)
    cli.run("engine", "start", "main", "--strategy", "sma_cross", "--symbol", "BTC/USDT",
            "--param", "fast=2", "--param", "slow=3", "--param", "quote_amount=100",
            "--interval", "1s")  # fmt: skip
    cli.say("Watch them for a few seconds (JSON lines when not on a terminal)")
    cli.run("engine", "watch", "--duration", "4")
    cli.run("engine", "list")
    cli.run("engine", "orders", "binance-spot")
    cli.run("engine", "status", "binance-spot")
    cli.say("Stop them: the grid's resting paper orders are cancelled")
    cli.run("engine", "stop", "binance-spot")
    cli.run("engine", "stop", "main")


def stop(name: str, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGTERM)
        print(f"$ kill -TERM {name}  → exit {proc.wait(15)}", flush=True)


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="cts-demo-", dir="/tmp"))
    daemon: subprocess.Popen[bytes] | None = None
    simulator: subprocess.Popen[bytes] | None = None
    try:
        simulator, sim_url = start_simulator(root)
        provision(sim_url, "demoApiKey0001abcd", SECRET)
        provision(sim_url, TRADING_KEY, SECRET, permissions=["read", "trade", "withdraw"])
        daemon = start_daemon(root, sim_url)
        cli = Walkthrough(f"unix:{root}/ctsd.sock")
        connections_walkthrough(cli)
        testing_walkthrough(cli)
        engine_walkthrough(cli, sim_url)
        state = root / "state"
        files = [p for p in state.iterdir() if p.is_file()] + [root / "ctsd.log"]
        leaked = [p.name for p in files if SECRET.encode() in p.read_bytes()]
        print(f"\n# secret bytes found in state files and the daemon log: {leaked or 'none'}")
    finally:
        print()
        stop("ctsd", daemon)
        stop("ctsd.sim", simulator)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
