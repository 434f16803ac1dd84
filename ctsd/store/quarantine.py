"""Rows that do not decode: kept out of every answer, reported, never a crash.

A row can be damaged without the file being corrupt: edited by hand, written
by a newer ctsd, or altered by someone who should not have. Such a row must
not turn every List into INTERNAL, nor the start into a traceback. Every read
that turns rows into domain values goes through `decoded`: a row that raises
is left in the file untouched (an operator may repair it or restore a backup),
recorded here, logged once, and skipped. `GetSystemStatus` (store status) and
`VerifyStartup` (`database_rows`) report what is held here.

Reads whose caller must not act on a partial picture (an engine reconciling
its orders) pass `strict=True`: the damaged row is still recorded, and the
read fails instead of answering without it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ctsd.errors import Unavailable

Row = tuple[Any, ...]
T = TypeVar("T")
log = logging.getLogger("ctsd.store")

AUDIT_CHUNK = 500
DECODE_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError, ArithmeticError)
"""What decoding a damaged row raises (bad enum, JSON, number, missing key, wrong type)."""


class DamagedText(str):
    """A text value that was not UTF-8 in the file (a flipped bit in a SQLite page), read
    with U+FFFD in place of the bad bytes so that the rest of the read goes on; `decoded`
    quarantines its row. Without it SQLite's reader raised for the whole query, and one
    damaged character turned every read of its table into INTERNAL."""


def text_or_damaged(raw: bytes) -> str:
    """SQLite's `text_factory`: the text, or a `DamagedText`."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return DamagedText(raw.decode(errors="replace"))


@dataclass(frozen=True)
class QuarantinedRow:
    table: str
    key: str
    reason: str

    def __str__(self) -> str:
        return f"{self.table} {self.key}: {self.reason}"


class Quarantine:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], QuarantinedRow] = {}
        self._lock = threading.Lock()

    def add(self, table: str, key: str, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {str(error)[:200]}"
        with self._lock:
            if (table, key) in self._rows:
                return
            self._rows[(table, key)] = QuarantinedRow(table, key, reason)
        log.error("damaged row quarantined: left in the file, kept out of answers",
                  extra={"table": table, "row": key, "reason": reason})

    @property
    def rows(self) -> list[QuarantinedRow]:
        with self._lock:
            return list(self._rows.values())

    def summary(self) -> str:
        rows = self.rows
        if not rows:
            return ""
        shown = "; ".join(str(r) for r in rows[:5])
        more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
        return f"{len(rows)} damaged row(s) quarantined: {shown}{more}"

    def decoded(self, table: str, rows: Iterable[Row], decode: Callable[[Row], T],
                key: Callable[[Row], object] = lambda row: row[0],
                strict: bool = False) -> list[T]:
        """Each row decoded; damaged ones recorded and skipped (or, `strict`, refused)."""
        found: list[T] = []
        damaged = False
        for row in rows:
            try:
                if any(isinstance(value, DamagedText) for value in row):
                    raise ValueError("a text column holds bytes that are not UTF-8")
                found.append(decode(row))
            except DECODE_ERRORS as exc:
                damaged = True
                self.add(table, _key(key, row), exc)
        if damaged and strict:
            raise Unavailable(f"damaged rows in {table} are quarantined ({self.summary()}); "
                              "repair them or restore a backup")
        return found


    async def audit(self, table: str, rows: Sequence[Row], decode: Callable[[Row], object],
                    key: Callable[[Row], object] = lambda row: row[0]) -> None:
        """Every row decoded, damaged ones recorded, a chunk at a time: a big table must
        not hold the event loop for the whole scan."""
        for at in range(0, len(rows), AUDIT_CHUNK):
            self.decoded(table, rows[at:at + AUDIT_CHUNK], decode, key)
            await asyncio.sleep(0)


def _key(key: Callable[[Row], object], row: Row) -> str:
    try:
        return str(key(row))[:100]
    except DECODE_ERRORS:
        return "?"
