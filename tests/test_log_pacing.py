"""`ctsd.log_pacing.LinePacer`: one line a key per period, each counting what it covers,
with its keys bounded (a flood from ever new peers costs no memory)."""

from __future__ import annotations

from ctsd.log_pacing import LinePacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_a_period_and_the_next_covers_what_was_held_back() -> None:
    clock = Clock()
    lines = LinePacer(60.0, clock)
    assert lines.due() == 1  # the first at once
    assert [lines.due() for _ in range(5)] == [0] * 5
    clock.now += 59.9
    assert lines.due() == 0
    clock.now += 0.1
    assert lines.due() == 7  # this one and the six held back
    clock.now += 3600
    assert lines.due() == 1


def test_keys_are_paced_apart() -> None:
    clock = Clock()
    lines = LinePacer(10.0, clock)
    assert (lines.due("a"), lines.due("b"), lines.due("a"), lines.due("b")) == (1, 1, 0, 0)


def test_ever_new_keys_keep_no_more_than_the_bound() -> None:
    """The refused-call lines are keyed by peer (and reason): an attacker from ever new
    addresses must not grow the daemon's memory. The least recently seen go first, and
    a forgotten key's next event is a first line again."""
    clock = Clock()
    lines = LinePacer(10.0, clock, max_keys=100)
    for n in range(10_000):
        assert lines.due(f"ipv6:[2001:db8::{n:x}] bad token") == 1
    assert len(lines) == 100
    assert lines.due("ipv6:[2001:db8::0] bad token") == 1  # forgotten long ago
    assert lines.due(f"ipv6:[2001:db8::{9_999:x}] bad token") == 0  # recent: held back
