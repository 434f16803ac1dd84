from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import replace

import pytest

from ctsd.engine.config import TradingMode
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.engine.watch import Changed, FrameBudget, Heartbeat, Queued, Snapshot, StatusHub


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
async def test_a_watcher_that_never_reads_costs_nothing_and_is_resynced() -> None:
    hub = StatusHub(capacity=8)
    slow, fast = hub.subscribe(), hub.subscribe()
    await slow.next_event()
    await fast.next_event()
    names = [f"e{i}" for i in range(10)]
    for cycle in range(1_000):
        for name in names:
            hub.publish(status(name, cycles=cycle))
        await fast.next_batch()  # frames are cut while the slow one reads nothing
        assert hub.kept <= len(names)  # the newest frame, never more than the capacity's
    event = await slow.next_event()
    assert event == Snapshot(tuple(status(n, cycles=999) for n in sorted(names)), resync=True)
    assert slow.resyncs == 1 and fast.resyncs == 0
    hub.publish(status("a", cycles=10_000))
    assert await slow.next_event() == Changed(status("a", cycles=10_000))


@pytest.mark.asyncio
async def test_without_a_reader_changes_wait_in_one_slot_per_engine() -> None:
    hub = StatusHub()
    idle = hub.subscribe()
    await idle.next_event()
    for cycle in range(1_000):
        for name in ("a", "b", "c"):
            hub.publish(status(name, cycles=cycle))
        hub.heartbeat(cycle)
    assert idle.backlog == 4
    assert await idle.next_batch() == (*(Changed(status(n, cycles=999)) for n in "abc"),
                                       Heartbeat(999))


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


def apply(view: dict[str, EngineStatus], read: Snapshot | tuple[Queued, ...]) -> None:
    """What a client keeps: a snapshot replaces its view; a change updates one engine and
    never takes it back to an older version."""
    if isinstance(read, Snapshot):
        view.clear()
        view.update((s.connection_id, s) for s in read.statuses)
        return
    for event in read:
        if isinstance(event, Changed):
            old = view.get(event.status.connection_id)
            assert old is None or old.version <= event.status.version
            view[event.status.connection_id] = event.status


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", range(6))
async def test_a_storm_of_changes_never_loses_an_engines_final_state(seed: int) -> None:
    """Seeded: engines change in bursts between loop turns while watchers read at their
    own pace (every turn, every few turns, one stalled till the end); whatever they
    skipped, merged or resynced, each ends with the hub's final state of every engine."""
    rng = random.Random(seed)
    hub = StatusHub(capacity=rng.choice([5, 40, 400]))
    names = [f"e{i:02d}" for i in range(rng.randint(5, 30))]
    versions = dict.fromkeys(names, 0)
    paces = [0, 1, 3, 17]
    watchers = [hub.subscribe() for _ in paces]
    views: list[dict[str, EngineStatus]] = [{} for _ in paces]
    stalled = hub.subscribe()
    stalled_view: dict[str, EngineStatus] = {}
    apply(stalled_view, await stalled.next_batch())

    async def read(index: int) -> None:
        while True:
            apply(views[index], await watchers[index].next_batch())
            for _ in range(paces[index]):
                await asyncio.sleep(0)

    readers = [asyncio.create_task(read(i)) for i in range(len(paces))]
    try:
        for step in range(3_000):
            name = rng.choice(names)
            versions[name] += 1
            hub.publish(replace(status(name, cycles=versions[name]), version=versions[name]))
            if step % 97 == 0:
                hub.heartbeat(step)
            for _ in range(rng.choice([0, 0, 0, 1, 2])):
                await asyncio.sleep(0)
        for _ in range(1_000):  # bounded: readers drain what is left, loop turn by turn
            if all(w.backlog == 0 for w in watchers):
                break
            await asyncio.sleep(0)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    final = {s.connection_id: s for s in hub.snapshot()}
    assert {n: s.version for n, s in final.items()} == versions
    for view in views:
        assert view == final
    caught_up = await stalled.next_batch()
    assert caught_up == Snapshot(hub.snapshot(), resync=True)
    apply(stalled_view, caught_up)
    assert stalled_view == final and stalled.backlog == 0


