"""Encoded Connection messages, reused while the stored row is unchanged.

Encoding a Connection (enums, timestamps, nested messages) costs far more
than handing gRPC an existing message; rows change rarely and are read often.
Keyed by what changes on every write (revision and update time, and the
start of the last test, which is recorded without touching the row), so a
stale message is never served; bounded, so deleted rows do not pile up.
"""

from __future__ import annotations

from datetime import datetime

from cts.v1 import connection_pb2 as pb
from ctsd.api.connection_codec import encode_connection
from ctsd.connections.model import Connection
from ctsd.lru import LruCache

Key = tuple[str, int, datetime, datetime | None, bool]


class EncodedConnections:
    def __init__(self, max_entries: int = 4096) -> None:
        self._cache: LruCache[Key, pb.Connection] = LruCache(max_entries)

    def encode(self, conn: Connection, active: bool = False) -> pb.Connection:
        """The message for `conn`; callers must not mutate it."""
        tested = conn.last_test.started_at if conn.last_test else None
        key = (conn.id, conn.revision, conn.updated_at, tested, active)
        found = self._cache.get(key)
        if found is None:
            found = self._cache.put(key, encode_connection(conn, active))
        return found
