"""Engine requests between fleet members (`ctsd.fleet.requests`) on the real store.

- Every error of `ctsd.errors` (and every exchange failure) an addressee's call may
  raise comes back to the sender as the same class, message and violations, so the API
  answers a placed call exactly as it answers a local one; a bug stays a bug.
- The store, on SQLite and PostgreSQL: a request is taken once, by its addressee only;
  a withdrawal and a taking exclude each other; the answer reads back whole, announced.
- The sender: answered by a serving member; a request nobody takes (the addressee gone,
  or silent past the taking window) is withdrawn and answered None (run it here); one
  taken by a member that then went away is UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from ctsd import errors
from ctsd.engine.config import EngineConfig, TradingMode
from ctsd.engine.status import EngineState, EngineStatus
from ctsd.errors import (
    CtsError,
    ExchangeFailure,
    FailedPrecondition,
    FailureClass,
    FieldViolation,
    InvalidArgument,
    OrderRejection,
    Unavailable,
)
from ctsd.fleet.requests import (
    Answer,
    EngineRequest,
    EngineRequests,
    RequestKind,
    RequestState,
)
from ctsd.store.audit import audit_rows
from ctsd.store.database import Database
from ctsd.store.engine_requests import SqlRequestStore, error_from_json, error_to_json
from tests.support.pg_databases import PgDatabases
from tests.support.virtual_clock import VirtualClock

CONFIG = EngineConfig("grid", ("BTC/USDT",), {"levels": "2"}, TradingMode.PAPER)
VIOLATIONS = [FieldViolation("config.leverage", "spot has no leverage")]


def every_error() -> list[Exception]:
    """One instance of every class in `ctsd.errors`, every exchange failure kind, and a
    bug."""
    found: list[Exception] = [RuntimeError("a bug"), ValueError("another")]
    for _, cls in inspect.getmembers(errors, inspect.isclass):
        if not issubclass(cls, CtsError) or issubclass(cls, ExchangeFailure):
            continue
        if issubclass(cls, InvalidArgument | FailedPrecondition):
            found.append(cls(f"{cls.__name__} refused", VIOLATIONS))
        else:
            found.append(cls(f"{cls.__name__} refused"))
    for failure in FailureClass:
        for rejection in (None, *OrderRejection):
            found.append(ExchangeFailure.of(failure, "the venue said no", code="-2010",
                                            rejection=rejection))
    return found


@pytest.mark.parametrize("error", every_error(), ids=lambda e: type(e).__name__)
def test_every_error_comes_back_as_raised(error: Exception) -> None:
    back = error_from_json(error_to_json(error))
    if not isinstance(error, CtsError):
        assert type(back) is RuntimeError and type(error).__name__ in str(back)
        return
    assert type(back) is type(error)
    assert isinstance(back, CtsError)
    assert (back.message, back.reason) == (error.message, error.reason)
    assert getattr(back, "violations", None) == getattr(error, "violations", None)
    if isinstance(error, ExchangeFailure):
        assert isinstance(back, ExchangeFailure)
        assert (back.failure, back.detail, back.code, back.rejection) == (
            error.failure, error.detail, error.code, error.rejection)


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def dbs(request: pytest.FixtureRequest,
              tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two members' databases on one store."""
    url: str | None = None
    databases: PgDatabases | None = None
    if request.param == "postgresql":
        databases = PgDatabases(request.getfixturevalue("postgres_url"))
        url = await databases.fresh()
    pair = (await Database.open(tmp_path, url), await Database.open(tmp_path, url))
    try:
        yield pair
    finally:
        for db in pair:
            await db.close()
        if databases is not None and url is not None:
            await databases.drop(url)


@pytest.mark.asyncio
async def test_a_request_is_taken_once_by_its_addressee(
        dbs: tuple[Database, Database]) -> None:
    sender, addressee = SqlRequestStore(dbs[0]), SqlRequestStore(dbs[1])
    announced = addressee.requests("b")
    await anext(announced)  # listening
    start = EngineRequest.new("c1", "b", RequestKind.START, CONFIG)
    async with sender.answers() as answers:
        await sender.send(start)
        await asyncio.wait_for(anext(announced), 10)
        assert await addressee.claim("a", 60_000) == []  # not addressed to a
        assert await addressee.claim("b", 60_000) == [start]
        assert await addressee.claim("b", 60_000) == []  # taken once
        assert not await sender.withdraw(start.id)  # taken: stays
        status = EngineStatus("c1", "e1", EngineState.STARTING, TradingMode.PAPER, "grid",
                              ("BTC/USDT",), owner="b")
        await addressee.answer(start.id, Answer(status))
        while (heard := await asyncio.wait_for(anext(answers), 10)) != start.id:
            assert heard is None or heard != start.id
    assert await sender.read(start.id) == (RequestState.DONE, Answer(status))
    stop = EngineRequest.new("c1", "b", RequestKind.STOP)
    await sender.send(stop)
    assert await sender.withdraw(stop.id)
    assert await addressee.claim("b", 60_000) == []  # withdrawn before it was taken
    assert await sender.read(stop.id) is None
    await announced.aclose()


