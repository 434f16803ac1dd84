"""Each engine's latest status as its owner published it, for the other fleet members.

Why a table and a change feed: WatchEngines on any daemon streams every engine of
the fleet, but only the owner runs an engine. The owner upserts the status row on
every change (coalesced: the latest per engine) and notifies `engine_status` in the
same transaction; every other member reads the row on the notice and publishes it
to its own watchers. A member that lost notices (a gap) reloads every row.

The status is one JSON document (a dataclass tree of decimals as strings, enums by
value, tuples as lists), read back whole: like an engine's config, it changes shape
without a migration.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import time
import types
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from functools import cache
from typing import Any, Union, get_args, get_origin, get_type_hints

from ctsd.engine.status import EngineStatus
from ctsd.store.database import Database, Transaction

CHANNEL = "engine_status"


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _typed(kind: Any, value: Any) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        if value is None:
            return None
        return _typed(next(a for a in get_args(kind) if a is not type(None)), value)
    if origin is tuple:
        return tuple(_typed(get_args(kind)[0], v) for v in value)
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        return kind(**{k: _typed(hints[k], v) for k, v in value.items() if k in hints})
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if kind is Decimal:
        return Decimal(value)
    if kind is float:
        return float(value)
    return value


def status_to_json(status: EngineStatus) -> str:
    return json.dumps(_plain(status), separators=(",", ":"))


def status_from_json(text: str) -> EngineStatus:
    value = _typed(EngineStatus, json.loads(text))
    assert isinstance(value, EngineStatus)
    return value


class SqlStatusStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, owner: str, statuses: Sequence[EngineStatus]) -> None:
        """Each status replaces the stored one only if its version is higher: a member
        that lost an engine (paused, say) cannot set back what its new owner said."""
        rows = [(s.connection_id, owner, status_to_json(s), s.version,
                 time.time_ns() // 1_000_000) for s in statuses]

        def unit(tx: Transaction) -> None:
            for row in rows:
                if tx.execute(
                        "INSERT INTO engine_statuses (connection_id, owner, status, version, "
                        "updated_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (connection_id) DO "
                        "UPDATE SET owner = excluded.owner, status = excluded.status, "
                        "version = excluded.version, updated_ms = excluded.updated_ms "
                        "WHERE engine_statuses.version < excluded.version", row):
                    tx.notify(CHANNEL, row[0])

        await self._db.write(unit)

    async def load(self, connection_id: str | None = None) -> list[tuple[str, EngineStatus]]:
        """(owner, status) of one engine, or of all; a row that does not decode is
        quarantined and left out."""
        where, params = ("WHERE connection_id = ?", (connection_id,)) if connection_id else (
            "", ())
        rows = await self._db.fetch_all(
            f"SELECT connection_id, owner, status FROM engine_statuses {where} "
            "ORDER BY connection_id", params)
        return self._db.quarantine.decoded(
            "engine_statuses", rows, lambda r: (str(r[1]), status_from_json(str(r[2]))),
            key=lambda r: str(r[0]))

    async def changes(self) -> AsyncIterator[str | None]:
        """Engines whose row another member changed; None first (listening: load all) and
        after a gap (reload all)."""
        async with self._db.listen(CHANNEL) as feed:
            yield None
            async for notice in feed:
                if not notice.own:
                    yield None if notice.gap else notice.payload
