"""The change feed: a write unit announces what it changed, listeners hear it after COMMIT.

Several daemons share one database; each keeps read models in memory. A write
through one daemon must reach the others' read models quickly, without each
polling every table. So a write unit calls `tx.notify(channel, payload)`, and
whoever holds `Database.listen(channel)` receives the payload once the
transaction has committed (never for a rolled-back one):

- PostgreSQL: `pg_notify` in the same transaction; the server delivers on
  COMMIT to every session LISTENing, in commit order. Each `Database` keeps one
  dedicated LISTEN connection (`PgListener`), reconnecting when it drops.
- SQLite: delivered after COMMIT to the listeners of every `Database` open on the
  same file in this process (one process is the only writer of a SQLite file).

A listener must be able to tell that it missed something: a LISTEN connection
that dropped, or a listener too slow to keep up (its queue overflows). It then
receives a `Notice` with `gap=True` (and no payload), delivered only once the
feed listens again, so reloading on a gap sees every change from then on.

Use:

    async with db.listen("engines") as feed:     # listening once this returns
        model = await load()                      # so nothing after this is missed
        async for notice in feed:                 # ends when the database closes
            if notice.gap:
                model = await load()
            elif not notice.own:                  # our own writes published already
                model.apply(notice.payload)

Order: a channel's notices arrive in commit order (on SQLite, in the order of
each writing `Database`'s commits: two `Database`s on one file in one process,
a test's two fleet members, may interleave theirs differently). A writing
`Database`'s own notices (`own`) may arrive before or after its `publish` ran
(PostgreSQL delivers them on another connection): act on others' notices only.

Like PostgreSQL, identical (channel, payload) pairs within one transaction are
delivered once. A payload is text of at most `MAX_PAYLOAD_BYTES` bytes (UTF-8):
send ids, not rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar

log = logging.getLogger("ctsd.store")

MAX_PAYLOAD_BYTES = 7900
"""PostgreSQL's limit is 8000 bytes; both backends refuse more than this."""
MAX_QUEUED = 10_000
"""Notices a listener may leave unread before it is sent a gap instead."""
_CHANNEL = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class Notice:
    """One notification: `payload` from a committed write, or a `gap` (reload)."""

    channel: str
    payload: str = ""
    gap: bool = False
    own: bool = False
    """Sent by a write of this same `Database` (its publish already ran)."""


def check_notice(channel: str, payload: str) -> None:
    """Refuses what PostgreSQL would refuse, on both backends, at the call that made it."""
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"channel {channel!r}: lowercase letters, digits and _, "
                         "starting with a letter, at most 63")
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"notification payload over {MAX_PAYLOAD_BYTES} bytes")
    if "\x00" in payload:
        raise ValueError("notification payload contains NUL")


class Subscription:
    """One listener's queue of notices on one channel (see the module docstring)."""

    def __init__(self, feed: Feed, channel: str, max_queued: int = MAX_QUEUED) -> None:
        check_notice(channel, "")
        self.channel = channel
        self._max_queued = max_queued
        self._feed = feed
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue()
        self._ended = False

    async def __aenter__(self) -> Subscription:
        await self._feed.subscribe(self)
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._feed.unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Notice:
        if self._ended:
            raise StopAsyncIteration
        notice = await self._queue.get()
        if notice is None:
            self._ended = True
            raise StopAsyncIteration
        return notice

    def pending(self) -> int:
        return self._queue.qsize()

    def put(self, notice: Notice) -> None:
        """On the loop. A full queue (`max_queued` unread) is replaced by one gap."""
        if self._ended:
            return
        if self._queue.qsize() >= self._max_queued:
            while not self._queue.empty():
                self._queue.get_nowait()
            notice = Notice(self.channel, gap=True)
        self._queue.put_nowait(notice)

    def end(self) -> None:
        self._queue.put_nowait(None)


class Feed:
    """The subscriptions of one `Database`; the backend delivers into it on the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._subs: dict[str, set[Subscription]] = {}
        self._closed = False
        self.on_listen: Callable[[str], asyncio.Future[None] | None] = lambda channel: None
        """The backend's hook: listen on a channel (PostgreSQL: LISTEN), returning what to
        wait for while that is not yet in force (None: it is)."""

    @property
    def channels(self) -> list[str]:
        return sorted(ch for ch, subs in self._subs.items() if subs)

    async def subscribe(self, sub: Subscription) -> None:
        if self._closed:
            sub.end()
            return
        self._subs.setdefault(sub.channel, set()).add(sub)
        ready = self.on_listen(sub.channel)  # every subscriber waits: a second one too
        if ready is not None:
            try:
                await asyncio.shield(ready)
            except BaseException:
                self.unsubscribe(sub)
                raise

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.get(sub.channel, set()).discard(sub)

    def deliver(self, notice: Notice) -> None:
        """On the loop."""
        for sub in list(self._subs.get(notice.channel, ())):
            sub.put(notice)

    def deliver_threadsafe(self, notices: list[Notice]) -> None:
        def run() -> None:
            for notice in notices:
                self.deliver(notice)

        with contextlib.suppress(RuntimeError):  # a closed loop: nobody listens
            self.loop.call_soon_threadsafe(run)

    def gap(self) -> None:
        """Every listener may have missed notices (on the loop)."""
        for channel, subs in self._subs.items():
            for sub in list(subs):
                sub.put(Notice(channel, gap=True))

    def close(self) -> None:
        """Ends every listener's iteration."""
        self._closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.end()
        self._subs.clear()


class FileFeeds:
    """SQLite: the feeds of every `Database` open on one file in this process."""

    _by_file: ClassVar[dict[str, weakref.WeakSet[Feed]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()  # writers' threads read it, loops change it

    @classmethod
    def join(cls, path: str, feed: Feed) -> None:
        with cls._lock:
            cls._by_file.setdefault(path, weakref.WeakSet()).add(feed)

    @classmethod
    def leave(cls, path: str, feed: Feed) -> None:
        with cls._lock:
            cls._by_file.get(path, weakref.WeakSet()).discard(feed)

    @classmethod
    def committed(cls, path: str, origin: Feed, notes: list[tuple[str, str]]) -> None:
        """From the writer thread, right after COMMIT."""
        if not notes:
            return
        with cls._lock:
            feeds = list(cls._by_file.get(path, ()))
        for feed in feeds:
            feed.deliver_threadsafe([Notice(ch, payload, own=feed is origin)
                                     for ch, payload in notes])
