"""Engine calls one fleet member makes on another: a start placed by load, a stop sent
to the engine's owner.

Why through the database and not a gRPC call between daemons: the database is already
where the members meet and trust each other (TLS, credentials, the change feed); a
daemon's API may demand client certificates or tokens no member holds. A request is a
row addressed to a member and announced on the change feed, so the addressee acts on
it at once (and on its next scan if it missed the notice); its answer is written to
the same row and announced back.

The call keeps the contract of the same call on one daemon:

- the sender answers once the addressee's call ended: the engine's status, or the
  addressee's refusal raised here unchanged (a failed start wrote nothing there, so
  it leaves no record claiming RUNNING);
- a request the addressee did not take (it went away, or took nothing within
  `TAKE_WITHIN_S`) is withdrawn -- atomically against its taking -- and the sender
  runs the call itself (`call` answers None);
- a request taken by an addressee that then went away is answered UNAVAILABLE:
  whether its start committed is what GetEngine shows (an engine it started is
  adopted like any other).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from ctsd.clock import Clock
from ctsd.engine.config import EngineConfig
from ctsd.engine.status import EngineStatus
from ctsd.errors import CtsError, Unavailable
from ctsd.tasks import cancel_and_wait, retrieve_outcome

log = logging.getLogger("ctsd.fleet")
TAKE_WITHIN_S = 5.0
"""How long a sent request waits to be taken before its sender withdraws it."""
ANSWER_WITHIN_S = 120.0
"""How long a sender waits for the answer of a request taken by a live member."""


class RequestKind(enum.Enum):
    START = "start"
    STOP = "stop"


class RequestState(enum.Enum):
    SENT = "sent"
    TAKEN = "taken"
    DONE = "done"


@dataclass(frozen=True)
class EngineRequest:
    id: str
    connection_id: str
    target: str
    """The member id the request is addressed to."""
    kind: RequestKind
    config: EngineConfig | None = None
    """What to start (START only)."""

    @classmethod
    def new(cls, connection_id: str, target: str, kind: RequestKind,
            config: EngineConfig | None = None) -> EngineRequest:
        return cls(secrets.token_hex(8), connection_id, target, kind, config)


@dataclass(frozen=True)
class Answer:
    """What the addressee's call returned, or what it raised."""

    status: EngineStatus | None = None
    error: Exception | None = None

    def result(self) -> EngineStatus:
        if self.error is not None:
            raise self.error
        if self.status is None:
            raise Unavailable("the member's answer carried no status")
        return self.status


class RequestStore(Protocol):
    """`ctsd.store.engine_requests.SqlRequestStore`."""

    async def send(self, request: EngineRequest) -> None:
        """Writes the request and announces it to its target."""
        ...

    async def claim(self, target: str, within_ms: int) -> list[EngineRequest]:
        """The requests sent to `target` in the last `within_ms`, now taken by it."""
        ...

    async def answer(self, request_id: str, answer: Answer) -> None: ...

    async def read(self, request_id: str) -> tuple[RequestState, Answer | None] | None: ...

    async def withdraw(self, request_id: str) -> bool:
        """Deletes the request unless it was taken; False if it was."""
        ...

    async def forget(self, request_id: str) -> None: ...

    def requests(self, target: str) -> AsyncIterator[None]:
        """Once listening, then at each request announced to `target` (or a gap)."""
        ...

    def answers(self) -> AbstractAsyncContextManager[AsyncIterator[str | None]]:
        """Listening (once entered) to answers: request ids, None after a gap."""
        ...


class Served(Protocol):
    """What an addressee runs: `ctsd.engine.manager.EngineManager`, never routing again."""

    async def start_here(self, connection_id: str, config: EngineConfig) -> EngineStatus: ...

    async def stop_here(self, connection_id: str) -> EngineStatus: ...


