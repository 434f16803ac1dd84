"""`LruCache` keeps its bound and forgets the least recently used entry first."""

from __future__ import annotations

import random

import pytest

from ctsd.lru import LruCache


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


def test_random_use_never_passes_the_bound_and_keeps_the_recent_entries() -> None:
    rng = random.Random(7)
    cache: LruCache[int, int] = LruCache(16)
    recent: list[int] = []
    for _ in range(5_000):
        key = rng.randrange(64)
        if rng.random() < 0.5:
            cache.put(key, key)
        elif cache.get(key) is None:
            continue
        recent = [k for k in recent if k != key] + [key]
        assert len(cache) <= 16
    for key in recent[-16:]:
        assert cache.get(key) == key


def test_a_cache_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        LruCache(0)
