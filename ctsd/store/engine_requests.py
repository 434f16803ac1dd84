"""The fleet's engine requests (`ctsd.fleet.requests`): rows addressed to a member,
announced on `engine_requests` (payload: the member id), answered on `engine_answers`
(payload: the request id).

An answer is one JSON document: the engine's status as the status table stores it, or
the error the addressee's call raised -- its kind from `ctsd.errors` (the nearest one
the codec knows), message and field violations, or an exchange failure's class, detail,
code and rejection -- so the sender raises what the addressee raised and the API
translates it the same way (a forwarded refusal keeps its gRPC code and details).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

from ctsd import errors
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
from ctsd.fleet.requests import Answer, EngineRequest, RequestKind, RequestState
from ctsd.store.database import Database, Row, Transaction
from ctsd.store.engine_statuses import status_from_json, status_to_json
from ctsd.store.engines import config_from_json, config_to_json
from ctsd.store.fleet import DatabaseClock
from ctsd.store.quarantine import DECODE_ERRORS, DamagedText
from ctsd.store.timestamps import checked_ms

REQUESTS = "engine_requests"
ANSWERS = "engine_answers"
KEEP_MS = 3_600_000
"""Rows older than this are left over by a sender that went away: purged."""

_KINDS: dict[str, type[CtsError]] = {cls.__name__: cls for cls in (
    errors.InvalidArgument, errors.NotFound, errors.AlreadyExists, errors.FailedPrecondition,
    errors.LeaseLost, errors.CredentialsUnavailable, errors.ConflictError,
    errors.EtagMismatch, errors.Unavailable, errors.LimiterClosed, errors.ResourceExhausted,
    errors.ConfigurationError, errors.RequestTooHeavy, errors.SealError,
    errors.TemporaryError, errors.ClientError, errors.CtsError)}
"""Every error a call may raise, by name (an explicit list: `test_engine_requests` holds it
to every class of `ctsd.errors`)."""


def error_to_json(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ExchangeFailure):
        return {"exchange": exc.failure.name, "detail": exc.detail, "code": exc.code,
                "rejection": exc.rejection.value if exc.rejection else None}
    kind = next((c.__name__ for c in type(exc).__mro__ if _KINDS.get(c.__name__) is c), "")
    message = exc.message if isinstance(exc, CtsError) else f"{type(exc).__name__}: {exc}"
    violations = getattr(exc, "violations", None) or []
    return {"kind": kind, "message": message,
            "violations": [[v.field, v.description] for v in violations]}


def error_from_json(raw: dict[str, Any]) -> Exception:
    """The error as the addressee raised it; a bug there (no kind: not a `CtsError`)
    stays a bug. A kind this ctsd does not know is a damaged row (ValueError): raised
    as a bug it would answer INTERNAL for what is the store's damage."""
    if "exchange" in raw:
        rejection = raw["rejection"]
        return ExchangeFailure.of(FailureClass[raw["exchange"]], str(raw["detail"]),
                                  code=raw["code"],
                                  rejection=OrderRejection(rejection) if rejection else None)
    kind = str(raw["kind"])
    message = str(raw["message"])
    if not kind:
        return RuntimeError(message)
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"an answer's error kind {kind[:40]!r} is not one this ctsd knows")
    if issubclass(cls, InvalidArgument | FailedPrecondition):
        return cls(message, [FieldViolation(str(f), str(d)) for f, d in raw["violations"]])
    return cls(message)


def answer_to_json(answer: Answer) -> str:
    return json.dumps({
        "status": None if answer.status is None else status_to_json(answer.status),
        "error": None if answer.error is None else error_to_json(answer.error)},
        separators=(",", ":"))


def answer_from_json(text: str) -> Answer:
    raw = json.loads(text)
    status = raw["status"]
    error = raw["error"]
    return Answer(None if status is None else status_from_json(status),
                  None if error is None else error_from_json(error))


def _request(row: Row) -> EngineRequest:
    """A damaged row is quarantined and answered UNAVAILABLE when it is taken
    (`SqlRequestStore.claim`)."""
    return EngineRequest(str(row[0]), str(row[1]), str(row[2]), RequestKind(row[3]),
                         config_from_json(str(row[4])) if row[4] else None)


def _system_ms() -> int:
    return time.time_ns() // 1_000_000


