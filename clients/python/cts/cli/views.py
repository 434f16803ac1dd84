"""How connections and exchanges look in tables and JSON documents.

Kept apart from the handlers so the look can be tested without a daemon and
changed without touching request logic.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cts.cli import enums, output
from cts.v1 import connection_pb2, connection_service_pb2, exchange_pb2

COLLECTION = "connections/"

CONNECTION_HEADERS = (
    "NAME",
    "DISPLAY NAME",
    "EXCHANGE",
    "API TYPE",
    "TESTNET",
    "ENABLED",
    "KEY",
    "LAST TEST",
    "UPDATED",
)

EXCHANGE_HEADERS = ("NAME", "DISPLAY NAME", "API TYPES", "TESTNET", "PASSPHRASE", "RATE LIMITS")
SUPPORT_HEADERS = ("EXCHANGE", "API TYPE", "KEY TEST", "PAPER", "LIVE", "STREAMS", "NOTE")


def resource_name(id_or_name: str) -> str:
    """`connections/ID` from `ID` or `connections/ID`; other shapes are the daemon's to judge."""
    return id_or_name if "/" in id_or_name else COLLECTION + id_or_name


def short_id(name: str) -> str:
    """The id people type: `connections/main` → `main`."""
    return name.removeprefix(COLLECTION)


def key_hint(info: connection_pb2.CredentialsInfo) -> str:
    """The masked hint the daemon gives (`****abcd`); never anything derived from a secret."""
    if info.api_key_hint:
        return info.api_key_hint
    return "set" if info.api_key_set else enums.UNSET


def last_test_status(connection: connection_pb2.Connection) -> str:
    if not connection.HasField("last_test"):
        return "never"
    return enums.label(connection_pb2.TestStatus, connection.last_test.status)


def connection_row(connection: connection_pb2.Connection, now: datetime | None = None) -> list[str]:
    return [
        short_id(connection.name),
        connection.display_name,
        connection.exchange,
        enums.label(connection_pb2.ApiType, connection.api_type),
        output.yes_no(connection.testnet),
        output.yes_no(connection.enabled),
        key_hint(connection.credentials_info),
        last_test_status(connection),
        output.age(connection.update_time, now),
    ]


def connections_table(
    connections: Sequence[connection_pb2.Connection], now: datetime | None = None
) -> str:
    return output.render_table(CONNECTION_HEADERS, [connection_row(c, now) for c in connections])


def _set_or_not(flag: bool) -> str:
    return "set" if flag else "not set"


def _last_test_fields(test: connection_pb2.ConnectionTestResult) -> list[tuple[str, str]]:
    status = enums.label(connection_pb2.TestStatus, test.status)
    fields = [
        ("Last test", f"{status} at {output.timestamp(test.start_time)}"
                      f" in {output.duration(test.duration)}")
    ]
    if test.message:
        fields.append(("Test message", test.message))
    if test.balance_currency:
        fields.append(("Balance", f"{test.balance_total:g} {test.balance_currency}"))
    if test.capabilities:
        fields.append(("Capabilities", ", ".join(test.capabilities)))
    return fields


def connection_detail(connection: connection_pb2.Connection) -> str:
    """Every field of one connection, one per line: the view of `get`, `add` and `edit`."""
    info = connection.credentials_info
    fields: list[tuple[str, str]] = [
        ("Name", connection.name),
        ("Display name", connection.display_name),
        ("Exchange", connection.exchange),
        ("API type", enums.label(connection_pb2.ApiType, connection.api_type)),
        ("Testnet", output.yes_no(connection.testnet)),
        ("Margin mode", enums.label(connection_pb2.MarginMode, connection.margin_mode)),
        ("Position mode", enums.label(connection_pb2.PositionMode, connection.position_mode)),
        (
            "Market data",
            enums.label(connection_pb2.MarketDataMethod, connection.market_data_method),
        ),
        ("Enabled", output.yes_no(connection.enabled)),
        ("Predefined", output.yes_no(connection.predefined)),
        ("Active", output.yes_no(connection.active)),
        ("API key", key_hint(info)),
        ("API secret", _set_or_not(info.api_secret_set)),
        ("Passphrase", _set_or_not(info.passphrase_set)),
    ]
    if connection.HasField("last_test"):
        fields.extend(_last_test_fields(connection.last_test))
    else:
        fields.append(("Last test", "never"))
    fields += [
        ("Created", output.timestamp(connection.create_time)),
        ("Updated", output.timestamp(connection.update_time)),
        ("Etag", output.or_unset(connection.etag)),
    ]
    return output.render_fields(fields)


def connections_document(
    connections: Sequence[connection_pb2.Connection], next_page_token: str, total_size: int
) -> dict[str, object]:
    """The list as scripts see it: the same keys every time, even when empty."""
    return {
        "connections": [output.message_to_json(c) for c in connections],
        "next_page_token": next_page_token,
        "total_size": total_size,
    }


def rate_limit_text(limit: exchange_pb2.RateLimit) -> str:
    """`request_weight 1200/1m ip weighted`: what, how much per window, who shares it."""
    scope = enums.label(exchange_pb2.RateLimitScope, limit.scope)
    text = f"{limit.name} {limit.limit:g}/{output.duration(limit.interval)} {scope}"
    return text + " weighted" if limit.weighted else text


def exchange_row(exchange: exchange_pb2.Exchange) -> list[str]:
    return [
        exchange.exchange_id or exchange.name.removeprefix("exchanges/"),
        exchange.display_name,
        ",".join(enums.label(connection_pb2.ApiType, t) for t in exchange.api_types),
        output.yes_no(exchange.testnet_supported),
        "required" if exchange.passphrase_required else "no",
        "; ".join(rate_limit_text(r) for r in exchange.rate_limits) or enums.UNSET,
    ]


def support_rows(exchange: exchange_pb2.Exchange) -> list[list[str]]:
    """One row per api type: what works on it (key test, engines, streams) and why not."""
    name = exchange.exchange_id or exchange.name.removeprefix("exchanges/")
    return [[name, enums.label(connection_pb2.ApiType, s.api_type), output.yes_no(s.key_test),
             output.yes_no(s.paper_engines), output.yes_no(s.live_engines),
             output.yes_no(s.streams), s.note or "-"] for s in exchange.api_type_support]


def exchanges_table(exchanges: Sequence[exchange_pb2.Exchange]) -> str:
    """The exchanges, then what works on each of their api types."""
    listed = output.render_table(EXCHANGE_HEADERS, [exchange_row(e) for e in exchanges])
    support = [row for e in exchanges for row in support_rows(e)]
    return f"{listed}\n\n{output.render_table(SUPPORT_HEADERS, support)}" if support else listed


def exchanges_document(
    response: connection_service_pb2.ListExchangesResponse,
) -> dict[str, object]:
    return {"exchanges": [output.message_to_json(e) for e in response.exchanges]}