class EngineRequests:
    """Both sides: `call` sends and waits; `serve` takes and runs what is sent here."""

    def __init__(self, store: RequestStore, member_id: str, clock: Clock, scan_s: float,
                 alive: Callable[[str], Awaitable[bool]], *,
                 take_within_s: float = TAKE_WITHIN_S,
                 answer_within_s: float = ANSWER_WITHIN_S) -> None:
        self._store = store
        self._take_within_s = take_within_s
        self._answer_within_s = answer_within_s
        self._member_id = member_id
        self._clock = clock
        self._scan_s = scan_s
        self._alive = alive
        """Whether a member still renews its heartbeat (the database's word)."""
        self._serving: set[asyncio.Task[None]] = set()

    # --- the sender --------------------------------------------------------------------

    async def call(self, request: EngineRequest) -> Answer | None:
        """The target's answer; None if it never took the request (withdrawn: run it
        here); Unavailable if it took it and went away before answering."""
        async with self._store.answers() as answers:  # listening before the request exists
            heard = asyncio.Event()
            reader = asyncio.create_task(_wake_on(answers, request.id, heard),
                                         name="fleet-request-answers")
            try:
                await self._store.send(request)
                return await self._outcome(request, heard)
            finally:
                await cancel_and_wait(reader)
                with contextlib.suppress(Exception):  # a leftover is purged by its age
                    await self._store.forget(request.id)

    async def _outcome(self, request: EngineRequest, heard: asyncio.Event) -> Answer | None:
        sent = self._clock.monotonic()
        while True:
            heard.clear()
            found = await self._store.read(request.id)
            if found is None:
                return None
            state, answer = found
            if state is RequestState.DONE:
                return answer
            waited = self._clock.monotonic() - sent
            alive = await self._alive(request.target)
            if state is RequestState.SENT:
                if alive and waited < self._take_within_s:
                    await self._heard_or_scan(heard)
                    continue
                if await self._store.withdraw(request.id):
                    log.warning("engine request not taken; run here", extra={
                        "connection_id": request.connection_id, "target": request.target})
                    return None
                continue  # taken meanwhile
            if not alive or waited >= self._answer_within_s:
                why = ("left the fleet before answering" if not alive
                       else f"did not answer within {waited:.0f} s")
                raise Unavailable(
                    f"connections/{request.connection_id}: member {request.target} took the "
                    f"{request.kind.value} but {why}; GetEngine shows the engine's state")
            await self._heard_or_scan(heard)

    async def _heard_or_scan(self, heard: asyncio.Event) -> None:
        waiting = asyncio.ensure_future(heard.wait())
        sleeping = asyncio.ensure_future(self._clock.sleep(self._scan_s))
        try:
            await asyncio.wait({waiting, sleeping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waiting, sleeping)

    # --- the addressee -----------------------------------------------------------------

    async def serve(self, engines: Served) -> None:
        """A task of the member: takes what is sent here as soon as it is announced."""
        async for _ in self._store.requests(self._member_id):
            await self.take(engines)

    async def take(self, engines: Served) -> None:
        """Takes every request waiting for this member and runs each (its own task).

        The taking is a task of its own that the caller's cancellation does not reach
        (shielded; `finish` waits for it): a scan cancelled after the claim's COMMIT --
        the member stopping -- would otherwise leave requests taken that nobody runs
        or answers, their senders waiting out `answer_within_s` for nothing."""
        await asyncio.shield(self._spawn(self._claim(engines), "fleet-request-claim"))

    async def _claim(self, engines: Served) -> None:
        within_ms = int(self._take_within_s * 1000)
        for request in await self._store.claim(self._member_id, within_ms):
            self._spawn(self._run(engines, request), f"fleet-request:{request.connection_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(work, name=name)
        self._serving.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        """A claim's error reached its scan, unless that was cancelled meanwhile (then
        the next scan tries again): retrieved here so it is not reported as lost."""
        self._serving.discard(task)
        retrieve_outcome(task)

    async def finish(self) -> None:
        """Until every request taken here is answered (shutdown: none is left unsaid)."""
        while self._serving:
            await asyncio.gather(*self._serving, return_exceptions=True)

    async def _run(self, engines: Served, request: EngineRequest) -> None:
        try:
            if request.kind is RequestKind.START:
                assert request.config is not None
                answer = Answer(await engines.start_here(request.connection_id,
                                                         request.config))
            else:
                answer = Answer(await engines.stop_here(request.connection_id))
        except Exception as exc:
            if not isinstance(exc, CtsError):
                log.exception("engine request failed", extra={
                    "connection_id": request.connection_id, "kind": request.kind.value})
            answer = Answer(error=exc)
        log.info("engine request served", extra={
            "connection_id": request.connection_id, "kind": request.kind.value,
            "error": None if answer.error is None else str(answer.error)})
        try:
            await self._store.answer(request.id, answer)
        except Exception as exc:  # the sender finds the member alive and waits, bounded
            log.warning("engine request answer not written", extra={"error": str(exc)})


async def _wake_on(answers: AsyncIterator[str | None], request_id: str,
                   heard: asyncio.Event) -> None:
    async for answered in answers:
        if answered is None or answered == request_id:
            heard.set()
