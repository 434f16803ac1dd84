from __future__ import annotations

import pytest

from ctsd.engine.status import EngineState, IllegalTransition, check_transition

S = EngineState
LEGAL = [(S.STOPPED, S.STARTING), (S.STARTING, S.RUNNING), (S.RUNNING, S.STOPPING),
         (S.STOPPING, S.STOPPED), (S.STARTING, S.FAILED), (S.RUNNING, S.FAILED),
         (S.FAILED, S.STARTING), (S.FAILED, S.STOPPING), (S.STARTING, S.STOPPING)]


@pytest.mark.parametrize(("current", "target"), LEGAL)
def test_the_lifecycle_allows_its_transitions(current: S, target: S) -> None:
    check_transition(current, target)


@pytest.mark.parametrize(("current", "target"), [
    (S.STOPPED, S.RUNNING), (S.STOPPING, S.RUNNING), (S.FAILED, S.RUNNING),
    (S.STOPPED, S.FAILED), (S.RUNNING, S.STARTING), (S.RUNNING, S.STOPPED)])
def test_anything_else_is_a_bug(current: S, target: S) -> None:
    with pytest.raises(IllegalTransition):
        check_transition(current, target)
