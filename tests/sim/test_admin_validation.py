"""The admin API refuses every bad value with a 400 and nothing changes: a class hunt.

Each admin endpoint that takes a body gets, field by field, every value in `BAD`
(wrong types, NaN and infinities as JSON tokens and as text, negatives, absurd
magnitudes, empty and huge text) plus unknown fields and bodies that are not
objects. Every answer must be a 400; afterwards the venues still answer normally
and no fault, account or price was left behind by a refused call.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from ctsd.sim.server import SimulatorServer
from tests.robustness.tally import Tally

BAD: tuple[Any, ...] = (
    None, True, [], {}, "", "x" * 5000, "abc", "NaN", "Infinity", "-1", -1, 0.5e400,
    float("nan"), float("inf"), -float("inf"), 10**30, -10**30, "1e999999999",
)
VALID: dict[str, dict[str, Any]] = {
    "faults": {"kind": "server_error", "count": 1, "venue": "binance",
               "path_prefix": "/api/", "method": "GET", "status": 502, "delay_s": 0.1,
               "retry_after_s": 1},
    "accounts": {"api_key": "admin-check-key", "secret": "admin-check-secret",
                 "passphrase": "p", "balances": {"spot": {"USDT": "10"}},
                 "permissions": ["read"], "ip_whitelist": ["127.0.0.1"], "uid": 7,
                 "leverage": 5},
    "price": {"symbol": "BTC/USDT", "price": "50000"},
    "advance": {"seconds": 1},
    "fills": {"split": 3},
}


TEXT = frozenset({"api_key", "secret", "passphrase"})
"""Any string of 1 to 256 characters is a valid key or secret."""
OPTIONAL = frozenset({"venue", "path_prefix", "method", "passphrase", "uid"})


def acceptable(key: str, value: Any) -> bool:
    """Whether `value` is in fact fine for `key` (so not a refusal to test for)."""
    if value is None:
        return key in OPTIONAL
    if value in ({}, []):
        return key in ("balances", "permissions", "ip_whitelist")
    return key in TEXT and isinstance(value, str) and 0 < len(value) <= 256


def bodies(valid: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Every field of `valid` set to each bad value, unknown fields, non-objects."""
    found = [(f"{key}={value!r}"[:60], json.dumps({**valid, key: value}).encode())
             for key in valid for value in BAD
             if value != valid[key] and not acceptable(key, value)]
    found += [(f"without {key}", json.dumps({k: v for k, v in valid.items() if k != key})
               .encode()) for key in valid if key in ("kind", "api_key", "secret", "symbol",
                                                      "price", "seconds", "split")]
    found += [("unknown field", json.dumps({**valid, "surprise": 1}).encode()),
              ("a list", b"[1, 2]"), ("not JSON", b"{"), ("binary", b"\xff\xfe\x00"),
              ("nested balance", json.dumps({**valid, "balances": {"spot": {"X": "NaN"}}})
               .encode())]
    return found


@pytest.mark.asyncio
async def test_every_bad_admin_value_is_a_400_and_changes_nothing(
        server: SimulatorServer) -> None:
    tally = Tally("simulator admin: bad values")
    base = f"{server.base_url}/admin"
    async with aiohttp.ClientSession() as http:
        for endpoint, valid in VALID.items():
            for name, body in bodies(valid):
                async with http.post(f"{base}/{endpoint}", data=body,
                                     headers={"Content-Type": "application/json"}) as answer:
                    tally.tried += 1
                    if answer.status == 400:
                        tally.survived += 1
                    else:
                        tally.lost += 1
                        tally.notes.append(f"{endpoint} {name}: {answer.status}")
        async with http.get(f"{base}/faults") as answer:
            left = await answer.json()
        async with http.get(f"{server.base_url}/binance/api/v3/time") as answer:
            venue = answer.status
        async with http.get(f"{base}/price", params={"symbol": "BTC/USDT"}) as answer:
            price = answer.status, await answer.text()
        split = server.sim.fill_split
        for endpoint, valid in VALID.items():  # the valid forms are accepted
            async with http.post(f"{base}/{endpoint}", json=valid) as answer:
                assert answer.status in (200, 201), (endpoint, await answer.text())
    tally.notes.insert(0, f"{len(VALID)} endpoints; faults left {len(left)}; "
                          f"a venue answers {venue}; price {price}")
    tally.report()
    assert tally.lost == 0, tally.notes
    assert left == [], left
    assert split == 1 and server.sim.fill_split == 3  # refused: unchanged; valid: taken
    assert venue == 200 and price[0] == 200 and float(json.loads(price[1])["price"]) > 0
