"""`cts connections test`: one connection with its log live, or many with a progress bar.

    cts connections test main                 # log lines as each step runs, then the result
    cts connections test --all                # every enabled connection: bar, then a table
    cts connections test --exchange binance   # those of one exchange

Exit 0 when every result is SUCCESS or WARNING, 1 when any FAILED: a script
(or a systemd timer) can act on the exit code alone. `-o json` prints one
document at the end instead of the live view.
"""

from __future__ import annotations

import argparse

from cts.cli import result_views, views
from cts.cli.client import Context
from cts.cli.errors import EXIT_OK, EXIT_RPC_ERROR, UsageError
from cts.cli.filters import quote
from cts.cli.output import JSON, dump_json, message_to_json
from cts.v1 import connection_pb2, connection_service_pb2

SINGLE_TEST_DEADLINE_S = 120.0
"""Longer than the daemon's own per-test deadline (30 s by default), so it answers first."""


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", nargs="?", help="connection id or connections/ID")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="test every enabled connection")
    which.add_argument("--exchange", help="test the enabled connections of this exchange")
    which.add_argument("--filter", dest="raw_filter", metavar="RAW", help="AIP-160 filter")
    p.add_argument(
        "--concurrency", type=int, default=0, metavar="N", help="tests at once (daemon default 3)"
    )
    p.add_argument(
        "--priority", type=int, default=0, metavar="P", help="1 (low) to 9 against other batches"
    )


def test_connections(args: argparse.Namespace, ctx: Context) -> int:
    batch = args.all or args.exchange or args.raw_filter
    if batch and args.id:
        raise UsageError("give a connection ID or --all/--exchange/--filter, not both")
    if not batch and not args.id:
        raise UsageError("give a connection ID, or --all, --exchange X or --filter RAW")
    return _batch(args, ctx) if batch else _single(args, ctx)


def _single(args: argparse.Namespace, ctx: Context) -> int:
    request = connection_service_pb2.TestConnectionRequest(name=views.resource_name(args.id))
    lines: list[connection_pb2.TestLogLine] = []
    result: connection_pb2.ConnectionTestResult | None = None
    deadline = max(ctx.timeout, SINGLE_TEST_DEADLINE_S)
    for event in ctx.connections.TestConnection(request, timeout=deadline):
        if event.HasField("log"):
            lines.append(event.log)
            if ctx.output != JSON:
                ctx.emit(result_views.log_line(event.log))
                ctx.stdout.flush()
        elif event.HasField("result"):
            result = event.result
    if result is None:
        ctx.console.stderr.write("error: the daemon ended the test without a result\n")
        return EXIT_RPC_ERROR
    if ctx.output == JSON:
        ctx.emit(dump_json({"name": request.name, "result": message_to_json(result)}))
    else:
        ctx.emit("\n" + result_views.result_detail(result))
    return EXIT_RPC_ERROR if result.status == connection_pb2.TEST_STATUS_FAILED else EXIT_OK


def _batch_filter(args: argparse.Namespace) -> str:
    if args.exchange:
        return f"exchange = {quote(args.exchange)}"
    return str(args.raw_filter or "")


def _exchanges(ctx: Context) -> dict[str, str]:
    """name → exchange of every connection, for the table's EXCHANGE column."""
    found: dict[str, str] = {}
    request = connection_service_pb2.ListConnectionsRequest(page_size=1000)
    while True:
        response = ctx.connections.ListConnections(request, timeout=ctx.timeout)
        found.update({c.name: c.exchange for c in response.connections})
        if not response.next_page_token or response.next_page_token == request.page_token:
            return found
        request.page_token = response.next_page_token


def _batch(args: argparse.Namespace, ctx: Context) -> int:
    request = connection_service_pb2.BatchTestConnectionsRequest(
        filter=_batch_filter(args), concurrency=args.concurrency, priority=args.priority
    )
    items: list[connection_service_pb2.BatchTestItemResult] = []
    summary: connection_service_pb2.BatchTestSummary | None = None
    stderr = ctx.console.stderr
    live = ctx.output != JSON and stderr.isatty()
    for event in ctx.connections.BatchTestConnections(request):  # no deadline: batches are long
        if event.HasField("result"):
            items.append(event.result)
        elif event.HasField("progress") and live:
            stderr.write("\r" + result_views.progress_bar(event.progress))
            stderr.flush()
        elif event.HasField("summary"):
            summary = event.summary
    if live:
        stderr.write("\n")
    if summary is None:
        stderr.write("error: the daemon ended the batch without a summary\n")
        return EXIT_RPC_ERROR
    _emit_batch(ctx, items, summary)
    failed = any(i.result.status == connection_pb2.TEST_STATUS_FAILED for i in items)
    return EXIT_RPC_ERROR if failed else EXIT_OK


def _emit_batch(
    ctx: Context,
    items: list[connection_service_pb2.BatchTestItemResult],
    summary: connection_service_pb2.BatchTestSummary,
) -> None:
    if ctx.output == JSON:
        document = {
            "results": [message_to_json(i) for i in items],
            "summary": message_to_json(summary),
        }
        ctx.emit(dump_json(document))
        return
    if items:
        ctx.emit(result_views.batch_table(items, _exchanges(ctx)))
    else:
        ctx.console.stderr.write("No enabled connections matched.\n")
    ctx.emit(result_views.summary_line(summary))
