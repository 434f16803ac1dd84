"""cts.v1.FleetService: the fleet's members and engine leases, and drain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cts.v1 import fleet_service_pb2 as fpb
from cts.v1 import fleet_service_pb2_grpc as fgrpc
from ctsd.api.engine_codec import engine_name
from ctsd.api.handlers import Context
from ctsd.api.wellknown import timestamp
from ctsd.errors import FailedPrecondition, InvalidArgument, NotFound

if TYPE_CHECKING:  # a daemon outside a fleet serves this service without loading the fleet
    from ctsd.fleet.member import FleetMember
    from ctsd.fleet.model import FleetView, Member


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def encode_member(member: Member, view: FleetView) -> fpb.FleetMember:
    info = member.info
    engines = sorted(engine_name(lease.connection_id) for lease in view.leases
                     if lease.live and lease.owner == info.id)
    return fpb.FleetMember(
        id=info.id, address=info.address, version=info.version,
        schema_version=info.schema_version, join_time=timestamp(_time(member.started_ms)),
        heartbeat_time=timestamp(_time(member.heartbeat_ms)), draining=member.draining,
        alive=member.alive, engines=engines)


def encode_fleet(view: FleetView, answered_by: str) -> fpb.GetFleetResponse:
    return fpb.GetFleetResponse(
        members=[encode_member(m, view) for m in view.members],
        leases=[fpb.EngineLease(engine=engine_name(lease.connection_id), owner=lease.owner,
                                token=lease.token, expire_time=timestamp(_time(lease.expires_ms)),
                                live=lease.live) for lease in view.leases],
        answered_by=answered_by)


class FleetServicer(fgrpc.FleetServiceServicer):
    def __init__(self, fleet: FleetMember | None) -> None:
        self._fleet = fleet

    def _member(self) -> FleetMember:
        if self._fleet is None:
            raise FailedPrecondition("this daemon is not in a fleet (its store is not shared: "
                                     "set [store] url to PostgreSQL, or [fleet] engine_leases)")
        return self._fleet

    async def GetFleet(self, request: fpb.GetFleetRequest,
                       context: Context) -> fpb.GetFleetResponse:
        fleet = self._member()
        return encode_fleet(await fleet.view(), fleet.info.id)

    async def DrainMember(self, request: fpb.DrainMemberRequest,
                          context: Context) -> fpb.DrainMemberResponse:
        fleet = self._member()
        member_id = request.member.strip()
        if not member_id:
            raise InvalidArgument.field("member", "name the member to drain (see GetFleet)")
        if not await fleet.drain(member_id, not request.undo):
            raise NotFound(f"no fleet member {member_id!r}")
        view = await fleet.view()
        found = next(m for m in view.members if m.info.id == member_id)
        return fpb.DrainMemberResponse(member=encode_member(found, view))
