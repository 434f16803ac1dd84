"""A loopback TCP proxy in front of a PostgreSQL server that can cut a client off at its
COMMIT: the real fault of a network that fails between a commit and its answer.

`arm(answered=True)`: the next COMMIT a client sends reaches the server, the server's
answer is swallowed and both connections are closed (the transaction committed, the
client cannot know). `arm(answered=False)`: the COMMIT never reaches the server (the
server sees its client vanish mid-transaction and rolls back).
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs, urlsplit, urlunsplit

CHUNK = 65536


class CommitCutter:
    def __init__(self, server_url: str) -> None:
        parts = urlsplit(server_url)
        host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
        port = parts.port or 5432
        self._unix = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else None
        self._tcp = (host, port)
        self._server: asyncio.Server | None = None
        self._armed: bool | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.cuts = 0

    async def start(self) -> CommitCutter:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return self

    def url(self, server_url: str) -> str:
        """`server_url` (its database and user) reached through the proxy."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        parts = urlsplit(server_url)
        query = "&".join(f"{k}={v[0]}" for k, v in parse_qs(parts.query).items() if k != "host")
        return urlunsplit(parts._replace(
            netloc=f"{parts.username or 'postgres'}@127.0.0.1:{port}", query=query))

    def arm(self, answered: bool) -> None:
        self._armed = answered

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):  # the pumps see EOF and end: no task cancelled
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            self._writers.add(writer)
            if self._unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self._unix)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self._tcp)
            self._writers.add(up_writer)
            swallow = asyncio.Event()
            pumps = [asyncio.ensure_future(self._upstream(reader, up_writer, swallow)),
                     asyncio.ensure_future(self._downstream(up_reader, writer, swallow))]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
                self._writers.discard(w)
        finally:
            self._tasks.discard(task)

    async def _upstream(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter,
                        swallow: asyncio.Event) -> None:
        while chunk := await reader.read(CHUNK):
            if self._armed is not None and b"COMMIT" in chunk:
                answered, self._armed = self._armed, None
                self.cuts += 1
                if not answered:
                    return  # the COMMIT never leaves: both sides closed
                swallow.set()  # the server's answer to it is dropped, then both closed
            up.write(chunk)
            await up.drain()

    async def _downstream(self, up: asyncio.StreamReader, writer: asyncio.StreamWriter,
                          swallow: asyncio.Event) -> None:
        while chunk := await up.read(CHUNK):
            if swallow.is_set():
                return
            writer.write(chunk)
            await writer.drain()
