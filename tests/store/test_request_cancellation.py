"""The fleet's engine-request writes (migration 9, `ctsd.store.engine_requests`, driven
the way `ctsd.fleet.requests` drives them), cancelled at each of their await points in
turn, on both backends.

After each run, whatever point the cancellation hit:

- the next write works (the writer is not left inside a transaction);
- the request rows are as before the write or as after it, never a part of it (the
  member's scan: a leftover purged and a request taken, or neither);
- the in-memory side agrees with the rows: a request row sent is announced to its
  addressee and an answer written is announced to its sender (one notice each, none
  for a write that did not commit), a request the scan took is run and answered here
  (a scan cancelled after its COMMIT must not leave a request taken that nobody runs:
  its sender would wait out `ANSWER_WITHIN_S` for nothing), and a sender's call leaves
  no request row and no task behind.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from ctsd.engine.config import EngineConfig
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.fleet.requests import Answer, EngineRequest, EngineRequests, RequestKind
from ctsd.store.database import Database
from ctsd.store.database_feed import Notice
from ctsd.store.engine_requests import ANSWERS, REQUESTS, SqlRequestStore
from tests.store.test_write_cancellation import CONFIG
from tests.support.cancel_points import Exploration, Outcome, explore, report
from tests.support.virtual_clock import VirtualClock

ADDRESSEE = "b"
PROBES = itertools.count()
Rows = Counter[tuple[Any, ...]]


class Recorder:
    """The addressee's engine manager: records what it was asked to run."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def start_here(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        self.ran.append(connection_id)
        return EngineStatus(connection_id, "e1", EngineState.STARTING, config.mode,
                            config.strategy, config.symbols, owner=ADDRESSEE)

    async def stop_here(self, connection_id: str) -> EngineStatus:
        self.ran.append(connection_id)
        return EngineStatus(connection_id, "e1", EngineState.STOPPED, CONFIG.mode,
                            CONFIG.strategy, CONFIG.symbols)


@dataclass
class Rig:
    """Both sides on one database, listening to both channels."""

    db: Database
    store: SqlRequestStore
    member: EngineRequests
    """The addressee's side (`take`, the member's scan)."""
    sender: EngineRequests
    """A sender whose addressee is gone: its call is withdrawn and answered None."""
    engines: Recorder
    feeds: dict[str, AsyncIterator[Notice]] = field(default_factory=dict)

    async def rows(self) -> Rows:
        return Counter(await self.db.fetch_all(
            "SELECT id, connection_id, target, kind, config, state, answer "
            "FROM engine_requests"))

    async def heard(self) -> tuple[dict[str, list[str]], list[str]]:
        """The notices each channel heard since the last call, ended by a probe write
        (which also shows that the next write works), and what went wrong."""
        problems: list[str] = []
        probe = f"probe-{next(PROBES)}"
        try:
            await self.store.send(EngineRequest(probe, "p", probe, RequestKind.STOP))
            await self.store.answer(probe, Answer(error=RuntimeError("probe")))
            await self.store.forget(probe)
        except Exception as exc:
            problems.append(f"the next write failed: {type(exc).__name__}: {exc}")
            return {}, problems
        heard: dict[str, list[str]] = {}
        for channel, feed in self.feeds.items():
            heard[channel] = []
            async with asyncio.timeout(30):
                while (notice := await anext(feed)).payload != probe:
                    if notice.gap:
                        problems.append(f"a gap on {channel}")
                    heard[channel].append(notice.payload)
        return heard, problems


Step = Callable[[Rig, int], Awaitable[Any]]


def request(run: int, kind: RequestKind = RequestKind.START) -> EngineRequest:
    return EngineRequest(f"r-{run}", f"c-{run}", ADDRESSEE, kind,
                         CONFIG if kind is RequestKind.START else None)


async def sent(rig: Rig, run: int) -> None:
    await rig.store.send(request(run))


async def sent_and_leftover(rig: Rig, run: int) -> None:
    """A request to take and one left over by a sender gone long ago (purged)."""
    await sent(rig, run)
    await rig.db.write(lambda tx: tx.execute(
        "INSERT INTO engine_requests (id, connection_id, target, kind, config, created_ms) "
        "VALUES (?, 'old', 'gone', 'stop', '', 1)", (f"old-{run}",)))


async def sent_damaged(rig: Rig, run: int) -> None:
    """A request whose config does not decode: the scan quarantines and answers it."""
    await sent(rig, run)
    await rig.db.write(lambda tx: tx.execute(
        "UPDATE engine_requests SET config = '{not json' WHERE id = ?", (f"r-{run}",)))


async def sent_and_taken(rig: Rig, run: int) -> None:
    await sent(rig, run)
    await rig.store.claim(ADDRESSEE, 60_000)


async def answered(rig: Rig, run: int) -> None:
    await sent_and_taken(rig, run)
    await rig.store.answer(f"r-{run}", Answer(error=RuntimeError("done")))


def status(run: int) -> EngineStatus:
    return EngineStatus(f"c-{run}", "e1", EngineState.RUNNING, CONFIG.mode, CONFIG.strategy,
                        CONFIG.symbols, owner=ADDRESSEE)


