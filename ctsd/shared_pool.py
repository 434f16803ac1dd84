"""One shared instance per key, counted by its holders and closed by the last one.

Why its own module: a count kept beside an await is a lost update waiting to happen.
The engine backend once read `(client, users)`, awaited the close of a spare client,
then wrote `users + 1` from what it had read: an engine stopping meanwhile was
forgotten, the count reached zero while engines still held the client, and they
failed on a closed client (and StopEngine on a missing entry). Here every change to
a count happens with no await between its read and its write, and an acquirer
that awaited (to make an instance) looks again before it counts itself in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedPool(Generic[K, V]):
    """`acquire(key)` hands out the key's instance, making it on first use; every
    acquire is matched by one `release(key)`, and the last release disposes of it.

    A caller cancelled while `acquire` makes or discards an instance holds nothing
    (the count was not touched); a release never awaits before it has counted
    itself out, so a cancelled release still counts.
    """

    def __init__(self, make: Callable[[K], Awaitable[V]],
                 dispose: Callable[[V], Awaitable[None]]) -> None:
        self._make = make
        self._dispose = dispose
        self._held: dict[K, tuple[V, int]] = {}

    def users(self, key: K) -> int:
        held = self._held.get(key)
        return held[1] if held else 0

    async def acquire(self, key: K) -> V:
        while True:
            held = self._held.get(key)
            if held is not None:
                self._held[key] = (held[0], held[1] + 1)
                return held[0]
            made = await self._make(key)
            if key not in self._held:
                self._held[key] = (made, 1)
                return made
            # Another acquirer made one meanwhile: use theirs (looked up again after
            # the dispose, which may have let theirs go in the meantime).
            await self._dispose(made)

    async def release(self, key: K) -> None:
        held = self._held.get(key)
        if held is None:
            raise KeyError(f"release of {key!r}, which nobody holds")
        value, users = held
        if users > 1:
            self._held[key] = (value, users - 1)
            return
        del self._held[key]
        await self._dispose(value)
