"""WatchEngines over a real loopback gRPC server through a seeded storm of status changes:
watchers reading at full speed, two slowed down, one that reads nothing till the end.
Coalescing, merged frames and resyncs may skip intermediate states; none may lose an
engine's final one or go back a version: every watcher ends with exactly what
ListEngines answers. (The hub's own resync of a watcher behind the frames kept is
proved in tests/engine/test_watch.py: here gRPC's buffers may absorb the stall.)"""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

import pytest

from cts.engine_events import changed_engines
from cts.v1 import engine_service_pb2 as pb
from cts.v1 import engine_service_pb2_grpc as sgrpc
from ctsd.engine.config import TradingMode
from ctsd.engine.manager import EngineManager
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.watch import StatusHub
from tests.api.test_engine_servicer import served
from tests.engine.world import REGISTRY, World

ENGINES = 40
CHANGES = 3_000


class View:
    """What one client keeps of WatchEngines: the engines by name, never a version back
    except through a snapshot."""

    def __init__(self) -> None:
        self.engines: dict[str, pb.Engine] = {}
        self.resyncs = 0
        self.messages = 0

    def apply(self, event: pb.WatchEnginesResponse) -> None:
        self.messages += 1
        if event.WhichOneof("event") == "snapshot":
            self.resyncs += event.snapshot.resync
            self.engines = {e.name: e for e in event.snapshot.engines}
            return
        for engine in changed_engines(event):
            old = self.engines.get(engine.name)
            assert old is None or old.version <= engine.version, (old, engine)
            self.engines[engine.name] = engine


def status(index: int, version: int, rng: random.Random) -> EngineStatus:
    return EngineStatus(f"c{index:03d}", f"e{index:03d}", EngineState.RUNNING, TradingMode.PAPER,
                        "grid", ("BTC/USDT",), cycles=version, version=version,
                        realized_pnl=Decimal(rng.randrange(10**12)) / 10**6,
                        last_error="x" * rng.randrange(4_000))


async def follow(stub: sgrpc.EngineServiceAsyncStub, view: View, pause_s: float,
                 opened: asyncio.Event, until: asyncio.Event, current: asyncio.Event,
                 expected: dict[str, pb.Engine]) -> None:
    """Reads into `view` (`opened` once the snapshot is in); after `until` is set, sets
    `current` once the view is `expected`."""
    call = stub.WatchEngines(pb.WatchEnginesRequest())
    async for event in call:
        view.apply(event)
        opened.set()
        if until.is_set() and view.engines == expected:
            current.set()
            return
        if pause_s:
            await asyncio.sleep(pause_s)  # a slow client: load, not a wait for an outcome


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [3, 11])
async def test_every_watcher_ends_with_every_engines_final_state(seed: int) -> None:
    rng = random.Random(seed)
    world = World({})
    hub = StatusHub(capacity=64, messages_per_s=400)  # 8 watchers: a frame per 20 ms
    manager = EngineManager(world.store, world.backend, REGISTRY, clock=world.clock, hub=hub)
    versions = [0] * ENGINES
    async with served(manager) as stub:
        views = [View() for _ in range(8)]
        stalled = View()
        over, expected = asyncio.Event(), dict[str, pb.Engine]()
        opened = [asyncio.Event() for _ in views]
        current = [asyncio.Event() for _ in views]
        pauses = [0.0] * 6 + [0.005, 0.02]
        readers = [asyncio.create_task(follow(stub, v, p, o, over, c, expected))
                   for v, p, o, c in zip(views, pauses, opened, current, strict=True)]
        stalled_call = stub.WatchEngines(pb.WatchEnginesRequest())
        try:
            first = await stalled_call.read()
            assert isinstance(first, pb.WatchEnginesResponse)
            stalled.apply(first)  # the first snapshot, then nothing till the storm is over
            async with asyncio.timeout(60):  # a bound: each step below awaits its outcome
                for started in opened:
                    await started.wait()
                for step in range(CHANGES):
                    index = rng.randrange(ENGINES)
                    versions[index] += 1
                    hub.publish(status(index, versions[index], rng))
                    if step % 25 == 0:
                        await asyncio.sleep(0.002)  # the storm lasts a few frame intervals
                    elif rng.random() < 0.3:
                        await asyncio.sleep(0)
                listed = await stub.ListEngines(pb.ListEnginesRequest())
                expected.update((e.name, e) for e in listed.engines)
                assert [e.version for e in listed.engines] == [v for v in versions if v]
                over.set()
                for view, caught_up in zip(views, current, strict=True):
                    if view.engines == expected:  # current before `over`: no message follows
                        caught_up.set()
                    await caught_up.wait()
                while stalled.engines != expected:
                    read = await stalled_call.read()
                    assert isinstance(read, pb.WatchEnginesResponse), read  # not EOF
                    stalled.apply(read)
        finally:
            stalled_call.cancel()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
    for view in [*views, stalled]:
        assert view.engines == expected
    assert all(v.messages < CHANGES // 4 for v in views)  # coalesced, not one per change
