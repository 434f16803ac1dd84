from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from ctsd.engine.config import TradingMode
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.watch import Changed, Heartbeat, Snapshot, StatusHub


def status(connection_id: str, cycles: int = 0) -> EngineStatus:
    return EngineStatus(connection_id, "e1", EngineState.RUNNING, TradingMode.PAPER, "grid",
                        ("BTC/USDT",), cycles=cycles)


@pytest.mark.asyncio
async def test_a_watcher_gets_a_snapshot_first_then_each_change() -> None:
    hub = StatusHub()
    hub.publish(status("b"))
    hub.publish(status("a"))
    watcher = hub.subscribe()
    first = await watcher.next_event()
    assert first == Snapshot((status("a"), status("b")))
    hub.publish(status("a", cycles=1))
    hub.heartbeat(123)
    assert await watcher.next_event() == Changed(status("a", cycles=1))
    assert await watcher.next_event() == Heartbeat(123)


@pytest.mark.asyncio
async def test_a_waiting_watcher_wakes_on_publish() -> None:
    hub = StatusHub()
    watcher = hub.subscribe()
    await watcher.next_event()
    pending = asyncio.ensure_future(watcher.next_event())
    await asyncio.sleep(0)
    assert not pending.done()
    hub.publish(status("a"))
    assert await asyncio.wait_for(pending, 1) == Changed(status("a"))


@pytest.mark.asyncio
async def test_a_watcher_that_never_reads_stays_bounded_and_is_resynced() -> None:
    hub = StatusHub(capacity=8)
    slow = hub.subscribe()
    await slow.next_event()
    names = [f"e{i}" for i in range(10)]
    for cycle in range(1_000):
        for name in names:
            hub.publish(status(name, cycles=cycle))
            assert slow.backlog <= 8
    event = await slow.next_event()
    assert event == Snapshot(tuple(status(n, cycles=999) for n in sorted(names)), resync=True)
    assert slow.resyncs == 1  # once marked, later changes are folded into the snapshot
    hub.publish(status("a", cycles=10_000))
    assert await slow.next_event() == Changed(status("a", cycles=10_000))


@pytest.mark.asyncio
async def test_a_queued_change_of_an_engine_is_replaced_by_its_newer_status() -> None:
    hub = StatusHub(capacity=2)
    watcher = hub.subscribe()
    await watcher.next_event()
    for cycle in range(100):  # a burst of one engine's cycles fits in one slot
        hub.publish(status("a", cycles=cycle))
        hub.publish(status("b", cycles=cycle))
    assert watcher.resyncs == 0
    assert await watcher.next_batch() == (Changed(status("a", cycles=99)),
                                          Changed(status("b", cycles=99)))


@pytest.mark.asyncio
async def test_one_slow_watcher_does_not_affect_a_fast_one() -> None:
    hub = StatusHub(capacity=2)
    slow, fast = hub.subscribe(), hub.subscribe()
    await slow.next_event()
    await fast.next_event()
    seen = []
    for cycle in range(5):
        hub.publish(status(f"e{cycle}", cycles=cycle))
        event = await fast.next_event()
        assert isinstance(event, Changed)
        seen.append(event.status.cycles)
    assert seen == [0, 1, 2, 3, 4]
    assert fast.resyncs == 0 and slow.resyncs > 0


def test_closing_unsubscribes() -> None:
    hub = StatusHub()
    watcher = hub.subscribe()
    assert hub.watcher_count == 1
    watcher.close()
    assert hub.watcher_count == 0
    hub.publish(replace(status("a"), cycles=3))  # nobody to tell: must not fail


@pytest.mark.asyncio
async def test_a_batch_read_takes_everything_queued_in_order() -> None:
    hub = StatusHub()
    watcher = hub.subscribe()
    assert await watcher.next_batch() == Snapshot(())
    hub.publish(status("a", cycles=1))
    hub.heartbeat(5)
    hub.publish(status("b", cycles=1))
    assert await watcher.next_batch() == (
        Changed(status("a", cycles=1)), Heartbeat(5), Changed(status("b", cycles=1)))
    assert watcher.backlog == 0
    pending = asyncio.ensure_future(watcher.next_batch())
    await asyncio.sleep(0)
    assert not pending.done()  # an empty queue waits, it never returns an empty batch
    hub.publish(status("a", cycles=2))
    assert await asyncio.wait_for(pending, 1) == (Changed(status("a", cycles=2)),)
