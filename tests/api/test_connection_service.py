"""ConnectionService against the real daemon process: every RPC, success and error."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import (
    API_KEY,
    PASSPHRASE,
    SECRET,
    binance_spot,
    error_reason,
    kraken_spot,
    rpc_error,
    violations,
)

Code = grpc.StatusCode


@pytest.fixture
def stub(empty_daemon: DaemonProcess) -> Iterator[sgrpc.ConnectionServiceStub]:
    with grpc.insecure_channel(empty_daemon.address) as channel:
        yield sgrpc.ConnectionServiceStub(channel)


def create(stub: sgrpc.ConnectionServiceStub, conn: pb.Connection, cid: str = "") -> pb.Connection:
    return stub.CreateConnection(spb.CreateConnectionRequest(connection=conn, connection_id=cid))


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def test_create_returns_masked_credentials_and_get_matches(
    stub: sgrpc.ConnectionServiceStub,
) -> None:
    made = create(stub, binance_spot(), "main")
    assert made.name == "connections/main"
    assert made.credentials_info.api_key_set and made.credentials_info.api_secret_set
    assert made.credentials_info.api_key_hint == "****" + API_KEY[-4:]
    assert not made.credentials_info.passphrase_set
    assert not made.HasField("credentials")
    assert made.margin_mode == pb.MARGIN_MODE_CROSS
    assert made.position_mode == pb.POSITION_MODE_ONE_WAY
    assert made.market_data_method == pb.MARKET_DATA_METHOD_REST
    assert made.etag and made.create_time.seconds > 0
    got = stub.GetConnection(spb.GetConnectionRequest(name="connections/main"))
    assert got == made


def test_create_generates_an_id_when_none_given(stub: sgrpc.ConnectionServiceStub) -> None:
    made = create(stub, binance_spot())
    assert made.name.startswith("connections/c-")


def test_validate_only_stores_nothing(stub: sgrpc.ConnectionServiceStub) -> None:
    req = spb.CreateConnectionRequest(
        connection=binance_spot(), connection_id="dry", validate_only=True
    )
    assert stub.CreateConnection(req).name == "connections/dry"
    err = rpc_error(lambda: stub.GetConnection(spb.GetConnectionRequest(name="connections/dry")))
    assert err.code() == Code.NOT_FOUND


@pytest.mark.parametrize(
    ("conn", "cid", "fields"),
    [
        (binance_spot(exchange="nasdaq"), "", {"connection.exchange"}),
        (
            kraken_spot(api_type=pb.API_TYPE_PERPETUAL_FUTURES),
            "",
            {"connection.api_type"},
        ),
        (binance_spot(exchange="okx"), "", {"connection.credentials.passphrase"}),
        (binance_spot(display_name=""), "", {"connection.display_name"}),
        (binance_spot(display_name="x" * 101), "", {"connection.display_name"}),
        (binance_spot(), "Not_Valid", {"connection_id"}),
        (binance_spot(api_type=pb.API_TYPE_UNSPECIFIED), "", {"connection.api_type"}),
        (binance_spot(api_type=42), "", {"connection.api_type"}),
        (kraken_spot(testnet=True), "", {"connection.testnet"}),
        (binance_spot(exchange="kraken"), "", {"connection.credentials.api_secret"}),
        (binance_spot(position_mode=pb.POSITION_MODE_HEDGE), "", {"connection.position_mode"}),
        (
            binance_spot(credentials=pb.Credentials(api_key="k" * 300, api_secret=SECRET)),
            "",
            {"connection.credentials.api_key"},
        ),
        (
            binance_spot(
                credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET, passphrase="p")
            ),
            "",
            {"connection.credentials.passphrase"},
        ),
        (
            binance_spot(credentials=pb.Credentials()),
            "",
            {"connection.credentials.api_key", "connection.credentials.api_secret"},
        ),
        (
            binance_spot(display_name="", exchange="nope"),
            "9",
            {"connection.display_name", "connection.exchange", "connection_id"},
        ),
    ],
)
def test_create_rejects_bad_input_naming_each_field(
    stub: sgrpc.ConnectionServiceStub, conn: pb.Connection, cid: str, fields: set[str]
) -> None:
    err = rpc_error(lambda: create(stub, conn, cid))
    assert err.code() == Code.INVALID_ARGUMENT
    assert set(violations(err)) == fields
    assert SECRET not in (err.details() or "")
    listed = stub.ListConnections(spb.ListConnectionsRequest())
    assert listed.total_size == 0  # lost nothing, stored nothing


def test_create_without_connection_is_invalid(stub: sgrpc.ConnectionServiceStub) -> None:
    err = rpc_error(lambda: stub.CreateConnection(spb.CreateConnectionRequest()))
    assert err.code() == Code.INVALID_ARGUMENT
    assert set(violations(err)) == {"connection"}


def test_okx_needs_and_keeps_a_passphrase(stub: sgrpc.ConnectionServiceStub) -> None:
    okx = binance_spot(
        display_name="OKX",
        exchange="okx",
        credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET, passphrase=PASSPHRASE),
    )
    assert create(stub, okx, "okx").credentials_info.passphrase_set


def test_duplicate_id_or_display_name_already_exists(stub: sgrpc.ConnectionServiceStub) -> None:
    create(stub, binance_spot("One"), "one")
    err = rpc_error(lambda: create(stub, binance_spot("Two"), "one"))
    assert err.code() == Code.ALREADY_EXISTS
    err = rpc_error(lambda: create(stub, binance_spot("One"), "two"))
    assert err.code() == Code.ALREADY_EXISTS
    assert "display name" in (err.details() or "")


@pytest.mark.parametrize(
    "name", ["", "connections/", "conn/x", "connections/a/b", "x" * 300, "connections/BAD"]
)
def test_bad_resource_names_are_invalid(stub: sgrpc.ConnectionServiceStub, name: str) -> None:
    err = rpc_error(lambda: stub.GetConnection(spb.GetConnectionRequest(name=name)))
    assert err.code() == Code.INVALID_ARGUMENT
    assert set(violations(err)) == {"name"}


def test_unknown_connection_is_not_found(stub: sgrpc.ConnectionServiceStub) -> None:
    for call in (
        lambda: stub.GetConnection(spb.GetConnectionRequest(name="connections/ghost")),
        lambda: stub.DeleteConnection(spb.DeleteConnectionRequest(name="connections/ghost")),
        lambda: stub.SetConnectionEnabled(
            spb.SetConnectionEnabledRequest(name="connections/ghost", enabled=True)
        ),
        lambda: stub.UpdateConnection(
            spb.UpdateConnectionRequest(
                connection=pb.Connection(name="connections/ghost", display_name="x"),
                update_mask=mask("display_name"),
            )
        ),
    ):
        assert rpc_error(call).code() == Code.NOT_FOUND


def test_list_filters_and_pages(stub: sgrpc.ConnectionServiceStub) -> None:
    for i in range(7):
        create(stub, binance_spot(f"b{i}", enabled=i % 2 == 0), f"b{i}")
    create(
        stub,
        binance_spot("by", exchange="bybit", api_type=pb.API_TYPE_PERPETUAL_FUTURES),
        "by",
    )
    seen: list[str] = []
    token = ""
    flt = 'exchange = "binance" AND enabled = true'
    while True:
        page = stub.ListConnections(
            spb.ListConnectionsRequest(filter=flt, page_size=2, page_token=token)
        )
        assert page.total_size == 4
        seen += [c.name for c in page.connections]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"connections/b{i}" for i in (0, 2, 4, 6)]
    futures = stub.ListConnections(
        spb.ListConnectionsRequest(filter="api_type = perpetual_futures")
    )
    assert [c.name for c in futures.connections] == ["connections/by"]
    not_binance = stub.ListConnections(spb.ListConnectionsRequest(filter='exchange != "binance"'))
    assert not_binance.total_size == 1


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (spb.ListConnectionsRequest(filter="exchange ="), "filter"),
        (spb.ListConnectionsRequest(filter="colour = red"), "filter"),
        (spb.ListConnectionsRequest(filter='enabled = "yes"'), "filter"),
        (spb.ListConnectionsRequest(filter="exchange = binance OR enabled = true"), "filter"),
        (spb.ListConnectionsRequest(filter="api_type = futures"), "filter"),
        (spb.ListConnectionsRequest(filter="x" * 2000), "filter"),
        (spb.ListConnectionsRequest(page_token="not-a-token"), "page_token"),
        (spb.ListConnectionsRequest(page_token="eyJhIjotMSwiZiI6IngifQ"), "page_token"),
        (spb.ListConnectionsRequest(page_size=-1), "page_size"),
    ],
)
def test_list_rejects_bad_filters_and_tokens(
    stub: sgrpc.ConnectionServiceStub, request_: spb.ListConnectionsRequest, field: str
) -> None:
    err = rpc_error(lambda: stub.ListConnections(request_))
    assert err.code() == Code.INVALID_ARGUMENT
    assert set(violations(err)) == {field}


def test_page_token_is_bound_to_its_filter(stub: sgrpc.ConnectionServiceStub) -> None:
    for i in range(3):
        create(stub, binance_spot(f"n{i}"), f"n{i}")
    page = stub.ListConnections(spb.ListConnectionsRequest(page_size=1))
    err = rpc_error(
        lambda: stub.ListConnections(
            spb.ListConnectionsRequest(
                page_size=1, page_token=page.next_page_token, filter="enabled = true"
            )
        )
    )
    assert err.code() == Code.INVALID_ARGUMENT
    assert "different filter" in violations(err)["page_token"]


def test_update_changes_only_masked_fields(stub: sgrpc.ConnectionServiceStub) -> None:
    made = create(stub, binance_spot(), "main")
    change = pb.Connection(
        name=made.name,
        display_name="Renamed",
        api_type=pb.API_TYPE_PERPETUAL_FUTURES,  # not in the mask: ignored
        etag=made.etag,
    )
    updated = stub.UpdateConnection(
        spb.UpdateConnectionRequest(connection=change, update_mask=mask("display_name"))
    )
    assert updated.display_name == "Renamed"
    assert updated.api_type == pb.API_TYPE_SPOT
    assert updated.etag != made.etag
    assert updated.update_time.ToDatetime() >= made.update_time.ToDatetime()


def test_update_credentials_replaces_the_key_hint(stub: sgrpc.ConnectionServiceStub) -> None:
    made = create(stub, binance_spot(), "main")
    change = pb.Connection(
        name=made.name,
        credentials=pb.Credentials(api_key="NEWKEY-000000000-WXYZ", api_secret="n3w"),
    )
    updated = stub.UpdateConnection(
        spb.UpdateConnectionRequest(connection=change, update_mask=mask("credentials"))
    )
    assert updated.credentials_info.api_key_hint == "****WXYZ"


def test_stale_etag_is_aborted_and_changes_nothing(stub: sgrpc.ConnectionServiceStub) -> None:
    made = create(stub, binance_spot(), "main")
    first = pb.Connection(name=made.name, display_name="First", etag=made.etag)
    stub.UpdateConnection(
        spb.UpdateConnectionRequest(connection=first, update_mask=mask("display_name"))
    )
    second = pb.Connection(name=made.name, display_name="Second", etag=made.etag)
    err = rpc_error(
        lambda: stub.UpdateConnection(
            spb.UpdateConnectionRequest(connection=second, update_mask=mask("display_name"))
        )
    )
    assert err.code() == Code.ABORTED
    assert error_reason(err) == "ETAG_MISMATCH"
    assert stub.GetConnection(spb.GetConnectionRequest(name=made.name)).display_name == "First"
    err = rpc_error(
        lambda: stub.DeleteConnection(spb.DeleteConnectionRequest(name=made.name, etag=made.etag))
    )
    assert err.code() == Code.ABORTED


@pytest.mark.parametrize(
    ("paths", "change", "field"),
    [
        (["bogus"], {}, "update_mask"),
        (["exchange"], {"exchange": "bybit"}, "update_mask"),
        (["etag"], {}, "update_mask"),
        ([], {}, "update_mask"),
        (["api_type"], {"api_type": pb.API_TYPE_OPTIONS}, "connection.api_type"),
        (["display_name"], {"display_name": "  padded "}, "connection.display_name"),
        (["credentials.api_secret"], {}, "connection.credentials.api_secret"),
        (
            ["testnet", "position_mode"],
            {"position_mode": pb.POSITION_MODE_HEDGE},
            "connection.position_mode",
        ),
    ],
)
def test_update_rejects_bad_masks_and_values(
    stub: sgrpc.ConnectionServiceStub, paths: list[str], change: dict[str, object], field: str
) -> None:
    made = create(stub, kraken_spot(), "k")
    msg = pb.Connection(name=made.name, **change)  # type: ignore[arg-type]
    err = rpc_error(
        lambda: stub.UpdateConnection(
            spb.UpdateConnectionRequest(connection=msg, update_mask=mask(*paths))
        )
    )
    assert err.code() == Code.INVALID_ARGUMENT
    assert field in violations(err)
    assert stub.GetConnection(spb.GetConnectionRequest(name=made.name)).etag == made.etag


def test_set_enabled_and_delete(stub: sgrpc.ConnectionServiceStub) -> None:
    made = create(stub, binance_spot(), "main")
    assert not made.enabled
    on = stub.SetConnectionEnabled(spb.SetConnectionEnabledRequest(name=made.name, enabled=True))
    assert on.enabled
    err = rpc_error(
        lambda: stub.SetConnectionEnabled(
            spb.SetConnectionEnabledRequest(name=made.name, enabled=False, etag=made.etag)
        )
    )
    assert err.code() == Code.ABORTED
    stub.DeleteConnection(spb.DeleteConnectionRequest(name=made.name, etag=on.etag))
    err = rpc_error(lambda: stub.GetConnection(spb.GetConnectionRequest(name=made.name)))
    assert err.code() == Code.NOT_FOUND


def test_a_client_cannot_make_a_connection_predefined(stub: sgrpc.ConnectionServiceStub) -> None:
    """Only the operator's [[connections]] can (tests/api/test_predefined_connections.py)."""
    err = rpc_error(lambda: create(stub, binance_spot(predefined=True), "pre"))
    assert err.code() == Code.INVALID_ARGUMENT and "connection.predefined" in violations(err)
    err = rpc_error(lambda: stub.GetConnection(spb.GetConnectionRequest(name="connections/pre")))
    assert err.code() == Code.NOT_FOUND


def test_list_exchanges_describes_all_four(stub: sgrpc.ConnectionServiceStub) -> None:
    exchanges = {e.exchange_id: e for e in stub.ListExchanges(spb.ListExchangesRequest()).exchanges}
    assert set(exchanges) == {"binance", "bybit", "okx", "kraken"}
    assert exchanges["okx"].passphrase_required
    assert not exchanges["kraken"].testnet_supported
    assert pb.API_TYPE_PERPETUAL_FUTURES not in exchanges["kraken"].api_types
    weight = next(r for r in exchanges["binance"].rate_limits if r.name == "request_weight")
    assert (weight.limit, weight.interval.seconds, weight.weighted) == (1200, 60, True)
    assert exchanges["bybit"].rate_limits[0].limit == 100


def test_data_survives_a_restart(daemon: DaemonProcess) -> None:
    with grpc.insecure_channel(daemon.address) as ch:
        made = create(sgrpc.ConnectionServiceStub(ch), binance_spot(), "keep")
    daemon.restart()
    with grpc.insecure_channel(daemon.address) as ch:
        got = sgrpc.ConnectionServiceStub(ch).GetConnection(
            spb.GetConnectionRequest(name=made.name)
        )
    assert got == made
