"""Rendering answers: aligned tables for people, one JSON document for scripts.

Tables are for eyes: short enum words, yes/no, ages. JSON is for programs: the
proto3 JSON mapping with proto field names and every field present (defaults
included), so a script's `jq .enabled` never meets a missing key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import cast

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from cts.cli.enums import UNSET

TABLE = "table"
JSON = "json"
FORMATS = (TABLE, JSON)

COLUMN_GAP = "   "


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns padded to their widest cell, no trailing blanks."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append(COLUMN_GAP.join(cells).rstrip())
    return "\n".join(lines)


def render_fields(pairs: Sequence[tuple[str, str]]) -> str:
    """`Label:  value` lines with the values aligned: the detail view of one resource."""
    width = max((len(label) for label, _ in pairs), default=0) + 1
    return "\n".join(f"{(label + ':').ljust(width)}  {value}".rstrip() for label, value in pairs)


def message_to_json(message: Message) -> dict[str, object]:
    """The proto3 JSON mapping with proto field names and default values spelled out.

    Keys come in the proto's field order. MessageToDict appends default-valued
    fields after the set ones, so `enabled` would move around depending on its
    value; a fixed order keeps two answers diffable line by line.
    """
    document = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _in_field_order(cast(Descriptor, message.DESCRIPTOR), document)


def _in_field_order(descriptor: Descriptor, document: dict[str, object]) -> dict[str, object]:
    """Re-key `document` in declaration order, recursing into nested messages."""
    ordered: dict[str, object] = {}
    for field in descriptor.fields:
        if field.name not in document:
            continue
        value = document[field.name]
        nested = field.message_type
        if nested is not None and isinstance(value, dict):
            value = _in_field_order(nested, value)
        elif nested is not None and isinstance(value, list):
            value = [_in_field_order(nested, v) if isinstance(v, dict) else v for v in value]
        ordered[field.name] = value
    for key, value in document.items():  # anything the descriptor does not name
        ordered.setdefault(key, value)
    return ordered


def dump_json(document: object) -> str:
    """One indented JSON document; keys keep the proto's field order, which is stable."""
    return json.dumps(document, indent=2, ensure_ascii=False)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def or_unset(text: str) -> str:
    """Empty strings print as `-` so a table column never looks shifted."""
    return text if text else UNSET


MONEY_PLACES = Decimal("1e-8")
"""Decimals a PnL or fee shows in a table: the daemon's figures are exact to 28 digits, and
those derived from an average price carry its division's rounding in the last ones."""


def money(text: str) -> str:
    """A PnL, fee or margin for people: at most 8 decimals, no trailing zeros, `-` when
    unset (JSON output keeps the daemon's exact string)."""
    if not text:
        return UNSET
    try:
        value = Decimal(text).quantize(MONEY_PLACES, rounding=ROUND_HALF_EVEN)
    except InvalidOperation:
        return text  # not a number: shown as the daemon sent it
    shown = format(value.normalize(), "f")
    return "0" if shown == "-0" else shown


def _is_set(ts: timestamp_pb2.Timestamp) -> bool:
    return ts.seconds != 0 or ts.nanos != 0


def timestamp(ts: timestamp_pb2.Timestamp) -> str:
    """An RFC 3339 UTC time to the second, or `-` when the field is unset."""
    if not _is_set(ts):
        return UNSET
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(ts: timestamp_pb2.Timestamp, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit (`42s`, `5m`, `3h`, `12d`), like kubectl's AGE."""
    if not _is_set(ts):
        return UNSET
    now = now or datetime.now(UTC)
    seconds = max(0, int((now - ts.ToDatetime(tzinfo=UTC)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(d: duration_pb2.Duration) -> str:
    """A short human duration: `850ms`, `1.2s`, `3m`, `2h`, `1d`."""
    total = d.seconds + d.nanos / 1e9
    if total < 1:
        return f"{round(total * 1000)}ms"
    if total < 60:
        return f"{total:.3g}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if total >= size and total % size == 0:
            return f"{int(total // size)}{unit}"
    return f"{total:g}s"
