"""A client without credentials flooding a daemon that requires a token: every call refused
at once (UNAUTHENTICATED, then RESOURCE_EXHAUSTED past the refusal budget), a handful of
log lines instead of one per call, and the real client served a moment later. Request
ids in the log are the daemon's: a client's `x-request-id` is logged beside its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.robustness.tally import Tally
from tests.support.daemon_process import DaemonProcess, configured_daemon

TOKEN = "flood-test-token-0123456789abcdef"
FLOOD = 800


@pytest.fixture(scope="module")
def guarded() -> Iterator[DaemonProcess]:
    with configured_daemon('[auth]\ntoken_file = "{root}/token"\nopen_services = ["health"]\n',
                           files={"token": TOKEN}) as daemon:
        yield daemon


async def flood(address: str, metadata: tuple[tuple[str, str], ...]) -> Counter[str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)

        async def one() -> str:
            try:
                await stub.ListExchanges(spb.ListExchangesRequest(), metadata=metadata,
                                         timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code().name
            return "OK"

        return Counter(await asyncio.gather(*(one() for _ in range(FLOOD))))


def lines(log: Path | str, *marks: str) -> list[str]:
    return [line for line in str(log).splitlines() if all(m in line for m in marks)]


def test_a_flood_without_credentials_is_refused_quietly(guarded: DaemonProcess) -> None:
    tally = Tally("unauthenticated flood")
    before = len(guarded.logs().splitlines())
    started = time.monotonic()
    codes = asyncio.run(flood(guarded.address, (("authorization", "Bearer wrong-token"),)))
    elapsed = time.monotonic() - started
    served = asyncio.run(flood(guarded.address, (("authorization", f"Bearer {TOKEN}"),)))
    log = "\n".join(guarded.logs().splitlines()[before:])
    refusal_lines = lines(log, 'msg="calls refused"')
    access_lines = lines(log, "msg=rpc", "code=UNAUTHENTICATED") + lines(
        log, "msg=rpc", "code=RESOURCE_EXHAUSTED")
    tally.tried = FLOOD
    tally.survived = codes["UNAUTHENTICATED"] + codes["RESOURCE_EXHAUSTED"]
    tally.lost = FLOOD - tally.survived
    tally.notes = [f"{FLOOD} calls with a wrong token in {elapsed:.2f}s: {dict(codes)}; "
                   f"{len(refusal_lines)} refusal lines, {len(access_lines)} access lines; "
                   f"then with the token: {dict(served)}"]
    tally.report()
    assert set(codes) <= {"UNAUTHENTICATED", "RESOURCE_EXHAUSTED"}, codes
    assert codes["RESOURCE_EXHAUSTED"] > 0  # the refusal budget held
    assert 1 <= len(refusal_lines) <= 3 and not access_lines
    assert "refused=" in refusal_lines[0] and TOKEN not in log and "wrong-token" not in log
    assert served.get("OK", 0) > 0 and set(served) <= {"OK", "RESOURCE_EXHAUSTED"}


def test_the_logged_request_id_is_the_daemons_own(guarded: DaemonProcess) -> None:
    with grpc.insecure_channel(guarded.address) as channel:
        sgrpc.ConnectionServiceStub(channel).ListExchanges(
            spb.ListExchangesRequest(), timeout=10,
            metadata=(("authorization", f"Bearer {TOKEN}"), ("x-request-id", "chosen-id-7")))
    (line,) = lines(guarded.logs(), "client_request_id=chosen-id-7")
    assert "request_id=chosen-id-7" not in line.replace("client_request_id", "")
