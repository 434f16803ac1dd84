"""Which rate-limit scopes a connection's health shows: its exchange's IP scopes and its own."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ctsd.connections.model import Connection, CredentialsInfo
from ctsd.health.report import scopes_of
from ctsd.ratelimit import BucketSpec, RateLimiter, ScopeKey
from tests.store.test_connection_index import conn

SPEC = BucketSpec(100, 1.0)


def connection(hint: str, account_uid: str | None = None) -> Connection:
    return replace(conn("a", "bybit"), account_uid=account_uid,
                   credentials=CredentialsInfo(api_key_set=True, api_key_hint=hint))


@pytest.mark.asyncio
async def test_a_connection_sees_its_key_or_its_uid_scopes_and_the_exchanges_ip_scopes() -> None:
    async with RateLimiter() as limiter:
        for key in (ScopeKey.ip("bybit", "ip"), ScopeKey.ip("okx", "ip"),
                    ScopeKey.account("bybit", "orders", "f1", "****1234"),
                    ScopeKey.account("bybit", "orders", "f2", "****9999"),
                    ScopeKey.uid("bybit", "orders", "5001"),
                    ScopeKey.uid("bybit", "orders", "5002")):
            limiter.bucket(key, SPEC)
        usage = limiter.snapshot()
        shown = {u.key.display for u in scopes_of(connection("****1234"), usage)}
        assert shown == {"ip", "key ****1234"}
        shown = {u.key.display for u in scopes_of(connection("****1234", "5001"), usage)}
        assert shown == {"ip", "key ****1234", "uid 5001"}
