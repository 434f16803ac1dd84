"""`ctsd sim`: run the exchange simulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from ctsd.sim.ratelimit import RateLimitConfig
from ctsd.sim.server import SimulatorServer, is_loopback
from ctsd.sim.state import SimulatorConfig, load_accounts_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctsd sim",
        description="Serve simulated Binance, Bybit, OKX and Kraken REST and WebSocket APIs on "
                    "loopback.",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port (0: pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="permit a non-loopback --host (the simulator has no auth of its own)")
    parser.add_argument("--seed", type=int, default=1, help="price-path seed (default 1)")
    parser.add_argument("--markets", type=int, default=50, help="number of pairs (default 50)")
    parser.add_argument("--limit-scale", type=float, default=1.0,
                        help="multiply every rate limit by this factor (default 1)")
    parser.add_argument("--window-scale", type=float, default=1.0,
                        help="multiply every rate-limit window and ban by this factor (default 1)")
    parser.add_argument("--accounts", type=Path, help="JSON file of accounts to provision")
    return parser


async def _serve(server: SimulatorServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"ctsd sim listening on {server.base_url} "
              f"(venues: {', '.join(server.registry.names())})", flush=True)
        await stop.wait()


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not is_loopback(args.host) and not args.allow_remote:
        print(f"ctsd sim: refusing non-loopback host {args.host} without --allow-remote",
              file=sys.stderr)
        return 2
    if args.markets < 1 or args.limit_scale <= 0 or args.window_scale <= 0:
        print("ctsd sim: --markets, --limit-scale and --window-scale must be positive",
              file=sys.stderr)
        return 2
    try:
        accounts = load_accounts_file(args.accounts) if args.accounts else ()
    except (OSError, ValueError, KeyError) as exc:
        print(f"ctsd sim: cannot load accounts from {args.accounts}: {exc!r}", file=sys.stderr)
        return 2
    config = SimulatorConfig(
        seed=args.seed, markets=args.markets, accounts=accounts,
        limits=RateLimitConfig(scale=args.limit_scale, window_scale=args.window_scale),
    )
    server = SimulatorServer(config, host=args.host, port=args.port,
                             allow_remote=args.allow_remote)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(server))
    return 0
