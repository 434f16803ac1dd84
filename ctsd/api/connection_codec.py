"""cts.v1 Connection messages to domain values and back."""

from __future__ import annotations

import enum
from typing import TypeVar

from google.protobuf import duration_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import exchange_pb2 as xpb
from ctsd.api.check_codec import encode_test
from ctsd.api.wellknown import timestamp
from ctsd.connections.model import (
    ApiType,
    Connection,
    ConnectionDraft,
    CredentialsInput,
    MarginMode,
    MarketDataMethod,
    PositionMode,
)
from ctsd.errors import InvalidArgument
from ctsd.exchanges.spec import ExchangeSpec, RateLimitScope

E = TypeVar("E", bound=enum.Enum)

API_TYPES: dict[int, ApiType] = {
    pb.API_TYPE_SPOT: ApiType.SPOT,
    pb.API_TYPE_MARGIN: ApiType.MARGIN,
    pb.API_TYPE_PERPETUAL_FUTURES: ApiType.PERPETUAL_FUTURES,
    pb.API_TYPE_OPTIONS: ApiType.OPTIONS,
}
MARGIN_MODES: dict[int, MarginMode] = {
    pb.MARGIN_MODE_CROSS: MarginMode.CROSS,
    pb.MARGIN_MODE_ISOLATED: MarginMode.ISOLATED,
}
POSITION_MODES: dict[int, PositionMode] = {
    pb.POSITION_MODE_ONE_WAY: PositionMode.ONE_WAY,
    pb.POSITION_MODE_HEDGE: PositionMode.HEDGE,
}
MARKET_DATA: dict[int, MarketDataMethod] = {
    pb.MARKET_DATA_METHOD_REST: MarketDataMethod.REST,
    pb.MARKET_DATA_METHOD_WEBSOCKET: MarketDataMethod.WEBSOCKET,
}
SCOPES: dict[RateLimitScope, int] = {
    RateLimitScope.IP: xpb.RATE_LIMIT_SCOPE_IP,
    RateLimitScope.ACCOUNT: xpb.RATE_LIMIT_SCOPE_ACCOUNT,
}


def _reverse(table: dict[int, E]) -> dict[E, int]:
    return {v: k for k, v in table.items()}


_API_TYPES_OUT = _reverse(API_TYPES)
_MARGIN_OUT = _reverse(MARGIN_MODES)
_POSITION_OUT = _reverse(POSITION_MODES)
_MARKET_DATA_OUT = _reverse(MARKET_DATA)


def decode_enum(table: dict[int, E], value: int, field: str) -> E | None:
    """UNSPECIFIED (0) is None; a number outside the enum is the client's mistake."""
    if value == 0:
        return None
    if value not in table:
        raise InvalidArgument.field(field, f"unknown enum value {value}")
    return table[value]


def decode_credentials(msg: pb.Credentials) -> CredentialsInput:
    """Empty strings mean "not given" on create."""
    return CredentialsInput(
        api_key=msg.api_key or None,
        api_secret=msg.api_secret or None,
        passphrase=msg.passphrase or None,
    )


def decode_draft(msg: pb.Connection) -> ConnectionDraft:
    if msg.predefined:
        raise InvalidArgument.field(
            "connection.predefined", "is set by the operator's configuration ([[connections]] "
            "in the daemon's TOML file), never by a client")
    return ConnectionDraft(
        display_name=msg.display_name,
        exchange=msg.exchange,
        api_type=decode_enum(API_TYPES, msg.api_type, "connection.api_type"),
        testnet=msg.testnet,
        margin_mode=decode_enum(MARGIN_MODES, msg.margin_mode, "connection.margin_mode"),
        position_mode=decode_enum(POSITION_MODES, msg.position_mode, "connection.position_mode"),
        market_data_method=decode_enum(
            MARKET_DATA, msg.market_data_method, "connection.market_data_method"
        ),
        enabled=msg.enabled,
        predefined=msg.predefined,
        credentials=decode_credentials(msg.credentials),
    )


def encode_connection(conn: Connection, active: bool = False) -> pb.Connection:
    info = conn.credentials
    msg = pb.Connection(
        name=conn.name,
        display_name=conn.display_name,
        exchange=conn.exchange,
        api_type=_API_TYPES_OUT[conn.api_type],  # type: ignore[arg-type]
        testnet=conn.testnet,
        margin_mode=_MARGIN_OUT[conn.margin_mode],  # type: ignore[arg-type]
        position_mode=_POSITION_OUT[conn.position_mode],  # type: ignore[arg-type]
        market_data_method=_MARKET_DATA_OUT[conn.market_data_method],  # type: ignore[arg-type]
        credentials_info=pb.CredentialsInfo(
            api_key_set=info.api_key_set,
            api_key_hint=info.api_key_hint,
            api_secret_set=info.api_secret_set,
            passphrase_set=info.passphrase_set,
        ),
        enabled=conn.enabled,
        predefined=conn.predefined,
        active=active,
        create_time=timestamp(conn.created_at),
        update_time=timestamp(conn.updated_at),
        etag=conn.etag,
        account_uid=conn.account_uid or "",
    )
    if conn.last_test is not None:
        msg.last_test.CopyFrom(encode_test(conn.last_test))
    return msg


def encode_exchange(spec: ExchangeSpec) -> xpb.Exchange:
    return xpb.Exchange(
        name=f"exchanges/{spec.id}",
        exchange_id=spec.id,
        display_name=spec.display_name,
        api_types=[_API_TYPES_OUT[t] for t in spec.api_types],  # type: ignore[misc]
        testnet_supported=spec.testnet_supported,
        passphrase_required=spec.passphrase_required,
        rate_limits=[
            xpb.RateLimit(
                name=limit.name,
                scope=SCOPES[limit.scope],  # type: ignore[arg-type]
                limit=limit.limit,
                interval=duration_pb2.Duration(
                    seconds=int(limit.interval_s), nanos=int(limit.interval_s % 1 * 1e9)
                ),
                weighted=limit.weighted,
            )
            for limit in spec.rate_limits
        ],
        api_type_support=[
            xpb.ApiTypeSupport(
                api_type=_API_TYPES_OUT[t],  # type: ignore[arg-type]
                key_test=support.key_test, paper_engines=support.paper,
                live_engines=support.live, streams=support.streams, note=support.note)
            for t, support in zip(spec.api_types, map(spec.support_of, spec.api_types),
                                  strict=True)
        ],
    )