class SqlRequestStore:
    def __init__(self, db: Database, wall_ms: Callable[[], int] = _system_ms) -> None:
        self._db = db
        self._clock = DatabaseClock(db, wall_ms)

    async def send(self, request: EngineRequest) -> None:
        config = "" if request.config is None else config_to_json(request.config)

        def unit(tx: Transaction) -> None:
            now, p = self._clock.sql()
            tx.execute("INSERT INTO engine_requests (id, connection_id, target, kind, config, "
                       f"created_ms) VALUES (?, ?, ?, ?, ?, {now})",
                       (request.id, request.connection_id, request.target, request.kind.value,
                        config, *p))
            tx.notify(REQUESTS, request.target)

        await self._db.write(unit)

    async def claim(self, target: str, within_ms: int) -> list[EngineRequest]:
        """A read first: the write (taking, and purging leftovers) only when there is
        something to write -- every member calls this on each scan."""
        read_now = self._clock.literal()
        due = await self._db.fetch_one(
            "SELECT 1 FROM engine_requests WHERE (target = ? AND state = ? AND created_ms > "
            f"{read_now} - ?) OR created_ms < {read_now} - ? LIMIT 1",
            (target, RequestState.SENT.value, within_ms, KEEP_MS))
        if due is None:
            return []

        def unit(tx: Transaction) -> list[EngineRequest]:
            now, p = self._clock.sql()
            tx.execute(f"DELETE FROM engine_requests WHERE created_ms < {now} - ?",
                       (*p, KEEP_MS))
            now, p = self._clock.sql()
            rows = tx.fetch_all(
                "SELECT id, connection_id, target, kind, config FROM engine_requests "
                f"WHERE target = ? AND state = ? AND created_ms > {now} - ? "
                "ORDER BY created_ms, id", (target, RequestState.SENT.value, *p, within_ms))
            taken = [r for r in rows if tx.execute(  # a withdrawal may have come first
                "UPDATE engine_requests SET state = ? WHERE id = ? AND state = ?",
                (RequestState.TAKEN.value, r[0], RequestState.SENT.value)) == 1]
            return [request for row in taken for request in self._decoded(tx, row)]

        return await self._db.write(unit)

    def _decoded(self, tx: Transaction, row: Row) -> list[EngineRequest]:
        """The request, or none: a damaged one is quarantined and answered UNAVAILABLE in
        the unit that took it, so its sender hears at once instead of waiting out its
        answer window for a call nobody runs."""
        decoded = self._db.quarantine.decoded("engine_requests", [row], _request)
        if not decoded:
            text = answer_to_json(Answer(error=Unavailable(
                f"engine request {str(row[0])[:40]} reached its member damaged (quarantined); "
                "GetEngine shows the engine's state")))
            tx.execute("UPDATE engine_requests SET state = ?, answer = ? WHERE id = ?",
                       (RequestState.DONE.value, text, row[0]))
            with contextlib.suppress(ValueError):  # an id no sender wrote waits for none
                tx.notify(ANSWERS, str(row[0]))
        return decoded

    async def answer(self, request_id: str, answer: Answer) -> None:
        text = answer_to_json(answer)

        def unit(tx: Transaction) -> None:
            tx.execute("UPDATE engine_requests SET state = ?, answer = ? WHERE id = ?",
                       (RequestState.DONE.value, text, request_id))
            tx.notify(ANSWERS, request_id)

        await self._db.write(unit)

    async def read(self, request_id: str) -> tuple[RequestState, Answer | None] | None:
        row = await self._db.fetch_one(
            "SELECT state, answer FROM engine_requests WHERE id = ?", (request_id,))
        if row is None:
            return None
        try:
            state = RequestState(row[0])
            if state is not RequestState.DONE:
                return state, None
            if isinstance(row[1], DamagedText):
                raise ValueError("the answer holds bytes that are not UTF-8")
            return state, answer_from_json(str(row[1]))
        except DECODE_ERRORS as exc:
            self._db.quarantine.add("engine_requests", request_id, exc)
            return RequestState.DONE, Answer(error=Unavailable(
                f"the answer to engine request {request_id} does not decode; GetEngine "
                "shows the engine's state"))

    async def withdraw(self, request_id: str) -> bool:
        return bool(await self._db.write(lambda tx: tx.execute(
            "DELETE FROM engine_requests WHERE id = ? AND state = ?",
            (request_id, RequestState.SENT.value))))

    async def forget(self, request_id: str) -> None:
        await self._db.write(lambda tx: tx.execute(
            "DELETE FROM engine_requests WHERE id = ?", (request_id,)))

    async def requests(self, target: str) -> AsyncGenerator[None, None]:
        async with self._db.listen(REQUESTS) as feed:
            yield None
            async for notice in feed:
                if notice.gap or notice.payload == target:
                    yield None

    @contextlib.asynccontextmanager
    async def answers(self) -> AsyncIterator[AsyncIterator[str | None]]:
        async with self._db.listen(ANSWERS) as feed:
            yield (None if notice.gap else notice.payload async for notice in feed)


async def audit_requests(db: Database) -> None:
    """Every request row decoded through the quarantine (`ctsd.store.audit`)."""
    rows = await db.fetch_all("SELECT id, connection_id, target, kind, config, state, "
                              "answer, created_ms FROM engine_requests")

    def decode(row: Row) -> None:
        _request(row)
        checked_ms(row[7])
        if RequestState(row[5]) is RequestState.DONE:
            answer_from_json(str(row[6]))

    await db.quarantine.audit("engine_requests", rows, decode)
