"""Opaque page tokens for ListConnections.

A token records where the previous page ended and a digest of the filter it
was made for: reusing it with another filter is a client mistake, answered
INVALID_ARGUMENT, not a silently wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from ctsd.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_TOKEN_LENGTH = 512
MAX_ROW_POSITION = 2**63 - 1
"""SQLite's largest INTEGER: a position past it is no row's, and no query can take it."""


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _digest(filter_text: str) -> str:
    return hashlib.sha256(filter_text.encode()).hexdigest()[:16]


def encode_token(after: int, filter_text: str) -> str:
    payload = json.dumps({"a": after, "f": _digest(filter_text)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_token(token: str, filter_text: str) -> int:
    """The position after which the next page starts (0: from the beginning)."""
    if not token:
        return 0
    bad = InvalidArgument.field("page_token", "is not a token this server issued")
    if len(token) > MAX_TOKEN_LENGTH:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise bad from exc
    if not isinstance(payload, dict):
        raise bad
    after, digest = payload.get("a"), payload.get("f")
    if type(after) is not int or not 0 <= after <= MAX_ROW_POSITION or not isinstance(
            digest, str):
        raise bad
    if digest != _digest(filter_text):
        raise InvalidArgument.field("page_token", "was issued for a different filter")
    return after
