"""The budget arithmetic on its own: windows, decay, reservations, corrections."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctsd.ratelimit.meters import DecayingCounter, SlidingWindow, raised_corrections
from ctsd.ratelimit.model import BucketSpec, MeterKind


def window(limit: float = 10, interval: float = 1.0, guard: float = 0.0) -> SlidingWindow:
    return SlidingWindow(BucketSpec(limit, interval, safety_margin=1.0, guard_s=guard))


def test_window_waits_for_the_oldest_charges_to_expire() -> None:
    meter = window()
    for at in (0.0, 0.2, 0.4):
        meter.reserve(3)
        meter.land(meter.commit(3, at), at)
    assert meter.delay(1, 0.5) == 0  # 9 used, 1 fits
    assert meter.delay(2, 0.5) == pytest.approx(0.5)  # the charge at 0.0 leaves at 1.0
    assert meter.delay(7, 0.5) == pytest.approx(0.7)  # needs the first two gone
    assert meter.delay(10, 0.5) == pytest.approx(0.9)  # needs all three gone
    assert meter.used(1.0) == pytest.approx(6)


def test_guard_lengthens_every_window() -> None:
    meter = window(guard=0.25)
    meter.reserve(10)
    meter.land(meter.commit(10, 0.0), 0.0)
    assert meter.delay(1, 0.0) == pytest.approx(1.25)


def test_reservations_count_until_settled_and_block_without_end() -> None:
    meter = window()
    meter.reserve(8)
    assert meter.used(0.0) == 8
    assert math.isinf(meter.delay(5, 100.0))  # nothing in the log will ever free it
    meter.release(8)
    assert meter.delay(5, 100.0) == 0


def test_usage_header_above_our_count_becomes_a_charge() -> None:
    meter = window()
    meter.reserve(2)
    meter.land(meter.commit(2, 0.0), 0.0)
    assert not meter.observe(1, 0.1)  # the exchange saw less than we sent: keep ours
    assert meter.observe(9, 0.1)
    assert meter.used(0.1) == pytest.approx(9)
    assert meter.delay(2, 0.1) == pytest.approx(0.9)  # our 2 leave at 1.0
    assert meter.used(1.1) == 0


def test_a_correction_does_not_absorb_a_later_one() -> None:
    """Outside usage of 7 seen at 0 counts until 1.0; at 0.99 the exchange no longer
    counts it but reports 4 new: those must count until 1.99, not hide behind the 7."""
    meter = window()
    assert meter.observe(7, 0.0)
    assert meter.observe(4, 0.99)  # below our count (7), yet new usage for a new window
    assert meter.used(0.995) == pytest.approx(7)  # the larger of the two, never their sum
    assert meter.used(1.5) == pytest.approx(4)
    assert meter.delay(7, 1.5) == pytest.approx(0.49)
    assert meter.used(1.99) == 0


@given(st.lists(st.tuples(st.floats(0, 5), st.floats(0, 20), st.floats(0.1, 3)), max_size=8),
       st.lists(st.floats(0, 10), min_size=1, max_size=6))
def test_corrections_count_the_largest_one_standing(
        headers: list[tuple[float, float, float]], probes: list[float]) -> None:
    """Whatever the order of the headers, the pieces add up to the largest level still
    standing at every moment, as `SharedRateLimiter`'s script keeps them too."""
    pieces: list[tuple[float, float]] = []
    standing: list[tuple[float, float]] = []  # (until, level) of every header so far
    for _, level, length in sorted(headers):
        until = length + len(standing)  # later headers stand later, not always longer
        standing.append((until, level))
        raised = raised_corrections(pieces, level, until)
        pieces = pieces if raised is None else raised
        assert all(w > 0 for _, w in pieces)
    for t in probes:
        expected = max((lv for until, lv in standing if until > t), default=0.0)
        assert sum(w for end, w in pieces if end > t) == pytest.approx(expected, abs=1e-6)


def test_decaying_counter_drains_at_the_reduced_rate() -> None:
    spec = BucketSpec(15, 1.0, MeterKind.DECAYING, safety_margin=0.8)  # cap 12, 12/s
    meter = DecayingCounter(spec)
    meter.reserve(12)
    meter.land(meter.commit(12, 0.0), 0.0)
    assert meter.used(0.5) == pytest.approx(6)
    assert meter.delay(9, 0.5) == pytest.approx(0.25)
    meter.reserve(6)
    assert math.isinf(meter.delay(7, 0.5))  # only a settled reservation can make room


def test_decaying_counter_adopts_a_higher_reported_level() -> None:
    meter = DecayingCounter(BucketSpec(10, 1.0, MeterKind.DECAYING, safety_margin=1.0))
    assert meter.observe(7, 0.0)
    assert not meter.observe(5, 0.0)
    assert meter.used(0.2) == pytest.approx(5)


def test_capacity_keeps_at_least_one_unit_of_a_tiny_limit() -> None:
    assert BucketSpec(1, 5.0, safety_margin=0.9).capacity == 1  # OKX system/status: 1 per 5 s
    assert BucketSpec(0.5, 1.0, safety_margin=0.9).capacity == 0.5
    assert BucketSpec(1200, 60.0).capacity == pytest.approx(1080)


def test_an_unanswered_charge_counts_until_its_answer_then_a_window_past_it() -> None:
    meter = window(guard=0.05)
    meter.reserve(4)
    early = meter.commit(4, 0.0)
    meter.reserve(6)
    late = meter.commit(6, 0.1)
    meter.land(early, 0.03)  # within the guard: counts until 0.0 + 1.05
    assert meter.used(5.0) == 6 and math.isinf(meter.delay(5, 5.0))  # `late` is still out
    meter.land(late, 5.5)  # it may have reached the exchange only now
    meter.land(late, 9.0)  # landing twice changes nothing
    assert meter.delay(5, 5.5) == pytest.approx(1.0)  # counts until 5.5 + 1.0
    assert meter.used(6.5) == 0


def test_a_decaying_counter_gives_back_what_drained_before_the_answer() -> None:
    meter = DecayingCounter(BucketSpec(10, 10.0, MeterKind.DECAYING, safety_margin=1.0))
    meter.reserve(4)
    sent = meter.commit(4, 0.0)
    assert meter.used(2.0) == pytest.approx(2)  # drains 1 per second
    meter.land(sent, 2.0)
    assert meter.used(2.0) == pytest.approx(4)  # as if counted at the answer


@given(st.lists(st.tuples(st.sampled_from(("send", "observe", "wait")),
                          st.floats(0.0, 12.0)), max_size=60))
def test_the_count_of_corrections_matches_the_log_whatever_happens(
        steps: list[tuple[str, float]]) -> None:
    """`observe` skips scanning the log while it counts no correction: the count must never
    drift from the log (requests and corrections landing, expiring, being replaced)."""
    meter, now = window(), 0.0
    for step, value in steps:
        if step == "send":
            meter.reserve(1)
            meter.land(meter.commit(1, now), now)
        elif step == "observe":
            meter.observe(value, now)
        else:
            now += value / 10
            meter.used(now)
        assert meter._corrections == sum(s.correction for s in meter._log)