def test_the_frame_budget_saves_a_quiet_spell_for_a_burst_and_paces_a_storm() -> None:
    budget = FrameBudget(rate=1_000, burst_s=0.01)  # 10 messages saved up at most
    assert budget.wait(4, now=5.0) == 0  # full from the start
    budget.spend(4, now=5.0)
    budget.spend(4, now=5.0)  # a burst: two frames at once
    assert budget.wait(4, now=5.0) == pytest.approx(0.002)  # 2 left: 2 more to refill
    assert budget.wait(4, now=5.001) == pytest.approx(0.001)
    assert budget.wait(4, now=5.002) == pytest.approx(0, abs=1e-9)
    budget.spend(4, now=5.002)  # a storm: one frame per refill from here on
    assert budget.wait(4, now=5.002) == pytest.approx(0.004)
    assert budget.wait(4, now=60.0) == 0  # a long quiet spell saves 10, not more
    budget.spend(4, now=60.0)
    budget.spend(4, now=60.0)
    assert budget.wait(4, now=60.0) == pytest.approx(0.002)
    many = FrameBudget(rate=1_000, burst_s=0.01)
    assert many.wait(50, now=1.0) == 0  # more watchers than the burst: one frame fits
    many.spend(50, now=1.0)
    assert many.wait(50, now=1.0) == pytest.approx(0.05)


@pytest.mark.asyncio
async def test_a_burst_after_a_quiet_spell_goes_out_without_waiting() -> None:
    """At one message a second, three saved: three frames in a row are read within loop
    turns (no timer), where a fixed frame interval held each back for a second."""
    hub = StatusHub(messages_per_s=1, burst_s=3)
    watcher = hub.subscribe()
    assert await watcher.next_batch() == Snapshot(())
    for cycle in range(3):
        pending = asyncio.ensure_future(watcher.next_batch())
        hub.publish(status("e", cycles=cycle))
        for _ in range(10):  # loop turns, not time: the cut is due at once
            if pending.done():
                break
            await asyncio.sleep(0)
        assert pending.done() and pending.result() == (Changed(status("e", cycles=cycle)),)


@pytest.mark.asyncio
async def test_frames_are_paced_shared_and_end_with_the_last_change() -> None:
    """Two watchers at 100 messages a second, 10 saved up at most: over any stretch of
    frames, no more messages than the budget held plus what it refilled; the same events
    tuple read by both (encoded once), and the last change always follows."""
    hub = StatusHub(messages_per_s=100, burst_s=0.1)
    watchers = [hub.subscribe(), hub.subscribe()]
    loop = asyncio.get_running_loop()
    reads: list[list[tuple[float, tuple[Queued, ...]]]] = [[], []]
    done = [asyncio.Event(), asyncio.Event()]

    async def read(index: int) -> None:
        assert await watchers[index].next_batch() == Snapshot(())
        while True:
            batch = await watchers[index].next_batch()
            assert not isinstance(batch, Snapshot)
            reads[index].append((loop.time(), batch))
            if Changed(status("e", cycles=59)) in batch:
                done[index].set()

    readers = [asyncio.create_task(read(i)) for i in range(2)]
    try:
        await asyncio.sleep(0)
        for cycle in range(60):  # load over time: a change every millisecond or so
            hub.publish(status("e", cycles=cycle))
            await asyncio.sleep(0.001)
        async with asyncio.timeout(10):  # a bound: the last frame is at most 20 ms away
            for event in done:
                await event.wait()
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    times = [at for at, _ in reads[0]]
    assert 2 <= len(times) < 60  # changes were coalesced, not sent one by one
    for first, last in itertools.combinations(range(len(times)), 2):  # 2 messages a frame
        assert 2 * (last - first + 1) <= 10 + 100 * (times[last] - times[first]) + 0.3
    assert [id(batch) for _, batch in reads[0]] == [id(batch) for _, batch in reads[1]]
