"""Pages of an engine's orders and trades, from the engine manager (the domain), in process."""

from __future__ import annotations

import pytest

from ctsd.engine.paging import MAX_PAGE_SIZE, page_request, page_token
from ctsd.errors import InvalidArgument, NotFound
from tests.engine.world import SMA_CLOSES, World, sma


@pytest.mark.asyncio
async def test_orders_and_trades_page_through_every_row_once() -> None:
    w = World({"a": SMA_CLOSES})
    async with w.manager:
        await w.manager.start("a", sma())
        await w.clock.advance(12 * 60 + 1)  # three orders, three fills
        first = await w.manager.list_orders("a", open_only=False, page_size=2, page_token="")
        rest = await w.manager.list_orders("a", open_only=False, page_size=2,
                                           page_token=first.next_page_token)
        assert (len(first.items), len(rest.items), rest.next_page_token) == (2, 1, "")
        ids = [o.client_order_id for o in [*first.items, *rest.items]]
        assert len(set(ids)) == 3
        trades = await w.manager.list_trades("a", page_size=0, page_token="")
        assert len(trades.items) == 3 and trades.next_page_token == ""
        with pytest.raises(NotFound, match="no engine on connections/b"):
            await w.manager.list_trades("b", page_size=0, page_token="")
        await w.manager.stop("a")


def test_a_page_request_is_checked_and_a_token_round_trips() -> None:
    assert page_request(0, "") == (0, 100)
    assert page_request(5000, page_token(41)) == (41, MAX_PAGE_SIZE)
    assert page_token(None) == ""
    with pytest.raises(InvalidArgument, match="page_size"):
        page_request(-1, "")
    for garbage in ("garbage", page_token(3)[:-2] + "!!", "cDE="[::-1]):
        with pytest.raises(InvalidArgument, match="page_token"):
            page_request(10, garbage)
