"""`cts fleet`: the daemons sharing one database, their engines and leases; drain.

cts fleet                   members (alive, draining, engines) and every engine lease
cts fleet drain MEMBER      hand the member's engines over to the others (rolling upgrade)
cts fleet drain MEMBER --undo
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable

from cts.cli.client import Context, open_channel
from cts.cli.errors import EXIT_OK
from cts.cli.output import JSON, age, dump_json, message_to_json, render_table, timestamp, yes_no
from cts.v1 import fleet_service_pb2 as fpb
from cts.v1 import fleet_service_pb2_grpc as fgrpc

MEMBER_HEADERS = ("MEMBER", "ADDRESS", "VERSION", "ALIVE", "HEARTBEAT", "DRAINING", "ENGINES")
LEASE_HEADERS = ("ENGINE", "OWNER", "TOKEN", "LIVE", "EXPIRES")


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add `fleet` (and `fleet drain`) to the top-level parser."""
    summary = "the daemons of the fleet, their engines and leases"
    group = subparsers.add_parser("fleet", parents=[common], help=summary, description=summary)
    group.set_defaults(handler=show_fleet)
    commands = group.add_subparsers(dest="command", metavar="COMMAND")
    drain = commands.add_parser(
        "drain", parents=[common], help="move a member's engines to the others",
        description="Hand the member's engines over one at a time (each stops there with "
                    "its orders resting and another member adopts it after reconciling).")
    drain.add_argument("member", help="the member's id, as `cts fleet` lists it")
    drain.add_argument("--undo", action="store_true", help="clear the draining mark")
    drain.set_defaults(handler=drain_member)


def show_fleet(args: argparse.Namespace, ctx: Context) -> int:
    with open_channel(ctx.address, ctx.security) as channel:
        fleet = fgrpc.FleetServiceStub(channel).GetFleet(fpb.GetFleetRequest(),
                                                         timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(fleet)))
        return EXIT_OK
    ctx.emit(f"answered by {fleet.answered_by}")
    ctx.emit(members_table(fleet.members))
    ctx.emit(leases_table(fleet.leases))
    return EXIT_OK


def drain_member(args: argparse.Namespace, ctx: Context) -> int:
    request = fpb.DrainMemberRequest(member=args.member, undo=args.undo)
    with open_channel(ctx.address, ctx.security) as channel:
        answer = fgrpc.FleetServiceStub(channel).DrainMember(request, timeout=ctx.timeout)
    if ctx.output == JSON:
        ctx.emit(dump_json(message_to_json(answer)))
    else:
        ctx.emit(members_table([answer.member]))
    return EXIT_OK


def members_table(members: Iterable[fpb.FleetMember]) -> str:
    rows = [[m.id, m.address, m.version, yes_no(m.alive), age(m.heartbeat_time),
             yes_no(m.draining), str(len(m.engines))] for m in members]
    return render_table(MEMBER_HEADERS, rows)


def leases_table(leases: Iterable[fpb.EngineLease]) -> str:
    rows = [[lease.engine.removeprefix("connections/").removesuffix("/engine"),
             lease.owner or "-", str(lease.token), yes_no(lease.live),
             timestamp(lease.expire_time)] for lease in leases]
    return render_table(LEASE_HEADERS, rows)
