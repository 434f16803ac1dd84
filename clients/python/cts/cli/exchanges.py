"""`cts exchanges`: what the daemon supports, so users pick valid values for `add`."""

from __future__ import annotations

import argparse

from cts.cli import views
from cts.cli.client import Context
from cts.cli.errors import EXIT_OK
from cts.cli.output import JSON, dump_json
from cts.v1 import connection_service_pb2


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `exchanges` to the top-level parser."""
    summary = "list supported exchanges: api types, testnet, passphrase, rate limits"
    parser = subparsers.add_parser(
        "exchanges", aliases=["exchange"], parents=[common], help=summary, description=summary
    )
    parser.set_defaults(handler=list_exchanges)


def list_exchanges(args: argparse.Namespace, ctx: Context) -> int:
    request = connection_service_pb2.ListExchangesRequest()
    response = ctx.connections.ListExchanges(request, timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json(views.exchanges_document(response)))
    else:
        ctx.emit(views.exchanges_table(response.exchanges))
    return EXIT_OK
