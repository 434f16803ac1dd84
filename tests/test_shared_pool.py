"""SharedPool: counts that hold under every interleaving and cancellation point.

The class of defect hunted: a holder count updated from a value read before an
await (a lost update), and a cancelled acquire or release that leaves the count
wrong. Seeded schedules of many holders on a few keys, with makes and disposes
that yield a random number of times and cancellations at random yields; at every
step no holder sees a disposed instance, and at the end nothing is held and every
instance made was disposed exactly once.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from ctsd.shared_pool import SharedPool

SCHEDULES = 200


class Instance:
    def __init__(self, key: str) -> None:
        self.key = key
        self.disposals = 0


class Venue:
    """Makes and disposes of instances, yielding as a real client's open and close do."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.made: list[Instance] = []

    async def make(self, key: str) -> Instance:
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)
        instance = Instance(key)
        self.made.append(instance)
        return instance

    async def dispose(self, instance: Instance) -> None:
        instance.disposals += 1
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)


async def hold(pool: SharedPool[str, Instance], key: str, steps: int,
               seen_disposed: list[Instance]) -> None:
    instance = await pool.acquire(key)
    try:
        for _ in range(steps):
            if instance.disposals:
                seen_disposed.append(instance)
            await asyncio.sleep(0)
    finally:
        await pool.release(key)


async def one_schedule(seed: int) -> None:
    rng = random.Random(seed)
    venue = Venue(rng)
    pool: SharedPool[str, Instance] = SharedPool(venue.make, venue.dispose)
    seen_disposed: list[Instance] = []
    keys = ["binance", "okx", "kraken"][: rng.randrange(1, 4)]
    tasks = [asyncio.create_task(hold(pool, rng.choice(keys), rng.randrange(8), seen_disposed))
             for _ in range(rng.randrange(2, 30))]
    for _ in range(rng.randrange(40)):
        await asyncio.sleep(0)
        if rng.random() < 0.3:
            rng.choice(tasks).cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert not seen_disposed, "a holder used an instance after it was disposed"
    assert all(pool.users(k) == 0 for k in keys), {k: pool.users(k) for k in keys}
    assert [i.disposals for i in venue.made] == [1] * len(venue.made)


@pytest.mark.asyncio
@pytest.mark.parametrize("block", range(4))
async def test_counts_hold_under_random_interleavings_and_cancellations(block: int) -> None:
    for seed in range(block * SCHEDULES, (block + 1) * SCHEDULES):
        await one_schedule(seed)


@pytest.mark.asyncio
async def test_a_release_of_what_nobody_holds_is_refused() -> None:
    venue = Venue(random.Random(0))
    pool: SharedPool[str, Instance] = SharedPool(venue.make, venue.dispose)
    with pytest.raises(KeyError):
        await pool.release("binance")
