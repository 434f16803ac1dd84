"""ConnectionTests in process: a finished test is stored; a disabled or abandoned one is not."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from ctsd.connections.checks.batch import BatchProcessor
from ctsd.connections.checks.batch_tester import BatchTester
from ctsd.connections.checks.results import TestResult, TestStatus
from ctsd.connections.checks.service import ConnectionTests
from ctsd.errors import FailedPrecondition
from tests.connections.checks.scripted import ScriptedProbe, make_tester
from tests.connections.conftest import Domain, draft

pytestmark = pytest.mark.asyncio


def service(domain: Domain, probe: ScriptedProbe) -> ConnectionTests:
    tester = make_tester(probe, credentials=domain.credentials)
    return ConnectionTests(domain.repository, tester, BatchTester(
        domain.repository, tester, domain.credentials, BatchProcessor()))


async def test_a_finished_test_is_streamed_then_stored_as_the_last_test(domain: Domain) -> None:
    await domain.manager.create(draft(), "main")
    events = [e async for e in service(domain, ScriptedProbe(uid="100000042")).test("main")]
    result = events[-1]
    assert isinstance(result, TestResult) and result.status is TestStatus.SUCCESS
    stored = await domain.manager.get("main")
    # the UID is the connection's; the last test reads as its row keeps it, without one
    assert stored.last_test == replace(result, account_uid=None)
    assert stored.account_uid == "100000042"
    assert stored.revision == 1  # a test is no change of the connection: etags stay valid


async def test_a_disabled_connection_is_not_tested(domain: Domain) -> None:
    await domain.manager.create(draft(enabled=False), "off")
    probe = ScriptedProbe()
    with pytest.raises(FailedPrecondition, match="disabled"):
        [e async for e in service(domain, probe).test("off")]
    assert probe.opened == 0


async def test_a_client_that_leaves_mid_test_leaves_nothing_behind(domain: Domain) -> None:
    await domain.manager.create(draft(), "main")
    hang = asyncio.Event()
    probe = ScriptedProbe(hang=hang)  # the balance step waits until told
    stream = service(domain, probe).test("main")
    seen = [await anext(stream) for _ in range(3)]  # credentials, markets, clock
    await stream.aclose()  # what a cancelled RPC does to its generator
    hang.set()  # had the test survived, it could finish now
    await asyncio.sleep(0)
    assert [getattr(e, "step", "") for e in seen] == ["credentials", "markets", "clock"]
    assert probe.closed and (await domain.manager.get("main")).last_test is None