@pytest.mark.asyncio
async def test_a_damaged_request_or_answer_is_quarantined_not_raised(
        dbs: tuple[Database, Database]) -> None:
    sender, addressee = SqlRequestStore(dbs[0]), SqlRequestStore(dbs[1])
    damaged = EngineRequest.new("c1", "b", RequestKind.START, CONFIG)
    await sender.send(damaged)
    await dbs[0].write(lambda tx: tx.execute(
        "UPDATE engine_requests SET config = '{\"strategy\":' WHERE id = ?", (damaged.id,)))
    assert await addressee.claim("b", 60_000) == []
    assert ("engine_requests", damaged.id) in {(r.table, r.key) for r in
                                               dbs[1].quarantine.rows}
    found = await sender.read(damaged.id)  # answered at once, not left to time out
    assert found is not None and found[0] is RequestState.DONE
    assert found[1] is not None and isinstance(found[1].error, Unavailable)
    assert "damaged" in str(found[1].error)
    assert ("engine_requests", damaged.id) in {(r.table, r.key) for r in
                                               await audit_rows(dbs[0])}
    await dbs[0].write(lambda tx: tx.execute(
        "UPDATE engine_requests SET state = 'done', answer = 'not json' WHERE id = ?",
        (damaged.id,)))
    found = await sender.read(damaged.id)
    assert found is not None and found[0] is RequestState.DONE
    assert found[1] is not None and isinstance(found[1].error, Unavailable)


class Recorder:
    """An addressee's engine manager that answers what it is told to."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, str]] = []

    async def start_here(self, connection_id: str, config: EngineConfig) -> EngineStatus:
        self.calls.append(("start", connection_id))
        if self.error is not None:
            raise self.error
        return EngineStatus(connection_id, "e1", EngineState.STARTING, config.mode,
                            config.strategy, config.symbols, owner="b")

    async def stop_here(self, connection_id: str) -> EngineStatus:
        self.calls.append(("stop", connection_id))
        return EngineStatus(connection_id, "e1", EngineState.STOPPED, TradingMode.PAPER,
                            "grid", ())


@pytest.mark.asyncio
async def test_the_sender_gets_the_answer_or_runs_it_itself(tmp_path: Path) -> None:
    clock = VirtualClock()
    dbs = [await Database.open(tmp_path) for _ in range(2)]
    alive = {"b": True}

    async def is_alive(member: str) -> bool:
        return alive.get(member, False)

    def sender(take_within_s: float, answer_within_s: float = 120.0) -> EngineRequests:
        return EngineRequests(SqlRequestStore(dbs[0], clock.now_ms), "a", clock, 1.0,
                              is_alive, take_within_s=take_within_s,
                              answer_within_s=answer_within_s)

    patient, a, hasty = sender(600.0), sender(5.0), sender(600.0, answer_within_s=4.0)
    store_b = SqlRequestStore(dbs[1], clock.now_ms)

    async def taken_by_b(connection_id: str) -> None:
        """b takes the request (and never answers it)."""
        for _ in range(500):
            if [r for r in await store_b.claim("b", 600_000) if r.connection_id
                    == connection_id]:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the request never arrived")
    b = EngineRequests(SqlRequestStore(dbs[1], clock.now_ms), "b", clock, 1.0, is_alive)
    refusing = Recorder(FailedPrecondition("the key was never tested", VIOLATIONS))
    serving = asyncio.create_task(b.serve(refusing))

    async def driven(request: EngineRequest, by: EngineRequests,
                     after: asyncio.Task[None] | None = None) -> Answer | None:
        """The call, virtual time moving a second each time it waits for its next scan
        (once `after` is done)."""
        call = asyncio.create_task(by.call(request))
        slept = len(clock.sleeps)
        for _ in range(1000):
            done, _ = await asyncio.wait({call}, timeout=0.02)
            if done:
                return call.result()
            if len(clock.sleeps) > slept and (after is None or after.done()):
                slept = len(clock.sleeps)
                await clock.advance(1.0)
        raise AssertionError("the call never ended")

    try:
        answer = await driven(EngineRequest.new("c1", "b", RequestKind.START, CONFIG), patient)
        assert answer is not None and isinstance(answer.error, FailedPrecondition)
        assert answer.error.violations == VIOLATIONS
        assert refusing.calls == [("start", "c1")]

        serving.cancel()  # b alive but deaf: withdrawn after the taking window
        started = clock.now
        assert await driven(EngineRequest.new("c2", "b", RequestKind.STOP), a) is None
        assert 5.0 <= clock.now - started <= 7.0

        alive["b"] = False  # b gone: withdrawn at once
        started = clock.now
        assert await asyncio.wait_for(a.call(EngineRequest.new("c3", "b", RequestKind.STOP)),
                                      10) is None
        assert clock.now == started

        # Taken by b, which then goes away before answering: UNAVAILABLE.
        alive["b"] = True
        call = asyncio.create_task(a.call(EngineRequest.new("c4", "b", RequestKind.STOP)))
        await taken_by_b("c4")
        alive["b"] = False
        await clock.advance(1.0)
        with pytest.raises(Unavailable, match="member b took the stop but left the fleet"):
            await asyncio.wait_for(call, 10)
        assert refusing.calls == [("start", "c1")]

        # Taken by b, alive, silent: UNAVAILABLE once the answer is overdue, not before.
        alive["b"] = True
        taking = asyncio.create_task(taken_by_b("c5"))
        started = clock.now
        with pytest.raises(Unavailable, match="member b took the stop but did not answer"):
            await driven(EngineRequest.new("c5", "b", RequestKind.STOP), hasty, taking)
        assert 4.0 <= clock.now - started <= 5.0
        await taking
    finally:
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
        for db in dbs:
            await db.close()
