"""Cancel a coroutine at its k-th suspension, for every k: the deterministic half of the
cancellation fuzzers.

A caller may be cancelled wherever its coroutine waits (a client deadline, a dropped
connection, an engine stop). Random deadlines hit the narrow windows only now and then;
counting the suspensions of one uncancelled run and then cancelling a fresh run at each
of them in turn visits every await point, the one on `BEGIN IMMEDIATE` and the one on
`COMMIT` included. The cancellation is the one `Task.cancel()` delivers: the future the
coroutine waits on is cancelled (work already handed to a thread goes on regardless) and
`CancelledError` is raised at that await.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tests.robustness.tally import Tally

T = TypeVar("T")


@dataclass
class Outcome:
    """How one run ended: its result, the error it raised, or cancelled at `point`."""

    point: int | None
    suspensions: int = 0
    result: Any = None
    error: BaseException | None = None
    cancelled: bool = False


@types.coroutine
def counted(awaitable: Awaitable[T], cancel_at: int | None,
             outcome: Outcome) -> Generator[Any, Any, T]:
    """Passes every suspension of `awaitable` through to the task, counting them; at number
    `cancel_at` the running task cancels itself before it suspends."""
    inner = awaitable.__await__()
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            yielded = inner.throw(throw) if throw is not None else inner.send(send)
        except StopIteration as stop:
            result: T = stop.value
            return result
        outcome.suspensions += 1
        if outcome.suspensions == cancel_at:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        try:
            send, throw = (yield yielded), None
        except BaseException as exc:  # delivered into the inner coroutine at its await
            send, throw = None, exc


async def run_cancelled_at(make: Callable[[], Coroutine[Any, Any, T]],
                           point: int | None) -> Outcome:
    """Runs `make()` in its own task, cancelled at suspension `point` (None: never)."""
    outcome = Outcome(point)

    async def body() -> T:
        return await counted(make(), point, outcome)

    task = asyncio.ensure_future(body())
    try:
        outcome.result = await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # our own cancellation, not the one we planted
        outcome.cancelled = True
    except Exception as exc:  # the operation's own answer, for the caller to judge
        outcome.error = exc
    return outcome


@dataclass
class Exploration:
    """Every cancellation point of one operation, and what each left behind."""

    name: str
    points: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def cancelled(self) -> int:
        return sum(o.cancelled for o in self.outcomes)


async def explore(
    name: str,
    make: Callable[[int], Coroutine[Any, Any, Any]],
    check: Callable[[int, Outcome], Awaitable[list[str]]],
    limit: int = 200,
) -> Exploration:
    """Runs `make(run)` once uncancelled to count its suspensions, then once cancelled at
    each of them; after every run `check(run, outcome)` lists what is inconsistent.

    `run` numbers the runs so each can work on fresh rows.
    """
    found = Exploration(name)
    clean = await run_cancelled_at(lambda: make(0), None)
    found.points = min(clean.suspensions, limit)
    found.outcomes.append(clean)
    found.problems += [f"uncancelled: {p}" for p in await check(0, clean)]
    for point in range(1, found.points + 1):
        outcome = await run_cancelled_at(lambda p=point: make(p), point)  # type: ignore[misc]
        found.outcomes.append(outcome)
        found.problems += [f"cancelled at {point}: {p}" for p in await check(point, outcome)]
    return found


def report(title: str, found: list[Exploration]) -> Tally:
    """One robustness row for the explorations: runs tried, problems found, per operation."""
    tally = Tally(f"cancel points: {title}")
    for one in found:
        tally.tried += len(one.outcomes)
        tally.lost += len(one.problems)
        tally.notes.append(f"{one.name}: {one.points} await points, "
                           f"{one.cancelled} runs cancelled, problems {len(one.problems)}")
        tally.notes.extend(one.problems[:5])
    tally.survived = tally.tried - tally.lost
    tally.report()
    return tally
