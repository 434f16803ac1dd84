"""`cts`: the parser, the dispatch, and the exit codes (0 ok, 1 RPC error, 2 usage).

Global options (`--addr`, `-o`, `--timeout`, and the TLS and token options of
`cts.cli.transport`) are accepted before or after the command, as in kubectl:
the top-level parser holds their defaults and every subcommand re-declares
them with SUPPRESS defaults, so a value given late overrides and an absent one
leaves the default alone.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import grpc

from cts.address import default_address
from cts.cli import connections, engines, exchanges, fleet, health
from cts.cli.client import DEFAULT_TIMEOUT, Context, open_channel
from cts.cli.errors import EXIT_RPC_ERROR, EXIT_USAGE, UsageError, describe_rpc_error
from cts.cli.output import FORMATS, TABLE
from cts.cli.secrets_input import Console
from cts.cli.transport import add_security_options, load_security
from cts.v1 import connection_service_pb2_grpc, health_service_pb2_grpc

EPILOG = """\
examples:
  cts exchanges
  cts connections list --exchange binance -o json
  printf '%s\\n' "$SECRET" | cts connections add --exchange binance --api-type spot \\
      --name "Main" --api-key KEY --secret-stdin
  cts connections edit main --testnet --prompt-secret
  cts connections rm main
  cts connections test main
  cts connections test --all
  cts status; cts health; cts verify
  cts --addr tcp://ctsd.example:7443 --tls-ca ca.crt --token-file ~/.config/cts/token status
  cts engine start main --strategy sma_cross --symbol BTC/USDT --param fast=5 \\
      --param slow=20 --param quote_amount=100 --interval 5s
  cts engine watch --duration 10

exit codes: 0 ok, 1 the daemon refused or could not be reached (or a test or check
failed), 2 usage error.
"""


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


def _add_global_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """Declare the global options; below the top level they default to SUPPRESS."""

    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    parser.add_argument(
        "--addr",
        default=default(None),
        metavar="ADDR",
        help="daemon address, unix:PATH or tcp://HOST:PORT "
        "(default: $CTS_ADDR, else the daemon's default socket)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=default(TABLE),
        help="table for people (default), json for scripts",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=default(DEFAULT_TIMEOUT),
        metavar="SECONDS",
        help=f"deadline of each RPC (default: {DEFAULT_TIMEOUT:g})",
    )
    add_security_options(parser, top_level=top_level)


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree; each command module adds its own subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common, top_level=False)
    parser = argparse.ArgumentParser(
        prog="cts",
        description="Command line client of ctsd, the crypto-trading daemon.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_global_options(parser, top_level=True)
    commands = parser.add_subparsers(dest="group", metavar="COMMAND")
    connections.register(commands, common)
    exchanges.register(commands, common)
    health.register(commands, common)
    engines.register(commands, common)
    fleet.register(commands, common)
    return parser


def run(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    read_hidden: Callable[[str], str] = getpass.getpass,
) -> int:
    """Parse, call the daemon, render; return the exit code instead of exiting."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(stderr)
        return EXIT_USAGE
    address: str = args.addr or default_address()
    console = Console(stdin=stdin or sys.stdin, stderr=stderr, read_hidden=read_hidden)
    try:
        security = load_security(args, os.environ, lambda line: stderr.write(line + "\n"))
        with open_channel(address, security) as channel:
            ctx = Context(
                address=address,
                connections=connection_service_pb2_grpc.ConnectionServiceStub(channel),
                health=health_service_pb2_grpc.HealthServiceStub(channel),
                timeout=args.timeout,
                output=args.output,
                stdout=stdout,
                console=console,
                security=security,
            )
            code: int = args.handler(args, ctx)
            return code
    except UsageError as err:
        stderr.write(f"cts: error: {err}\n")
        return EXIT_USAGE
    except grpc.RpcError as err:
        stderr.write(describe_rpc_error(err, address) + "\n")
        return EXIT_RPC_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: `run` plus the process-level edge cases."""
    try:
        code = run(argv)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # `cts connections list | head`: the reader left; stop quietly, and keep
        # Python from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_RPC_ERROR


if __name__ == "__main__":
    sys.exit(main())
