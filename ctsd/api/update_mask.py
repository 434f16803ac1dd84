"""An UpdateConnection field mask turned into a domain patch.

Only the paths named are read from the request; unknown paths are refused
rather than ignored, so a typo never silently changes nothing.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as pb
from ctsd.api.connection_codec import (
    API_TYPES,
    MARGIN_MODES,
    MARKET_DATA,
    POSITION_MODES,
    decode_enum,
)
from ctsd.connections.model import (
    ConnectionPatch,
    CredentialsInput,
    MarginMode,
    MarketDataMethod,
    PositionMode,
)
from ctsd.errors import FieldViolation, InvalidArgument

E = TypeVar("E", bound=enum.Enum)

MAX_PATHS = 32
_CREDENTIAL_PATHS = ("credentials.api_key", "credentials.api_secret", "credentials.passphrase")
MUTABLE_PATHS = (
    "display_name",
    "api_type",
    "testnet",
    "margin_mode",
    "position_mode",
    "market_data_method",
    "enabled",
    "credentials",
    *_CREDENTIAL_PATHS,
)
_IMMUTABLE = {"name", "exchange", "predefined"}
_OUTPUT_ONLY = {"credentials_info", "active", "last_test", "create_time", "update_time", "etag"}


def _expand(paths: list[str]) -> set[str]:
    if len(paths) > MAX_PATHS:
        raise InvalidArgument.field("update_mask", f"names more than {MAX_PATHS} paths")
    if not paths:
        raise InvalidArgument.field("update_mask", "must name at least one field (or `*`)")
    if paths == ["*"]:
        return set(MUTABLE_PATHS) - {"credentials"}
    violations: list[FieldViolation] = []
    chosen: set[str] = set()
    for path in paths:
        shown = path if len(path) <= 60 else path[:60] + "…"
        if path == "credentials":
            chosen.update(_CREDENTIAL_PATHS)
        elif path in MUTABLE_PATHS:
            chosen.add(path)
        elif path in _IMMUTABLE:
            violations.append(FieldViolation("update_mask", f"{shown!r} cannot be changed"))
        elif path in _OUTPUT_ONLY:
            violations.append(FieldViolation("update_mask", f"{shown!r} is output only"))
        else:
            violations.append(FieldViolation("update_mask", f"unknown field {shown!r}"))
    if violations:
        detail = "; ".join(v.description for v in violations)
        raise InvalidArgument(f"invalid update_mask ({detail})", violations)
    return chosen


def _masked_enum(
    paths: set[str], table: dict[int, E], value: int, field: str, default: E | None
) -> E | None:
    """None when not in the mask; UNSPECIFIED in the mask resets to the default."""
    if field not in paths:
        return None
    decoded = decode_enum(table, value, f"connection.{field}")
    if decoded is None and default is None:
        raise InvalidArgument.field(f"connection.{field}", "is required")
    return decoded or default


def decode_patch(msg: pb.Connection, mask: field_mask_pb2.FieldMask) -> ConnectionPatch:
    paths = _expand(list(mask.paths))

    def given(path: str, value: str) -> str | None:
        return value if path in paths else None

    return ConnectionPatch(
        display_name=msg.display_name if "display_name" in paths else None,
        api_type=_masked_enum(paths, API_TYPES, msg.api_type, "api_type", None),
        testnet=msg.testnet if "testnet" in paths else None,
        margin_mode=_masked_enum(
            paths, MARGIN_MODES, msg.margin_mode, "margin_mode", MarginMode.CROSS
        ),
        position_mode=_masked_enum(
            paths, POSITION_MODES, msg.position_mode, "position_mode", PositionMode.ONE_WAY
        ),
        market_data_method=_masked_enum(
            paths,
            MARKET_DATA,
            msg.market_data_method,
            "market_data_method",
            MarketDataMethod.REST,
        ),
        enabled=msg.enabled if "enabled" in paths else None,
        credentials=CredentialsInput(
            api_key=given("credentials.api_key", msg.credentials.api_key),
            api_secret=given("credentials.api_secret", msg.credentials.api_secret),
            passphrase=given("credentials.passphrase", msg.credentials.passphrase),
        ),
    )
