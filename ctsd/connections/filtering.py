"""ListConnections filters: a small, strict AIP-160 subset.

Grammar: `condition (AND condition)*`, condition `field (= | !=) value`.
Fields: exchange, api_type, enabled, testnet. Values are bare words or
double-quoted strings. Anything else is refused with the position of the
problem, rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ctsd.connections.model import ApiType, Connection
from ctsd.errors import InvalidArgument

MAX_FILTER_LENGTH = 1000
_TOKEN = re.compile(r'\s*(?:(?P<op>!=|=)|(?P<str>"(?:[^"\\]|\\.)*")|(?P<word>[A-Za-z0-9_.\-]+))')
_BOOL_FIELDS = {"enabled", "testnet"}
_FIELDS = ("exchange", "api_type", "enabled", "testnet")


@dataclass(frozen=True)
class Condition:
    """`field = value` (or `!=` when `negate`); values already typed."""

    field: str
    value: str | bool
    negate: bool = False


def _bad(description: str) -> InvalidArgument:
    return InvalidArgument.field("filter", description)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise _bad(f"unexpected character at position {pos + 1}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return out


def _typed(field: str, raw: str, quoted: bool) -> str | bool:
    if field in _BOOL_FIELDS:
        if quoted or raw not in ("true", "false"):
            raise _bad(f"{field} takes true or false")
        return raw == "true"
    if field == "api_type":
        value = raw.lower().removeprefix("api_type_")
        if value not in {t.value for t in ApiType}:
            allowed = ", ".join(t.value for t in ApiType)
            raise _bad(f"api_type takes one of {allowed}")
        return value
    return raw


def parse_filter(text: str) -> tuple[Condition, ...]:
    if len(text) > MAX_FILTER_LENGTH:
        raise _bad(f"must be at most {MAX_FILTER_LENGTH} characters")
    tokens = _tokens(text)
    conditions: list[Condition] = []
    i = 0
    while i < len(tokens):
        if conditions:
            kind, value, pos = tokens[i]
            if kind != "word" or value != "AND":
                raise _bad(f"expected AND at position {pos + 1}")
            i += 1
        if i + 3 > len(tokens):
            raise _bad("incomplete condition; expected `field = value`")
        (fk, field, fpos), (ok, op, opos), (vk, raw, vpos) = tokens[i : i + 3]
        if fk != "word" or field not in _FIELDS:
            raise _bad(f"unknown field at position {fpos + 1}; filter on {', '.join(_FIELDS)}")
        if ok != "op":
            raise _bad(f"expected = or != at position {opos + 1}")
        if vk == "op":
            raise _bad(f"expected a value at position {vpos + 1}")
        quoted = vk == "str"
        if quoted:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        conditions.append(Condition(field, _typed(field, raw, quoted), negate=op == "!="))
        i += 3
    return tuple(conditions)


def _field_value(conn: Connection, field: str) -> str | bool:
    if field == "api_type":
        return conn.api_type.value
    value: str | bool = getattr(conn, field)
    return value


def matches_all(conditions: Sequence[Condition], conn: Connection) -> bool:
    return all((_field_value(conn, c.field) == c.value) != c.negate for c in conditions)
