"""The fleet's servers as the tests get them: real PostgreSQL and Redis, private or given."""

from __future__ import annotations

import uuid

import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from tests.support.servers import PrivateRedis

pytestmark = pytest.mark.asyncio


async def test_postgres_round_trip_in_a_transaction(postgres_url: str) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"
    async with AsyncConnectionPool(postgres_url, min_size=1, max_size=2, open=False) as pool:
        async with pool.connection() as conn, conn.transaction():
            await conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
            await conn.execute(f"INSERT INTO {table} VALUES (%s, %s)", (1, "ünïcode"))
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT name FROM {table} WHERE id = %s", (1,))
            assert await cur.fetchone() == ("ünïcode",)
            with pytest.raises(psycopg.errors.UniqueViolation):
                await conn.execute(f"INSERT INTO {table} VALUES (1, 'again')")
            await conn.rollback()
            await conn.execute(f"DROP TABLE {table}")
            await conn.commit()


async def test_postgres_notify_reaches_a_listener(postgres_url: str) -> None:
    channel = f"c_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {channel}")
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as talker:
            await talker.execute("SELECT pg_notify(%s, %s)", (channel, "engine 7 moved"))
        notifies = listener.notifies(timeout=10.0, stop_after=1)
        received = [n async for n in notifies]
    assert [(n.channel, n.payload) for n in received] == [(channel, "engine 7 moved")]


async def test_redis_round_trip_and_a_lua_script(redis_url: str) -> None:
    key = f"test:{uuid.uuid4().hex}"
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.set(key, "3", px=60_000)
        add = client.register_script(
            "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
            "local t = redis.call('TIME') return {v, tonumber(t[1])}")
        value, server_s = await add(keys=[key], args=[4])
        assert value == 7 and server_s > 1_600_000_000
        assert await client.get(key) == b"7"
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_private_redis_killed_drops_clients_and_comes_back_empty(
        private_redis: PrivateRedis) -> None:
    client = aioredis.Redis.from_url(private_redis.url, socket_timeout=2)
    try:
        await client.set("kept", "1")
        private_redis.kill()
        with pytest.raises(aioredis.ConnectionError):
            await client.ping()
        private_redis.start()  # on this thread: the server dies with the thread that started it
        assert await client.ping()
        assert await client.get("kept") is None
    finally:
        await client.aclose()
