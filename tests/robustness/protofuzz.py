"""Hypothesis strategies that build any request message of the cts.v1 contract.

Generic over descriptors, so a new RPC or field is fuzzed without touching
this file; string fields get values chosen by name (resource names, filters,
page tokens, field mask paths) mixed with random, unicode and huge text.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

MAX_MESSAGE_BYTES = 1 << 20  # ctsd.server.MAX_MESSAGE_BYTES
SEED_ID = "fz-seed"

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_HUGE = st.builds(
    lambda ch, n: ch * n,
    st.sampled_from(["x", "é", "\U0001f4a5", "\x00", "%"]),
    st.sampled_from([101, 257, 513, 65_537, MAX_MESSAGE_BYTES // 2, MAX_MESSAGE_BYTES + 16]),
)
_NAMES = st.sampled_from(
    [
        f"connections/{SEED_ID}", f"connections/{SEED_ID}/engine", "connections/", "connections",
        "connections/nope", "connections/nope/engine", "connections/../etc/passwd",
        "connections/A-UPPER", "connections/x/engine/extra", "/connections/x", "connections//x",
        "connections/\u00e9t\u00e9", f"connections/{'a' * 64}", "engines/x", "*", " ",
    ]
)
_FILTERS = st.one_of(
    st.sampled_from(
        [
            'exchange = "binance"', "enabled = true AND testnet = false", "api_type = SPOT",
            'exchange != "okx" AND enabled = 1', "((((enabled = true))))", "enabled",
            "= =", "AND", 'exchange = "', "exchange ~ x", "nope = 1", "enabled = maybe",
            " AND ".join(["enabled = true"] * 500), "(" * 2000 + ")" * 2000, "NOT enabled",
            'exchange = "binance" OR exchange = "okx"', "api_type = 999999999999",
        ]
    ),
    st.lists(
        st.tuples(st.sampled_from(["exchange", "api_type", "enabled", "testnet", "x", ""]),
                  st.sampled_from(["=", "!=", "<", ">=", ":", ""]), _TEXT),
        min_size=1, max_size=6,
    ).map(lambda parts: " AND ".join(f"{f} {op} {v}" for f, op, v in parts)),
)
_TOKENS = st.one_of(
    st.binary(max_size=64).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    # well-formed engine page tokens at any position, SQLite's INTEGER range and beyond
    st.integers(min_value=-1, max_value=2**80).map(
        lambda n: base64.urlsafe_b64encode(f"p{n}".encode()).decode()),
    st.sampled_from(["", "0", "-1", "AAAA", "eyJvZmZzZXQiOi0xfQ", "%%%", "x" * 5000]),
    _TEXT,
)
_MASK_PATHS = st.sampled_from(
    [
        "display_name", "api_type", "testnet", "margin_mode", "position_mode",
        "market_data_method", "enabled", "credentials", "credentials.api_key",
        "credentials.api_secret", "credentials.passphrase", "*", "name", "exchange", "etag",
        "predefined", "credentials_info", "create_time", "", "nope", "display_name.x", "**",
    ]
)
# Numbers as text (engine params, risk limits, paper balances): what Decimal and
# float parsers trip on.
_NUMERIC = st.one_of(
    st.sampled_from(["NaN", "-NaN", "sNaN", "Infinity", "-inf", "1e999999999", "-1e999999999",
                     "1e-999999999", "-1", "0", "-0", "0x10", "1_000", "\uff19", " 1 ", "1e",
                     "99999999999999999999999999999999999999", "0.000000000000000000000001"]),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers().map(str),
)
_IDS = st.one_of(st.sampled_from([SEED_ID, "a", "a" * 63, "a" * 64, "1abc", "-x", "ok-id"]),
                 st.from_regex(r"[a-z][a-z0-9-]{0,70}", fullmatch=True), _TEXT)


def string_for(field: FieldDescriptor) -> st.SearchStrategy[str]:
    by_name: dict[str, st.SearchStrategy[str]] = {
        "name": _NAMES, "parent": _NAMES, "names": _NAMES, "filter": _FILTERS,
        "page_token": _TOKENS, "paths": _MASK_PATHS, "connection_id": _IDS,
        "exchange": st.sampled_from(["binance", "bybit", "okx", "kraken", "BINANCE", "ftx"]),
        "etag": st.sampled_from(["", "W/\"x\"", "0", "etag"]),
    }
    chosen = by_name.get(field.name)
    options = [_TEXT, _NUMERIC, _HUGE] if chosen is None else [chosen, chosen, _TEXT, _HUGE]
    return st.one_of(*options)


def _int(bits: int, signed: bool) -> st.SearchStrategy[int]:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return st.one_of(st.sampled_from([lo, hi, 0, -1 if signed else 1, 1, 1000, 1001, 33]),
                     st.integers(lo, hi))


_F = FieldDescriptor


def _enum_numbers(field: FieldDescriptor) -> list[int]:
    assert field.enum_type is not None
    return [v.number for v in field.enum_type.values]

_SCALARS: dict[int, Callable[[FieldDescriptor], st.SearchStrategy[Any]]] = {
    _F.TYPE_STRING: string_for,
    _F.TYPE_BYTES: lambda f: st.binary(max_size=64),
    _F.TYPE_BOOL: lambda f: st.booleans(),
    _F.TYPE_INT32: lambda f: _int(32, True), _F.TYPE_SINT32: lambda f: _int(32, True),
    _F.TYPE_SFIXED32: lambda f: _int(32, True), _F.TYPE_INT64: lambda f: _int(64, True),
    _F.TYPE_SINT64: lambda f: _int(64, True), _F.TYPE_SFIXED64: lambda f: _int(64, True),
    _F.TYPE_UINT32: lambda f: _int(32, False), _F.TYPE_FIXED32: lambda f: _int(32, False),
    _F.TYPE_UINT64: lambda f: _int(64, False), _F.TYPE_FIXED64: lambda f: _int(64, False),
    _F.TYPE_DOUBLE: lambda f: st.floats(), _F.TYPE_FLOAT: lambda f: st.floats(width=32),
    # Wrong enum numbers: any int32, not only the declared ones.
    _F.TYPE_ENUM: lambda f: st.one_of(st.sampled_from(_enum_numbers(f)), _int(32, True)),
}


def _value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == _F.TYPE_MESSAGE:
        assert field.message_type is not None
        return message(field.message_type, depth + 1)
    return _SCALARS[field.type](field)


@st.composite
def _message(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    msg = GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if depth > 3 or not draw(st.booleans()):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            entry = field.message_type.fields_by_name
            key_f, val_f = entry["key"], entry["value"]
            entries = draw(st.dictionaries(_value(key_f, depth), _value(val_f, depth), max_size=4))
            target = getattr(msg, field.name)
            for k, v in entries.items():
                if val_f.type == _F.TYPE_MESSAGE:
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            values = draw(st.lists(_value(field, depth), max_size=4))
            target = getattr(msg, field.name)
            if field.type == _F.TYPE_MESSAGE:
                for v in values:
                    target.add().CopyFrom(v)
            else:
                target.extend(values)
        elif field.type == _F.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(draw(_value(field, depth)))
        else:
            setattr(msg, field.name, draw(_value(field, depth)))
    return msg


def message(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    return _message(descriptor, depth)


def _field_paths(descriptor: Descriptor, prefix: tuple[FieldDescriptor, ...] = ()) -> list[
    tuple[FieldDescriptor, ...]
]:
    paths: list[tuple[FieldDescriptor, ...]] = []
    for field in descriptor.fields:
        path = (*prefix, field)
        paths.append(path)
        nested = field.message_type
        if nested is not None and not field.is_repeated and len(prefix) < 2:
            paths += _field_paths(nested, path)
    return paths


@st.composite
def _mutated(draw: st.DrawFn, base: Message) -> Message:
    msg = type(base)()
    msg.CopyFrom(base)
    paths = _field_paths(cast(Descriptor, base.DESCRIPTOR))
    for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=2)):
        *parents, leaf = path
        holder = msg
        for parent in parents:
            holder = getattr(holder, parent.name)
        depth = 2 if leaf.message_type else 0
        donor = draw(message(cast(Descriptor, holder.DESCRIPTOR), depth=depth))
        holder.ClearField(leaf.name)
        if donor.HasField(leaf.name) if _has_presence(leaf) else True:
            holder.MergeFrom(_only(donor, leaf))
    return msg


def _has_presence(field: FieldDescriptor) -> bool:
    return not field.is_repeated and field.has_presence


def _only(donor: Message, field: FieldDescriptor) -> Message:
    part = type(donor)()
    if field.is_repeated or field.type == _F.TYPE_MESSAGE:
        getattr(part, field.name).MergeFrom(getattr(donor, field.name))
    else:
        setattr(part, field.name, getattr(donor, field.name))
    return part


def near_valid(base: Message) -> st.SearchStrategy[Message]:
    """A valid request with one or two fields (at any depth up to 3) fuzzed."""
    return _mutated(base)
