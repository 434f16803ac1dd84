"""`cts status`, `cts health`, `cts verify`: the daemon's HealthService, for people and scripts.

cts status    version, uptime, connections by state, rate-limit buckets, store
cts health    per connection: last test, error rate, the buckets it draws on
cts verify    re-run the start-up checks; exit 1 if any fails
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from cts.cli import enums
from cts.cli.client import Context
from cts.cli.errors import EXIT_OK, EXIT_RPC_ERROR
from cts.cli.filters import quote
from cts.cli.output import (
    JSON,
    age,
    dump_json,
    duration,
    message_to_json,
    render_fields,
    render_table,
    timestamp,
    yes_no,
)
from cts.v1 import connection_pb2, health_service_pb2

Handler = Callable[[argparse.Namespace, Context], int]

LIMIT_HEADERS = ("SCOPE", "COUNTED", "USED", "LIMIT", "WINDOW", "WAITS", "WAITED", "REFUSED",
                 "PAUSED UNTIL")
HEALTH_HEADERS = ("NAME", "EXCHANGE", "ENABLED", "LAST TEST", "AGE", "FAILURE", "ERRORS", "LIMITS")
CHECK_HEADERS = ("CHECK", "RESULT", "TOOK", "DETAIL")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `status`, `health` and `verify` to the top-level parser."""
    table: list[tuple[str, Handler, str]] = [
        ("status", system_status, "daemon version, uptime, connections, rate limits, store"),
        ("health", connections_health, "per connection: last test, error rate, rate limits"),
        ("verify", verify_startup, "re-run the start-up checks (exit 1 if any fails)"),
    ]
    for name, handler, summary in table:
        parser = subparsers.add_parser(name, parents=[common], help=summary, description=summary)
        parser.set_defaults(handler=handler)
        if name == "health":
            parser.add_argument("--exchange", help="only this exchange")


def counting_text(usage: health_service_pb2.RateLimitUsage) -> str:
    """`local`, `shared` (a fleet's, in Redis), `fallback 33%` (this daemon's share while
    Redis is unreachable) or `blocked`."""
    text = enums.label(health_service_pb2.RateLimitCounting, usage.counting)
    if usage.counting == health_service_pb2.RATE_LIMIT_COUNTING_FALLBACK:
        return f"{text} {usage.fleet_share:.0%}"
    return text


def limits_table(usages: Sequence[health_service_pb2.RateLimitUsage]) -> str:
    rows = [
        [
            u.scope,
            counting_text(u),
            f"{u.used:g}",
            f"{u.limit:g}",
            duration(u.interval),
            str(u.waits),
            duration(u.wait_time),
            str(u.rate_limited),
            timestamp(u.paused_until) if u.HasField("paused_until") else "-",
        ]
        for u in usages
    ]
    return render_table(LIMIT_HEADERS, rows)


def status_view(status: health_service_pb2.GetSystemStatusResponse) -> str:
    states = ", ".join(f"{c.state} {c.count}" for c in status.connections) or "none"
    text = render_fields(
        [
            ("Version", status.version),
            ("Started", timestamp(status.start_time)),
            ("Uptime", duration(status.uptime)),
            ("Store", status.store_status),
            ("Schema version", str(status.schema_version)),
            ("Connections", states),
        ]
    )
    if status.rate_limits:
        text += "\n\n" + limits_table(status.rate_limits)
    else:
        text += "\n\nNo rate-limit buckets in use yet."
    if status.streams:
        text += "\n\n" + streams_table(status.streams)
    return text


STREAM_HEADERS = ("STREAM", "STATE", "MSG/S", "DATA AGE", "RECONNECTS", "REST FALLBACKS",
                  "READERS", "ERROR")


def streams_table(streams: Sequence[health_service_pb2.MarketStream]) -> str:
    """The market-data hub's WebSocket subscriptions, one row each."""
    rows = [
        [
            s.stream,
            s.state,
            f"{s.messages_per_second:.1f}",
            duration(s.data_age) if s.HasField("data_age") else "-",
            str(s.reconnects),
            str(s.rest_fallbacks),
            str(s.consumers),
            s.error or "-",
        ]
        for s in streams
    ]
    return render_table(STREAM_HEADERS, rows)


def _limits_cell(usages: Sequence[health_service_pb2.RateLimitUsage]) -> str:
    """`3 buckets, busiest request_weight 12%`: the one closest to its limit."""
    if not usages:
        return "-"
    busiest = max(usages, key=lambda u: u.used / u.limit if u.limit else 0.0)
    share = busiest.used / busiest.limit if busiest.limit else 0.0
    limit_name = busiest.scope.split("/")[1] if busiest.scope.count("/") >= 2 else busiest.scope
    paused = ", paused" if any(u.HasField("paused_until") for u in usages) else ""
    count = f"{len(usages)} bucket{'s' if len(usages) != 1 else ''}"
    return f"{count}, busiest {limit_name} {share:.0%}{paused}"


def health_row(item: health_service_pb2.ConnectionHealth) -> list[str]:
    errors = f"{item.error_rate:.0%} of {item.tests_in_window}" if item.tests_in_window else "-"
    return [
        item.name.removeprefix("connections/").removesuffix("/health"),
        item.exchange,
        yes_no(item.enabled),
        enums.label(connection_pb2.TestStatus, item.last_test_status)
        if item.last_test_status
        else "never",
        age(item.last_test_time),
        enums.label(connection_pb2.FailureClass, item.last_failure_class),
        errors,
        _limits_cell(item.rate_limits),
    ]


def checks_table(response: health_service_pb2.VerifyStartupResponse) -> str:
    rows = [
        [c.name, "pass" if c.passed else "FAIL", duration(c.duration), c.detail]
        for c in response.checks
    ]
    return render_table(CHECK_HEADERS, rows)


def system_status(args: argparse.Namespace, ctx: Context) -> int:
    response = ctx.health.GetSystemStatus(
        health_service_pb2.GetSystemStatusRequest(), timeout=ctx.timeout
    )
    ctx.emit(dump_json(message_to_json(response)) if ctx.output == JSON else status_view(response))
    return EXIT_OK


def connections_health(args: argparse.Namespace, ctx: Context) -> int:
    request = health_service_pb2.GetConnectionsHealthRequest(
        filter=f"exchange = {quote(args.exchange)}" if args.exchange else ""
    )
    response = ctx.health.GetConnectionsHealth(request, timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(response)))
    elif response.connections:
        ctx.emit(render_table(HEALTH_HEADERS, [health_row(c) for c in response.connections]))
    else:
        ctx.console.stderr.write("No connections found.\n")
    return EXIT_OK


def verify_startup(args: argparse.Namespace, ctx: Context) -> int:
    # The first run imports the exchange modules in the daemon: allow it a little longer.
    response = ctx.health.VerifyStartup(
        health_service_pb2.VerifyStartupRequest(), timeout=max(ctx.timeout, 30.0)
    )
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(response)))
    else:
        ctx.emit(checks_table(response))
        ctx.emit("all checks passed" if response.passed else "some checks FAILED")
    return EXIT_OK if response.passed else EXIT_RPC_ERROR
