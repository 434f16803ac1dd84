"""`make demo`: the daemon on a throwaway state dir, driven by the `cts` CLI.

Every step prints the command a user would type, then its real output. The
daemon and its state are removed at the end, whatever happens.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
SECRET = "demo-secret-never-printed-9c1f"


class Walkthrough:
    def __init__(self, address: str) -> None:
        self.env = {**os.environ, "CTS_ADDR": address}

    def say(self, text: str) -> None:
        print(f"\n\033[1m# {text}\033[0m", flush=True)

    def run(self, *args: str, stdin: str | None = None, expect: int = 0) -> str:
        shown = " ".join(shlex.quote(a) for a in args)
        if stdin is not None:
            shown = f"printf '%s\\n' \"$SECRET\" | {shown}"
        print(f"$ cts {shown}", flush=True)
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


def start_daemon(root: Path) -> subprocess.Popen[bytes]:
    sock = root / "ctsd.sock"
    print(f"$ ctsd --state-dir {root}/state --listen unix:{sock}", flush=True)
    proc = subprocess.Popen(
        [str(BIN / "ctsd"), "--state-dir", str(root / "state"), "--listen", f"unix:{sock}"],
        stderr=open(root / "ctsd.log", "wb"),  # noqa: SIM115 - lives as long as the daemon
    )
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


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="cts-demo-", dir="/tmp"))
    daemon: subprocess.Popen[bytes] | None = None
    try:
        daemon = start_daemon(root)
        cli = Walkthrough(f"unix:{root}/ctsd.sock")
        connections_walkthrough(cli)
        state = root / "state"
        leaked = [p.name for p in state.iterdir() if p.is_file() and SECRET.encode() in p.read_bytes()]
        print(f"\n# secret bytes found in state files: {leaked or 'none'}")
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            print(f"\n$ kill -TERM ctsd  → exit {daemon.wait(15)}")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
