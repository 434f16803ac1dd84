"""`ctsd`: run the daemon (default), rotate the master key, or run the simulator.

Heavy modules are imported inside each command so that `ctsd --help` and the
daemon's start stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ctsd import __version__
from ctsd.errors import ConfigurationError

if TYPE_CHECKING:
    from ctsd.config import DaemonConfig


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="TOML file with [daemon], [tls] and [auth] tables"
    )
    parser.add_argument(
        "--state-dir", type=Path, help="default: $STATE_DIRECTORY or ~/.local/state/ctsd"
    )
    parser.add_argument(
        "--master-key-file",
        type=Path,
        help="master key (32 bytes raw, hex or base64); default: $CREDENTIALS_DIRECTORY/"
        "master-key, else <state-dir>/master-key, generated on first start",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctsd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"ctsd {__version__}")
    _common(parser)
    parser.add_argument(
        "--listen",
        help="unix:PATH (default: $RUNTIME_DIRECTORY/ctsd.sock, $XDG_RUNTIME_DIR/ctsd/ctsd.sock "
        "or <state-dir>/ctsd.sock) or tcp://HOST:PORT (beyond loopback only with TLS and auth)",
    )
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-format", choices=("logfmt", "json"))
    parser.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics over HTTP here"
    )
    parser.add_argument("--metrics-public", action="store_true", default=None,
                        help="allow --metrics-listen beyond loopback (it has no authentication)")
    tls = parser.add_argument_group(
        "transport security",
        "default: systemd credentials tls-cert, tls-key, tls-client-ca, auth-token when loaded",
    )
    tls.add_argument("--tls-cert-file", type=Path, help="PEM certificate chain for TCP")
    tls.add_argument("--tls-key-file", type=Path, help="PEM private key for TCP")
    tls.add_argument(
        "--tls-client-ca-file", type=Path, help="PEM CA; clients must present a certificate from it"
    )
    tls.add_argument("--auth-token-file", type=Path, help="file holding the bearer token")
    exchanges = parser.add_argument_group(
        "exchange endpoints", "default: the exchanges' own hosts; [exchanges.<id>] in the file"
    )
    exchanges.add_argument(
        "--sim-endpoint", metavar="URL", help="send every exchange's requests to this simulator"
    )
    exchanges.add_argument(
        "--exchange-endpoint",
        dest="exchange_endpoint_flags",
        action="append",
        metavar="ID=URL",
        help="send one exchange's requests to URL (repeatable), e.g. binance=http://127.0.0.1:9000",
    )
    sub = parser.add_subparsers(dest="command")
    rotate = sub.add_parser("rotate-key", help="re-seal every secret under a new master key")
    _common(rotate)
    rotate.add_argument(
        "--new-key-file",
        type=Path,
        help="where to write the new key when the current one is not the managed state-dir key",
    )
    migrate = sub.add_parser(
        "migrate", help="upgrade the database's schema to this ctsd's (a shared PostgreSQL "
        "database: after stopping the daemons of the older version)")
    _common(migrate)
    sub.add_parser("sim", help="run the exchange simulator (see `ctsd sim --help`)", add_help=False)
    return parser


def _load(args: argparse.Namespace) -> DaemonConfig:
    from ctsd.config import load_config

    return load_config(
        args.config,
        {
            "state_dir": args.state_dir,
            "master_key_file": args.master_key_file,
            "listen": getattr(args, "listen", None),
            "log_level": getattr(args, "log_level", None),
            "log_format": getattr(args, "log_format", None),
            "metrics_listen": getattr(args, "metrics_listen", None),
            "metrics_public": getattr(args, "metrics_public", None),
            "tls_cert_file": getattr(args, "tls_cert_file", None),
            "tls_key_file": getattr(args, "tls_key_file", None),
            "tls_client_ca_file": getattr(args, "tls_client_ca_file", None),
            "auth_token_file": getattr(args, "auth_token_file", None),
            "sim_endpoint": getattr(args, "sim_endpoint", None),
            "exchange_endpoint_flags": getattr(args, "exchange_endpoint_flags", None),
        },
    )


SWITCH_INTERVAL_S = 0.0005
"""How long the event loop's thread may keep the GIL while another thread waits for it
(Python's default: 5 ms). The store's writer thread retakes the GIL after every SQLite
statement; while the loop is busy (a burst of market events waking engines) each retake
waited up to the whole interval, so an order's PENDING write — a few statements, each
under 0.1 ms — took tens of milliseconds. 0.5 ms bounds that wait; the cost is a
thread switch at most every 0.5 ms, and only while two threads want the GIL."""


def _serve(args: argparse.Namespace) -> int:
    # No collections while the daemon imports and builds itself (a hundred young ones, some
    # older, on objects that nearly all live as long as the process): once serving,
    # `settle_garbage_collector` collects once, freezes the survivors and turns it back on.
    gc.disable()
    from ctsd.daemon import run_daemon
    from ctsd.logs import configure

    config = _load(args)
    configure(config.log_level, config.log_format, ccxt_debug=config.log_ccxt_debug)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    asyncio.run(run_daemon(config, lambda: _load(args)))
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from ctsd.logs import configure
    from ctsd.wiring.rotate_key import run_rotation

    config = _load(args)
    configure(config.log_level, config.log_format)
    key_id, count = asyncio.run(run_rotation(config, args.new_key_file))
    print(f"re-sealed {count} secrets under master key {key_id}")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from ctsd.logs import configure
    from ctsd.wiring.migrate import run_migration

    config = _load(args)
    configure(config.log_level, config.log_format)
    print(asyncio.run(run_migration(config)))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sim"]:
        from ctsd.sim.cli import main as sim_main

        return sim_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        command = {"rotate-key": _rotate, "migrate": _migrate}.get(args.command, _serve)
        return command(args)
    except ConfigurationError as exc:
        print(f"ctsd: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: systemd does not restart-loop on a configuration error
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
