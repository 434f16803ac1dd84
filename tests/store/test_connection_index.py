"""The in-memory read model pages in creation order and follows every write."""

from __future__ import annotations

from datetime import UTC, datetime

from ctsd.connections.filtering import Condition
from ctsd.connections.model import (
    ApiType,
    Connection,
    CredentialsInfo,
    MarginMode,
    MarketDataMethod,
    PositionMode,
)
from ctsd.store.connection_index import ConnectionIndex

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def conn(cid: str, exchange: str = "binance", enabled: bool = True) -> Connection:
    return Connection(
        id=cid,
        display_name=cid,
        exchange=exchange,
        api_type=ApiType.SPOT,
        testnet=False,
        margin_mode=MarginMode.CROSS,
        position_mode=PositionMode.ONE_WAY,
        market_data_method=MarketDataMethod.REST,
        enabled=enabled,
        predefined=False,
        credentials=CredentialsInfo(),
        created_at=NOW,
        updated_at=NOW,
        revision=1,
    )


def test_pages_follow_creation_order_with_filters() -> None:
    index = ConnectionIndex()
    for seq, cid in enumerate(["a", "b", "c", "d", "e"], start=1):
        index.put(seq, conn(cid, enabled=cid != "c"))
    enabled = (Condition("enabled", True),)
    first, after = index.page(enabled, 0, 2)
    assert [c.id for c in first] == ["a", "b"] and after == 2
    second, after = index.page(enabled, after, 2)
    assert [c.id for c in second] == ["d", "e"] and after is None
    assert index.count(enabled) == 4 and index.count(()) == 5


def test_replace_and_remove_are_visible() -> None:
    index = ConnectionIndex()
    index.put(1, conn("a"))
    index.put(2, conn("b"))
    index.replace(conn("a", exchange="okx"))
    index.remove("b")
    assert index.get("a") is not None and index.get("a").exchange == "okx"  # type: ignore[union-attr]
    assert index.get("b") is None and len(index) == 1
    assert index.page((Condition("exchange", "binance", negate=True),), 0, 10)[0][0].id == "a"
