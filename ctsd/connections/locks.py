"""One lock per connection id, shared by the use cases that must not interleave.

Deleting a connection and starting an engine on it each check the other's
state and then act; without a common lock a delete could pass its "no engine
runs here" check just before a start passes its "the connection exists" one,
and leave an engine trading on a deleted key.
"""

from __future__ import annotations

import asyncio
import weakref


class ConnectionLocks:
    def __init__(self) -> None:
        # Weak values: a lock lives only while somebody holds or waits for it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def lock(self, connection_id: str) -> asyncio.Lock:
        found = self._locks.get(connection_id)
        if found is None:
            found = self._locks[connection_id] = asyncio.Lock()
        return found
