"""A client flooding the daemon gets RESOURCE_EXHAUSTED for what is over its per-peer rate,
at once; everything else is answered, health checks are never refused, and the daemon
serves normally as soon as the flood stops."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from ctsd.api.request_rate import peer_key
from tests.robustness.tally import Tally
from tests.support.daemon_process import DaemonProcess, configured_daemon

RATE = 50
FLOOD = 400


@pytest.fixture(scope="module")
def limited() -> Iterator[DaemonProcess]:
    with configured_daemon(f"[daemon]\ncalls_per_second_per_peer = {RATE}\n") as daemon:
        yield daemon


async def flood(address: str) -> tuple[Counter[str], Counter[str], float]:
    """FLOOD ListExchanges at once, with health checks among them; (codes, health codes, s)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)

        async def one() -> str:
            try:
                await stub.ListExchanges(spb.ListExchangesRequest(), timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return "OK"

        async def probe() -> str:
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

        started = time.monotonic()
        codes = await asyncio.gather(*(one() for _ in range(FLOOD)))
        probes = await asyncio.gather(*(probe() for _ in range(20)))
        return Counter(codes), Counter(probes), time.monotonic() - started


def test_a_flood_is_refused_over_the_rate_and_nothing_else_changes(
    limited: DaemonProcess,
) -> None:
    tally = Tally("request rate: one client's flood")
    codes, probes, seconds = asyncio.run(flood(limited.address))
    for code, count in codes.items():
        for _ in range(count):
            tally.answer(getattr(grpc.StatusCode, code))
    tally.notes.append(f"{FLOOD} calls in {seconds:.2f} s at {RATE}/s: {dict(codes)}; "
                       f"health {dict(probes)}")
    tally.report()
    assert set(codes) <= {"OK", "RESOURCE_EXHAUSTED"}
    assert codes["RESOURCE_EXHAUSTED"] >= FLOOD - 2 * RATE - seconds * RATE
    assert codes["OK"] >= RATE  # the burst a leaky bucket lets through
    assert probes == Counter({"SERVING": 20})  # health is never refused
    time.sleep(1.2)  # the bucket drains: the next calls go through
    with grpc.insecure_channel(limited.address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)
        for _ in range(10):
            stub.ListExchanges(spb.ListExchangesRequest(), timeout=10)


@pytest.mark.parametrize(("peer", "key"), [
    ("ipv4:10.0.0.7:51234", "ipv4:10.0.0.7"),
    ("ipv6:[::1]:5", "ipv6:[::1]"),
    ("unix:/run/ctsd/ctsd.sock", "unix"),
    ("", ""),
])
def test_peers_are_told_apart_by_address_not_port(peer: str, key: str) -> None:
    assert peer_key(peer) == key
