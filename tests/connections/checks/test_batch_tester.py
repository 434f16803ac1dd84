"""BatchTester in process: selection, shared keys tested once, every result stored.

The real store and vault; a scripted exchange per connection (tests/connections/checks/
scripted.py), so what is shown is the batch's own bookkeeping.
"""

from __future__ import annotations

from collections import Counter

import pytest

from ctsd.connections.checks.batch import BatchProcessor
from ctsd.connections.checks.batch_tester import (
    BatchRequest,
    BatchTester,
    ItemResult,
    Progress,
    Summary,
)
from ctsd.connections.checks.results import FailureClass, TestStatus
from ctsd.connections.checks.settings import BatchSettings
from ctsd.connections.checks.tester import ConnectionTester, ConnectionTesterSettings
from ctsd.connections.model import CredentialsInput
from ctsd.errors import ExchangeFailure, FailedPrecondition, InvalidArgument, NotFound
from ctsd.wiring.check_probes import classify
from tests.connections.checks.scripted import ScriptedProbe, opening
from tests.connections.conftest import Domain, draft

pytestmark = pytest.mark.asyncio

OTHER_KEY = CredentialsInput(api_key="OTHERKEY-000042", api_secret="another-secret")


def batch_of(domain: Domain, probes: dict[str, ScriptedProbe]) -> BatchTester:
    tester = ConnectionTester(domain.credentials, opening(lambda conn: probes[conn.id]),
                              classify, ConnectionTesterSettings(timeout_s=5))
    return BatchTester(domain.repository, tester, domain.credentials, BatchProcessor(),
                       BatchSettings(concurrency=2))


async def test_connections_sharing_a_key_are_tested_once_and_all_get_the_result(
    domain: Domain,
) -> None:
    for cid in ("a", "b"):
        await domain.manager.create(draft(cid.upper()), cid)
    await domain.manager.create(draft("C", credentials=OTHER_KEY), "c")
    refused = ExchangeFailure.of(FailureClass.AUTHENTICATION, "binance: invalid key")
    probes = {"a": ScriptedProbe(), "b": ScriptedProbe(), "c": ScriptedProbe(
        balance_error=refused)}
    events = [e async for e in batch_of(domain, probes).run(BatchRequest())]
    items = {e.connection.id: e for e in events if isinstance(e, ItemResult)}
    assert set(items) == {"a", "b", "c"}
    assert (probes["a"].opened, probes["b"].opened, probes["c"].opened) == (1, 0, 1)
    assert items["b"].shared_from == "connections/a" and items["b"].result is items["a"].result
    assert items["c"].result.failure_class is FailureClass.AUTHENTICATION
    assert [e.done for e in events if isinstance(e, Progress)] == [1, 2, 3]
    summary = events[-1]
    assert isinstance(summary, Summary) and summary.total == 3
    assert summary.by_status == {TestStatus.SUCCESS: 2, TestStatus.FAILED: 1}
    assert summary.failures == {FailureClass.AUTHENTICATION: 1}
    stored = [(await domain.manager.get(cid)).last_test for cid in "abc"]
    assert Counter(t.status for t in stored if t is not None) == {
        TestStatus.SUCCESS: 2, TestStatus.FAILED: 1}


async def test_a_request_names_connections_or_filters_them_never_both(domain: Domain) -> None:
    await domain.manager.create(draft("On"), "on")
    await domain.manager.create(draft("Off", enabled=False), "off")
    batch = batch_of(domain, {"on": ScriptedProbe()})
    assert [c.id for c in await batch.select(BatchRequest(filter_text='exchange = "binance"'))
            ] == ["on"]  # a filter takes the enabled ones
    with pytest.raises(FailedPrecondition, match="off"):
        await batch.select(BatchRequest(connection_ids=("on", "off")))
    with pytest.raises(NotFound, match="'gone'"):
        await batch.select(BatchRequest(connection_ids=("gone",)))
    with pytest.raises(InvalidArgument, match="names or a filter"):
        await batch.select(BatchRequest(connection_ids=("on",), filter_text="enabled = true"))


@pytest.mark.parametrize(("request_", "field"), [
    (BatchRequest(concurrency=33), "concurrency"), (BatchRequest(priority=10), "priority"),
])
async def test_out_of_range_options_name_their_field(
    domain: Domain, request_: BatchRequest, field: str,
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        batch_of(domain, {}).options(request_)
    assert [v.field for v in caught.value.violations] == [field]
    defaults = batch_of(domain, {}).options(BatchRequest())
    assert (defaults.concurrency, defaults.priority) == (2, 5)
