"""An in-memory read model of the connections table.

The daemon is the only writer of its database (the instance lock keeps
`rotate-key` and a second daemon out), so the repository can serve reads from
memory and update this index after each commit. Reads then cost no thread hop
into SQLite and no row decoding: the difference between a 100-row list in
3 ms and in 0.2 ms.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from ctsd.connections.filtering import Condition, matches_all
from ctsd.connections.model import Connection


class ConnectionIndex:
    """Connections by id and in creation order (the table's `seq`)."""

    def __init__(self) -> None:
        self._seqs: list[int] = []
        self._by_seq: dict[int, Connection] = {}
        self._seq_of: dict[str, int] = {}

    def put(self, seq: int, conn: Connection) -> None:
        if seq not in self._by_seq:
            bisect.insort(self._seqs, seq)
        self._by_seq[seq] = conn
        self._seq_of[conn.id] = seq

    def replace(self, conn: Connection) -> None:
        self._by_seq[self._seq_of[conn.id]] = conn

    def remove(self, connection_id: str) -> None:
        seq = self._seq_of.pop(connection_id, None)
        if seq is not None:
            del self._by_seq[seq]
            self._seqs.pop(bisect.bisect_left(self._seqs, seq))

    def get(self, connection_id: str) -> Connection | None:
        seq = self._seq_of.get(connection_id)
        return None if seq is None else self._by_seq[seq]

    def _after(self, after: int) -> Iterator[tuple[int, Connection]]:
        for i in range(bisect.bisect_right(self._seqs, after), len(self._seqs)):
            seq = self._seqs[i]
            yield seq, self._by_seq[seq]

    def page(
        self, conditions: Sequence[Condition], after: int, limit: int
    ) -> tuple[list[Connection], int | None]:
        """Up to `limit` matches after position `after`, and where the next page starts."""
        found: list[Connection] = []
        last = 0
        for seq, conn in self._after(after):
            if matches_all(conditions, conn):
                if len(found) == limit:
                    return found, last
                found.append(conn)
                last = seq
        return found, None

    def count(self, conditions: Sequence[Condition]) -> int:
        if not conditions:
            return len(self._seqs)
        return sum(1 for conn in self._by_seq.values() if matches_all(conditions, conn))

    def __len__(self) -> int:
        return len(self._seqs)
