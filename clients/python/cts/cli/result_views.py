"""How connection tests look: live log lines, a result block, a batch table, a progress bar.

Kept apart from the handlers so the look can be tested without a daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC

from google.protobuf import duration_pb2

from cts.cli import enums
from cts.cli.output import duration, render_fields, render_table, timestamp
from cts.v1 import connection_pb2, connection_service_pb2

BATCH_HEADERS = ("NAME", "EXCHANGE", "STATUS", "FAILURE", "ATTEMPTS", "BALANCE", "MESSAGE")
BALANCE_HEADERS = ("ASSET", "FREE", "USED", "TOTAL", "VALUE")
MESSAGE_WIDTH = 60
BAR_WIDTH = 30


def status_word(status: int) -> str:
    return enums.label(connection_pb2.TestStatus, status).upper()


def failure_word(failure_class: int) -> str:
    return enums.label(connection_pb2.FailureClass, failure_class)


def log_line(line: connection_pb2.TestLogLine) -> str:
    """`22:14:03.120  INFO     balance      signed request accepted: ...`"""
    when = line.time.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S.%f")[:-3]
    level = enums.label(connection_pb2.LogLevel, line.level).upper()
    return f"{when}  {level:<8} {line.step:<12} {line.message}"


def _signed_seconds(d: duration_pb2.Duration) -> str:
    return f"{d.seconds + d.nanos / 1e9:+.3f}s"


def result_detail(result: connection_pb2.ConnectionTestResult) -> str:
    """The outcome of one test: status, why, what to do, and what was found."""
    status = status_word(result.status)
    if result.failure_class:
        status += f" ({failure_word(result.failure_class)})"
    fields: list[tuple[str, str]] = [("Result", status), ("Message", result.message or "-")]
    if result.remedy:
        fields.append(("Remedy", result.remedy))
    if result.balance_currency:
        fields.append(
            (
                "Balance",
                f"{result.balance_total:,.2f} {result.balance_currency} "
                f"({len(result.balances)} assets)",
            )
        )
    if result.capabilities:
        fields.append(("Capabilities", ", ".join(result.capabilities)))
    if result.HasField("clock_skew"):
        fields.append(("Clock skew", _signed_seconds(result.clock_skew)))
    if result.HasField("latency"):
        fields.append(("Latency", duration(result.latency)))
    fields += [("Started", timestamp(result.start_time)), ("Duration", duration(result.duration))]
    text = render_fields(fields)
    if result.balances:
        rows = [
            [
                b.asset,
                f"{b.free:g}",
                f"{b.used:g}",
                f"{b.total:g}",
                f"{b.value:,.2f}" if b.value else "-",
            ]
            for b in result.balances
        ]
        text += "\n\n" + render_table(BALANCE_HEADERS, rows)
    return text


def _short(text: str, width: int = MESSAGE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def batch_row(
    item: connection_service_pb2.BatchTestItemResult, exchanges: dict[str, str]
) -> list[str]:
    result = item.result
    balance = (
        f"{result.balance_total:,.2f} {result.balance_currency}" if result.balance_currency else "-"
    )
    attempts = str(item.attempts)
    if item.shared_from:
        attempts = "shared"
    return [
        item.name.removeprefix("connections/"),
        exchanges.get(item.name, "-"),
        status_word(result.status),
        failure_word(result.failure_class),
        attempts,
        balance,
        _short(result.message),
    ]


def batch_table(
    items: Sequence[connection_service_pb2.BatchTestItemResult], exchanges: dict[str, str]
) -> str:
    rows = [batch_row(i, exchanges) for i in sorted(items, key=lambda i: i.name)]
    return render_table(BATCH_HEADERS, rows)


def summary_line(summary: connection_service_pb2.BatchTestSummary) -> str:
    """`5 tested in 1.2s: 3 success, 2 failed (authentication 1, ...); limits waited 0ms`"""
    counts = ", ".join(f"{c.count} {status_word(c.status).lower()}" for c in summary.by_status)
    text = f"{summary.total} tested in {duration(summary.elapsed)}: {counts or 'none'}"
    if summary.failures:
        classes = ", ".join(f"{failure_word(f.failure_class)} {f.count}" for f in summary.failures)
        text += f" (failures: {classes})"
    return text + f"; waited {duration(summary.limiter_wait)} for rate limits"


def progress_bar(progress: connection_service_pb2.BatchTestProgress) -> str:
    """`[###########-------------------]  11/30  limits 120ms` (no newline)."""
    total = max(progress.total, 1)
    filled = round(BAR_WIDTH * progress.done / total)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"[{bar}] {progress.done:>4}/{progress.total}  limits {duration(progress.limiter_wait)}"
