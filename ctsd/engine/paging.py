"""Pages of an engine's orders and fills: opaque tokens over storage positions.

A token is the storage position of the last row a client got. Positions
grow with every row stored and never move, so paging stays exact while the
engine keeps trading (`ctsd.engine.store_ports.Page`). A token this daemon did
not issue is the client's mistake: INVALID_ARGUMENT naming `page_token`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Generic, TypeVar

from ctsd.engine.store_ports import Page
from ctsd.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_POSITION = 2**63 - 1
"""SQLite's largest INTEGER: a position past it is no row's, and no query can take it."""


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    next_page_token: str
    """Empty on the last page."""


def page_request(page_size: int, token: str) -> tuple[int, int]:
    """(the position to continue after, the page size) of a List request."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return _position(token), min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def listing(page: Page[T]) -> Listing[T]:
    return Listing(list(page.items), page_token(page.next_after))


def page_token(after: int | None) -> str:
    return "" if after is None else base64.urlsafe_b64encode(f"p{after}".encode()).decode()


def _position(token: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode() if len(token) <= 64 else ""
        digits = raw[1:]
        if raw.startswith("p") and digits.isascii() and digits.isdigit():
            position = int(digits)
            if position <= MAX_POSITION:
                return position
    except (ValueError, UnicodeDecodeError):
        pass
    raise InvalidArgument.field("page_token", "is not a token this service issued")