async def resend(rig: Rig, run: int) -> None:
    """`send` once more, unless its row is there (the rows a clean send leaves)."""
    if await rig.store.read(f"r-{run}") is None:
        await sent(rig, run)


@dataclass(frozen=True)
class RequestWrite:
    name: str
    write: Step
    prepare: Step | None = None
    again: Step | None = None
    """Brings the rows to the state a clean run leaves (default: `write` once more)."""
    announces: str | None = None
    """The channel a committed write announces on (the notice's payload is checked)."""
    notices: bool = True
    runs: bool = False
    """The write is the member's scan: every request it took must be run here."""
    """False: what the channels heard is not known from the rows (a call sends, then
    withdraws its request)."""


REQUEST_WRITES = (
    RequestWrite("send", sent, again=resend, announces=REQUESTS),
    RequestWrite("scan (take, purge, run, answer)",
                 lambda rig, run: rig.member.take(rig.engines), prepare=sent_and_leftover,
                 announces=ANSWERS, runs=True),
    RequestWrite("claim (the scan's taking, shielded there)",
                 lambda rig, run: rig.store.claim(ADDRESSEE, 60_000), prepare=sent_and_leftover),
    RequestWrite("scan, a damaged request (answered UNAVAILABLE)",
                 lambda rig, run: rig.member.take(rig.engines), prepare=sent_damaged,
                 announces=ANSWERS),
    RequestWrite("scan, nothing due", lambda rig, run: rig.member.take(rig.engines),
                 runs=True),
    RequestWrite("answer", lambda rig, run: rig.store.answer(f"r-{run}", Answer(status(run))),
                 prepare=sent_and_taken, announces=ANSWERS),
    RequestWrite("withdraw", lambda rig, run: rig.store.withdraw(f"r-{run}"), prepare=sent),
    RequestWrite("forget", lambda rig, run: rig.store.forget(f"r-{run}"), prepare=answered),
    RequestWrite("call, addressee gone",
                 lambda rig, run: rig.sender.call(request(run, RequestKind.STOP)),
                 again=lambda rig, run: asyncio.sleep(0), notices=False),
)


def expected_notices(spec: RequestWrite, rows: Rows, run: int) -> dict[str, list[str]]:
    """What the channels must have heard, given the rows the run left."""
    ids = {row[0]: row[5] for row in rows}
    heard: dict[str, list[str]] = {REQUESTS: [], ANSWERS: []}
    if spec.announces == REQUESTS and f"r-{run}" in ids:
        heard[REQUESTS].append(ADDRESSEE)
    if spec.announces == ANSWERS and ids.get(f"r-{run}") == "done":
        heard[ANSWERS].append(f"r-{run}")
    return heard


async def explore_request_write(rig: Rig, spec: RequestWrite) -> Exploration:
    async def prepare(run: int) -> Rows:
        if spec.prepare is not None:
            await spec.prepare(rig, run)
        await rig.heard()  # the preparation's notices are not the run's
        rig.engines.ran.clear()
        return await rig.rows()

    await rig.db.write(lambda tx: tx.execute("DELETE FROM engine_requests"))
    before = [await prepare(0)]

    async def check(run: int, outcome: Outcome) -> list[str]:
        await rig.member.finish()  # what the scan took is run and answered
        heard, problems = await rig.heard()
        if outcome.error is not None:
            problems.append(f"error {type(outcome.error).__name__}: {outcome.error}")
        now = await rig.rows()
        ran = sorted(rig.engines.ran)
        await (spec.again or spec.write)(rig, run)
        await rig.member.finish()
        after = await rig.rows()
        if now not in (before[0], after):
            problems.append(f"the rows are neither before nor after the write: "
                            f"{sorted(map(str, (now - before[0]) + (before[0] - now)))}")
        if spec.notices and heard and heard != expected_notices(spec, now, run):
            problems.append(f"the rows {sorted(map(str, now))} but heard {heard}")
        taken = sorted(str(r[1]) for r in now if r[5] != "sent" and r[1] == f"c-{run}")
        if spec.runs and ran != taken:
            problems.append(f"requests taken {taken} but run {ran}")
        left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("fleet-")]
        if left:
            problems.append(f"tasks left running: {left}")
        before[0] = await prepare(run + 1)
        return problems

    async def make(run: int) -> Any:
        return await spec.write(rig, run)

    return await explore(spec.name, make, check)


async def always_gone(member: str) -> bool:
    return False


@pytest.mark.asyncio
async def test_engine_request_writes_cancelled_at_every_await_point(db: Database) -> None:
    clock = VirtualClock()
    store = SqlRequestStore(db)
    rig = Rig(db, store, EngineRequests(store, ADDRESSEE, clock, 1.0, always_gone),
              EngineRequests(store, "a", clock, 1.0, always_gone), Recorder())
    async with AsyncExitStack() as listening:
        for channel in (REQUESTS, ANSWERS):
            rig.feeds[channel] = await listening.enter_async_context(db.listen(channel))
        found = [await explore_request_write(rig, spec) for spec in REQUEST_WRITES]
    report("engine request writes", found)
    assert all(one.points >= 1 for one in found)
    assert not [p for one in found for p in one.problems]

