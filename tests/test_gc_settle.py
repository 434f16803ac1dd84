"""After start-up the daemon freezes what is alive and collects the young generation less
often; the thresholds of the older generations stay Python's."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ctsd.daemon import GC_FIRST_GENERATION, settle_garbage_collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    gc.enable()


@pytest.mark.usefixtures("restored_gc")
def test_settling_freezes_survivors_and_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    settle_garbage_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GC_FIRST_GENERATION, before[1], before[2])


@pytest.mark.usefixtures("restored_gc")
def test_settling_turns_on_the_collector_the_start_turned_off() -> None:
    """`ctsd.cli` starts the daemon with the collector off (no collections while it imports
    and builds itself); a serving daemon that never collected again would grow without
    bound on every reference cycle."""
    gc.disable()
    settle_garbage_collector()
    assert gc.isenabled()
