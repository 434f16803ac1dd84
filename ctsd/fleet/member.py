"""`FleetMember`: this daemon in the fleet -- heartbeat, lease renewal, adoption, drain.

The renewal discipline (why a paused daemon stops trading before it could be wrong)
----------------------------------------------------------------------------------
All of a member's leases are renewed in one write, every `renew_every_s`. A
renewal that committed extends each lease to (the database's now + TTL), and the
database's now is no earlier than the moment this daemon sent the renewal. So,
by this daemon's own monotonic clock, every lease it holds is valid at least
until (send time + TTL). The member trusts it only until (send time +
`deadline_s`), with `deadline_s` < TTL: past that, `HeldLease.check` refuses
every placement, cancel and fenced write and `ready` holds the engines' cycles,
before any other daemon can have taken the lease. The database checks again in
the same transaction as each PENDING record (`ctsd.store.fleet`), and the
request itself carries the deadline to venues that enforce one (`ctsd.fencing`).

The renewal task never waits on an engine (a stuck cycle must not stop the
heartbeat); engines are adopted, handed over and ended by a second task.

Adoption spreads engines by load: an orphan (its lease expired or released,
its desired state RUNNING) is taken at once by the live, non-draining members
with the fewest engines, and by any member after `2 * scan_s` more, so a slow
least-loaded member cannot hold up a failover. Two members racing for one
orphan serialize on its lease row; one gets it.

Starts are placed by load too: StartEngine on any member runs the engine on the
live, non-draining member with the fewest engines (ties: the member that got the
call; an engine whose lease a live member holds: that member, which answers as it
would alone). Another member is sent the start as a request (`ctsd.fleet.requests`)
that it takes from the change feed at once, and the call answers with its outcome.
StopEngine on a member that does not own the engine is sent to the owner the same
way and answers once the owner stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from ctsd.clock import Clock
from ctsd.engine.config import EngineConfig
from ctsd.engine.lease_ports import Fence
from ctsd.engine.status import EngineStatus
from ctsd.errors import FailedPrecondition, LeaseLost, Unavailable
from ctsd.fleet.model import FleetView, MemberInfo
from ctsd.fleet.ports import FleetEngines, FleetStore
from ctsd.fleet.requests import EngineRequest, EngineRequests, RequestKind, RequestStore
from ctsd.fleet.statuses import FleetHub
from ctsd.tasks import cancel_and_wait

log = logging.getLogger("ctsd.fleet")
STOP_RETRY_S = 60.0
PLACING_S = 30.0
"""How long a start placed here counts as its member's load while no view shows its
lease. A started one stays counted after its answer: a placement that read its view
before that lease was taken, and awaited, would otherwise count it nowhere (three
starts at once landed two on one member). A failed start is forgotten at once."""


@dataclass(frozen=True)
class LeaseSettings:
    ttl_s: float = 10.0
    """How long a lease lasts after its last renewal (the database's clock)."""
    renew_every_s: float = 2.5
    deadline_s: float = 7.0
    """How long after sending its last successful renewal a member still trusts its
    leases, by its own clock; < ttl_s, > renew_every_s."""
    scan_s: float = 1.0
    """How often orphaned engines are looked for (failover = TTL + at most this + resume)."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_s < self.deadline_s < self.ttl_s:
            raise ValueError("fleet leases need 0 < renew_every_s < deadline_s < ttl_s")

    @classmethod
    def for_ttl(cls, ttl_s: float, scan_s: float = 1.0) -> LeaseSettings:
        return cls(ttl_s, ttl_s / 4, ttl_s * 0.7, scan_s)

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl_s * 1000)


class HeldLease:
    """One engine's lease as this member holds it (`ctsd.engine.lease_ports.Lease`)."""

    def __init__(self, member: FleetMember, connection_id: str, fence: Fence,
                 taken_at: float) -> None:
        self._member = member
        self.connection_id = connection_id
        self._fence = fence
        self.taken_at = taken_at
        """This member's monotonic clock when it sent the write that took the lease."""
        self._lost = False

    @property
    def fence(self) -> Fence:
        return self._fence

    @property
    def lost(self) -> bool:
        return self._lost

    def lose(self) -> None:
        self._lost = True
        self._member.pulse()

    def trusted_until(self) -> float:
        return max(self.taken_at, self._member.renewed_at) + self._member.settings.deadline_s

    def check(self) -> None:
        if self._lost:
            raise LeaseLost(f"connections/{self.connection_id}: the lease went to another daemon")
        if self._member.clock.monotonic() >= self.trusted_until():
            raise LeaseLost(f"connections/{self.connection_id}: lease renewal overdue")

    def deadline_ms(self) -> int:
        clock = self._member.clock
        return clock.now_ms() + int((self.trusted_until() - clock.monotonic()) * 1000)

    async def ready(self) -> None:
        while True:
            if self._lost:
                self.check()
            if self._member.clock.monotonic() < self.trusted_until():
                return
            await self._member.next_pulse()


class FleetMember:
    """Owns two tasks (renewal; adoption and drain); `open` joins, `close` leaves."""

    def __init__(self, store: FleetStore, info: MemberInfo, clock: Clock,
                 settings: LeaseSettings | None = None, hub: FleetHub | None = None,
                 followers: Sequence[Callable[[], Awaitable[None]]] = (),
                 requests: RequestStore | None = None) -> None:
        self._store = store
        self._followers = tuple(followers)
        """Read models kept current from the other members' writes (the change feed)."""
        self._hub = hub
        """The daemon's status hub, mirrored to and from the other members."""
        self.info = info
        self.clock = clock
        self.settings = settings or LeaseSettings()
        self.renewed_at = float("-inf")
        self._leases: dict[str, HeldLease] = {}
        self._pulse = asyncio.Event()
        self._engines: FleetEngines | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._orphaned_since: dict[str, float] = {}
        self._stop_retry: dict[str, float] = {}
        self._lost: set[str] = set()
        """Leases lost whose engine is still to be ended here (by the placement task)."""
        self._on_the_way: dict[str, tuple[str, float]] = {}
        """Starts placed from here whose lease is not live yet: connection id -> (member,
        when), counted as that member's load so that concurrent starts spread too."""
        self._requests = None if requests is None else EngineRequests(
            requests, info.id, clock, self.settings.scan_s, self._alive)
        """Starts placed and stops sent to other members, and theirs sent here (None:
        every call runs where it was made)."""

    async def open(self, engines: FleetEngines) -> None:
        """Join (the first renewal, which must reach the database), then run the tasks."""
        self._engines = engines
        await self._renew()
        if self._hub is not None:
            self._hub.open(self._token_of)
        self._tasks = [asyncio.create_task(self._renewing(), name="fleet-renewal"),
                       asyncio.create_task(self._placing(), name="fleet-adoption"),
                       *(asyncio.create_task(self._following(f), name="fleet-follower")
                         for f in self._followers)]
        if self._requests is not None:
            serve = partial(self._requests.serve, engines)
            self._tasks.append(asyncio.create_task(self._following(serve),
                                                   name="fleet-requests"))

    async def stop_adopting(self) -> None:
        """Shutdown, first step: no engine is adopted, handed over or ended any more; the
        leases stay renewed while the engine manager stops the engines. Requests taken
        here are answered first."""
        await cancel_and_wait(*self._tasks[1:])
        if self._requests is not None:
            await self._requests.finish()

    async def close(self) -> None:
        """After the engine manager closed: give every lease back and leave, so the
        other members adopt at once instead of after a TTL."""
        await cancel_and_wait(*self._tasks)
        if self._requests is not None:  # without `stop_adopting` first (a failed start)
            await self._requests.finish()
        if self._hub is not None:
            await self._hub.close()
        for lease in list(self._leases.values()):
            with contextlib.suppress(Exception):
                await self._store.release(lease.connection_id, lease.fence)
        self._leases.clear()
        with contextlib.suppress(Exception):
            await self._store.leave(self.info.id)

    # --- the engine manager's side (`ctsd.engine.lease_ports.EngineLeases`) ----------

    async def acquire(self, connection_id: str) -> HeldLease:
        try:
            lease = await self._take(connection_id, running_only=False)
        except BaseException:
            self._on_the_way.pop(connection_id, None)  # a start placed here failed
            raise
        if lease is None:
            self._on_the_way.pop(connection_id, None)
            raise FailedPrecondition(f"the engine of connections/{connection_id} runs on "
                                     "another daemon of the fleet; stop it there first")
        return lease

    async def release(self, connection_id: str) -> None:
        lease = self._leases.pop(connection_id, None)
        if lease is not None:
            await self._store.release(connection_id, lease.fence)

    async def place(self, connection_id: str, config: EngineConfig) -> EngineStatus | None:
        """Starts the engine on the member the load picks and answers its outcome; None
        when that is this member (or the request was not taken): start it here."""
        if self._requests is None:
            return None
        view = await self.view()
        now = self.clock.monotonic()
        for cid, (_, since) in list(self._on_the_way.items()):
            if now - since >= PLACING_S:
                del self._on_the_way[cid]
        leased = {lease.connection_id for lease in view.leases if lease.live}
        placing = [target for cid, (target, _) in self._on_the_way.items()
                   if cid != connection_id and cid not in leased]
        target = _placement(view, connection_id, self.info.id, placing)
        self._on_the_way[connection_id] = (target, now)  # before any await: the next call counts it
        if target == self.info.id:
            return None  # counted until this member takes the lease (`acquire`)
        log.info("engine start placed", extra={"connection_id": connection_id,
                                               "target": target})
        try:
            answer = await self._requests.call(
                EngineRequest.new(connection_id, target, RequestKind.START, config))
            if answer is None:  # not taken: this member starts it
                self._on_the_way[connection_id] = (self.info.id, now)
                return None
            return answer.result()
        except BaseException:  # nothing started there
            self._on_the_way.pop(connection_id, None)
            raise

    async def stop_elsewhere(self, connection_id: str) -> EngineStatus | None:
        """Stops the engine on the live member holding its lease and answers once it did;
        None when no other live member holds it (or the owner went away): stop it here,
        which marks it stopped for whoever takes the lease next."""
        if self._requests is None:
            return None
        view = await self.view()
        alive = {m.info.id for m in view.members if m.alive}
        owner = next((lease.owner for lease in view.leases if lease.connection_id
                      == connection_id and lease.live and lease.owner in alive), None)
        if owner is None or owner == self.info.id:
            return None
        try:
            answer = await self._requests.call(
                EngineRequest.new(connection_id, owner, RequestKind.STOP))
        except Unavailable:  # the owner went away mid-stop: finish it from here
            return None
        return None if answer is None else answer.result()

    async def _alive(self, member_id: str) -> bool:
        view = await self.view()
        return any(m.info.id == member_id and m.alive for m in view.members)

    @property
    def hub(self) -> FleetHub | None:
        return self._hub

    # --- read by the API ---------------------------------------------------------------

    async def view(self) -> FleetView:
        return await self._store.view(self.settings.ttl_ms)

    async def drain(self, member_id: str, draining: bool = True) -> bool:
        return await self._store.set_draining(member_id, draining)

    def _token_of(self, connection_id: str) -> int | None:
        lease = self._leases.get(connection_id)
        return None if lease is None else lease.fence.token

    def held(self) -> dict[str, HeldLease]:
        return dict(self._leases)

    # --- pulses: engines waiting for a renewal -----------------------------------------

    def pulse(self) -> None:
        self._pulse.set()
        self._pulse = asyncio.Event()

    async def next_pulse(self) -> None:
        await self._pulse.wait()

    # --- the tasks ---------------------------------------------------------------------

    async def _take(self, connection_id: str, *, running_only: bool) -> HeldLease | None:
        sent = self.clock.monotonic()
        token = await self._store.take(connection_id, self.info.id, self.settings.ttl_ms,
                                       running_only=running_only)
        if token is None:
            return None
        previous = self._leases.get(connection_id)
        if previous is not None:
            previous.lose()  # our own older token: whatever holds it must stop
        lease = HeldLease(self, connection_id, Fence(self.info.id, token), sent)
        self._leases[connection_id] = lease
        return lease

    async def _renew(self) -> None:
        sent = self.clock.monotonic()
        held = await self._store.renew(self.info, self.settings.ttl_ms)
        self.renewed_at = sent
        for connection_id, lease in list(self._leases.items()):
            if lease.taken_at < sent and held.get(connection_id) != lease.fence.token:
                del self._leases[connection_id]
                lease.lose()
                self._lost.add(connection_id)
                log.warning("engine lease lost", extra={"connection_id": connection_id,
                                                         "token": lease.fence.token})
        self.pulse()

    async def _renewing(self) -> None:
        while True:
            await self.clock.sleep(self.settings.renew_every_s)
            try:
                await self._renew()
            except Exception as exc:  # the database unreachable: engines pause at deadline
                log.warning("fleet lease renewal failed", extra={"error": str(exc)})

    async def _following(self, follow: Callable[[], Awaitable[None]]) -> None:
        """A follower ends when its feed does (the database went away): it starts again."""
        while True:
            try:
                await follow()
            except Exception as exc:
                log.warning("fleet change feed interrupted", extra={"error": str(exc)})
            await self.clock.sleep(self.settings.scan_s)

    async def _placing(self) -> None:
        while True:
            try:
                await self._place_once()
            except Exception:
                log.exception("fleet adoption round failed")
            await self.clock.sleep(self.settings.scan_s)

    async def _place_once(self) -> None:
        engines = self._engines
        assert engines is not None
        for connection_id in sorted(self._lost):
            self._lost.discard(connection_id)
            await engines.relinquish(connection_id)
        owned = sorted(self._leases)
        for connection_id in await self._store.stopped(owned) if owned else ():
            with contextlib.suppress(Exception):  # stopped through another daemon
                await engines.stop_here(connection_id)
        if self._requests is not None:  # a request whose notice was missed
            await self._requests.take(engines)
        view = await self.view()
        orphans = await self._store.orphans()
        if self._hub is not None:
            self._hub.orphaned(orphans)
        me = next((m for m in view.members if m.info.id == self.info.id), None)
        if me is not None and me.draining:
            await self._hand_over_one(engines)
            return
        now = self.clock.monotonic()
        self._orphaned_since = {c: self._orphaned_since.get(c, now) for c in orphans}
        await self._finish_stops(engines)
        counts = _loads(view)
        for connection_id in orphans:
            mine = counts.get(self.info.id, 0)
            eager = not counts or mine <= min(counts.values())
            if not eager and now - self._orphaned_since[connection_id] < 2 * self.settings.scan_s:
                continue
            lease = await self._take(connection_id, running_only=True)
            if lease is not None:
                counts[self.info.id] = mine + 1
                log.info("engine adopted", extra={"connection_id": connection_id,
                                                  "token": lease.fence.token})
                await engines.adopt(connection_id, lease)

    async def _finish_stops(self, engines: FleetEngines) -> None:
        """A StopEngine that found no member running the engine only marked it stopped:
        its orders are cancelled here, under the lease, after a reconciliation. A stop that
        cannot be finished (its connection disabled, say) is tried again a minute later."""
        now = self.clock.monotonic()
        for connection_id in await self._store.unfinished_stops():
            if now < self._stop_retry.get(connection_id, now):
                continue
            lease = await self._take(connection_id, running_only=False)
            if lease is not None:
                self._stop_retry[connection_id] = now + STOP_RETRY_S
                log.info("finishing a stop: cancelling its orders", extra={
                    "connection_id": connection_id})
                await engines.finish_stop(connection_id, lease)

    async def _hand_over_one(self, engines: FleetEngines) -> None:
        """Drain: one engine at a time stops here (orders left resting) and its lease is
        released, so another member adopts and reconciles it."""
        for connection_id in sorted(self._leases):
            lease = self._leases.pop(connection_id)  # its stopping is no news to the fleet
            await engines.relinquish(connection_id)
            await self._store.release(connection_id, lease.fence)
            log.info("engine handed over (drain)", extra={"connection_id": connection_id})
            return


def _placement(view: FleetView, connection_id: str, me: str, placing: Iterable[str]) -> str:
    """Who runs a start: the live member holding the engine's lease, else the live,
    non-draining member with the fewest engines (`placing`: starts on their way to a
    member count as its engines) -- `me` on a tie, else by id."""
    alive = {m.info.id for m in view.members if m.alive}
    for lease in view.leases:
        if lease.connection_id == connection_id and lease.live and lease.owner in alive:
            return lease.owner
    counts = _loads(view)
    for member in placing:
        if member in counts:
            counts[member] += 1
    if not counts:
        return me
    fewest = min(counts.values())
    if counts.get(me) == fewest:
        return me
    return min(counts, key=lambda member: (counts[member], member))


def _loads(view: FleetView) -> dict[str, int]:
    """Live leases per live, non-draining member."""
    counts = {m.info.id: 0 for m in view.members if m.alive and not m.draining}
    for lease in view.leases:
        if lease.live and lease.owner in counts:
            counts[lease.owner] += 1
    return counts
