from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ctsd.engine.orders import client_order_id, is_engine_order

OKX_CLIENT_ID = re.compile(r"^[A-Za-z0-9]{1,32}$")


def test_the_id_is_a_pure_function_of_engine_cycle_and_index() -> None:
    assert client_order_id("a1b2c3d4", 26, 3) == "ctsa1b2c3d4c1ai3"
    assert client_order_id("a1b2c3d4", 26, 3) == client_order_id("a1b2c3d4", 26, 3)


@given(st.integers(0, 10**12), st.integers(0, 999), st.integers(0, 10**12), st.integers(0, 999))
def test_ids_are_unique_and_fit_every_venue(c1: int, i1: int, c2: int, i2: int) -> None:
    first, second = client_order_id("a1b2c3d4", c1, i1), client_order_id("a1b2c3d4", c2, i2)
    assert (first == second) == ((c1, i1) == (c2, i2))
    assert OKX_CLIENT_ID.match(first)
    assert is_engine_order(first)


def test_foreign_orders_are_not_ours() -> None:
    assert not is_engine_order("web_1234")
    assert not is_engine_order("ctsX")
