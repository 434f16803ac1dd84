"""Each command against the fake service: the request it sends and what it prints.

The fake records requests, so these tests pin the wire contract the daemon
sees (field masks, filters, resource names) without depending on its rules.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TypeVar

import pytest

from cts.v1 import connection_pb2, connection_service_pb2

from .conftest import Runner, TtyInput
from .fake_service import FakeServer, sample_connection

SECRET = "s3cr3t-value-never-printed"
T = TypeVar("T")


def _only(fake: FakeServer, method: str) -> object:
    (request,) = fake.service.requests[method]
    return request


def _all(fake: FakeServer, method: str, kind: type[T]) -> list[T]:
    requests = fake.service.requests[method]
    assert all(isinstance(r, kind) for r in requests)
    return requests  # type: ignore[return-value]


def test_list_prints_an_aligned_table(cts: Runner) -> None:
    result = cts("connections", "list")
    assert result.code == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.startswith("NAME   DISPLAY NAME   EXCHANGE   API TYPE")
    assert row.split()[:2] == ["main", "Main"]
    assert header.index("API TYPE") == row.index("spot")


def test_list_flags_become_one_filter(cts: Runner, fake: FakeServer) -> None:
    result = cts(
        "connections", "list", "--exchange", "binance", "--api-type", "perpetual_futures",
        "--disabled", "--filter", "testnet = true", "--page-size", "5",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    request = _only(fake, "ListConnections")
    assert isinstance(request, connection_service_pb2.ListConnectionsRequest)
    assert request.filter == (
        'exchange = "binance" AND api_type = API_TYPE_PERPETUAL_FUTURES'
        " AND enabled = false AND testnet = true"
    )
    assert request.page_size == 5


def _pages() -> list[connection_service_pb2.ListConnectionsResponse]:
    return [
        connection_service_pb2.ListConnectionsResponse(
            connections=[sample_connection("connections/a")], next_page_token="1", total_size=2
        ),
        connection_service_pb2.ListConnectionsResponse(
            connections=[sample_connection("connections/b")], total_size=2
        ),
    ]


def test_list_follows_every_page_by_default(cts: Runner, fake: FakeServer) -> None:
    fake.service.pages = _pages()
    result = cts("connections", "list", "-o", "json")
    document = json.loads(result.stdout)
    assert [c["name"] for c in document["connections"]] == ["connections/a", "connections/b"]
    assert document["next_page_token"] == ""
    assert document["total_size"] == 2


def test_no_all_pages_returns_one_page_and_its_token(cts: Runner, fake: FakeServer) -> None:
    fake.service.pages = _pages()
    result = cts("connections", "list", "--no-all-pages", "-o", "json")
    document = json.loads(result.stdout)
    assert [c["name"] for c in document["connections"]] == ["connections/a"]
    assert document["next_page_token"] == "1"
    table = cts("connections", "list", "--no-all-pages")
    assert "--page-token 1" in table.stderr


def test_empty_list_says_so_on_stderr(cts: Runner, fake: FakeServer) -> None:
    fake.service.pages = [connection_service_pb2.ListConnectionsResponse()]
    result = cts("connections", "list")
    assert (result.code, result.stdout) == (0, "")
    assert "No connections found" in result.stderr


def test_get_accepts_id_or_name(cts: Runner, fake: FakeServer) -> None:
    assert cts("connections", "get", "main").code == 0
    assert cts("connections", "get", "connections/main").code == 0
    requests = _all(fake, "GetConnection", connection_service_pb2.GetConnectionRequest)
    names = [r.name for r in requests]
    assert names == ["connections/main", "connections/main"]


def test_add_sends_settings_and_secrets_from_stdin(cts: Runner, fake: FakeServer) -> None:
    result = cts(
        "connections", "add", "--exchange", "okx", "--api-type", "spot", "--name", "Main",
        "--id", "main", "--testnet", "--margin-mode", "isolated", "--position-mode", "hedge",
        "--market-data", "websocket", "--disabled", "--api-key", "KEY-1234", "--secret-stdin",
        stdin=io.StringIO(f"{SECRET}\npass-phrase\n"),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    request = _only(fake, "CreateConnection")
    assert isinstance(request, connection_service_pb2.CreateConnectionRequest)
    assert request.connection_id == "main"
    c = request.connection
    assert (c.exchange, c.display_name, c.testnet, c.enabled) == ("okx", "Main", True, False)
    assert c.api_type == connection_pb2.API_TYPE_SPOT
    assert c.margin_mode == connection_pb2.MARGIN_MODE_ISOLATED
    assert c.position_mode == connection_pb2.POSITION_MODE_HEDGE
    assert c.market_data_method == connection_pb2.MARKET_DATA_METHOD_WEBSOCKET
    assert (c.credentials.api_key, c.credentials.api_secret) == ("KEY-1234", SECRET)
    assert c.credentials.passphrase == "pass-phrase"
    assert "****1234" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_add_prompts_on_a_terminal_and_asks_for_a_passphrase_if_needed(
    cts: Runner, fake: FakeServer
) -> None:
    result = cts(
        "connections", "add", "--exchange", "okx", "--api-type", "spot", "--name", "Main",
        stdin=TtyInput("KEY-1234\n"), answers=[SECRET, "pass-phrase"],
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "API key: " in result.stderr and "Passphrase: " in result.stderr
    request = _only(fake, "CreateConnection")
    assert isinstance(request, connection_service_pb2.CreateConnectionRequest)
    credentials = request.connection.credentials
    assert (credentials.api_key, credentials.api_secret) == ("KEY-1234", SECRET)
    assert credentials.passphrase == "pass-phrase"


def test_add_without_a_secret_and_no_terminal_is_a_usage_error(
    cts: Runner, fake: FakeServer
) -> None:
    result = cts(
        "connections", "add", "--exchange", "binance", "--api-type", "spot", "--name", "Main",
        "--api-key", "KEY",
    )  # fmt: skip
    assert result.code == 2
    assert "--secret-stdin" in result.stderr
    assert fake.service.requests == {}


def test_there_is_no_secret_value_option(cts: Runner) -> None:
    result = cts(
        "connections", "add", "--exchange", "binance", "--api-type", "spot", "--name", "Main",
        "--api-key", "KEY", "--secret", SECRET,
    )  # fmt: skip
    assert result.code == 2


def test_edit_masks_exactly_the_given_fields(cts: Runner, fake: FakeServer) -> None:
    result = cts(
        "connections", "edit", "main", "--name", "Renamed", "--no-testnet", "--etag", "e1",
        "--secret-stdin", stdin=io.StringIO(SECRET + "\n"),
    )  # fmt: skip
    assert result.code == 0, result.stderr
    request = _only(fake, "UpdateConnection")
    assert isinstance(request, connection_service_pb2.UpdateConnectionRequest)
    assert list(request.update_mask.paths) == [
        "display_name",
        "testnet",
        "credentials.api_secret",
    ]
    assert request.connection.name == "connections/main"
    assert request.connection.etag == "e1"
    assert request.connection.testnet is False
    assert request.connection.credentials.api_secret == SECRET


def test_edit_with_a_secret_file_and_passphrase(
    cts: Runner, fake: FakeServer, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"{SECRET}\nnew-pass\n")
    result = cts("connections", "edit", "main", "--secret-file", str(secret_file))
    assert result.code == 0, result.stderr
    request = _only(fake, "UpdateConnection")
    assert isinstance(request, connection_service_pb2.UpdateConnectionRequest)
    assert list(request.update_mask.paths) == ["credentials.api_secret", "credentials.passphrase"]


def test_edit_with_nothing_to_change_is_a_usage_error(cts: Runner, fake: FakeServer) -> None:
    result = cts("connections", "edit", "main")
    assert result.code == 2
    assert "nothing to change" in result.stderr
    assert "UpdateConnection" not in fake.service.requests


def test_rm_enable_disable(cts: Runner, fake: FakeServer) -> None:
    assert cts("connections", "rm", "main", "--force", "--etag", "e1").stdout == (
        "connections/main deleted\n"
    )
    delete = _only(fake, "DeleteConnection")
    assert isinstance(delete, connection_service_pb2.DeleteConnectionRequest)
    assert (delete.name, delete.force, delete.etag) == ("connections/main", True, "e1")
    assert cts("connections", "disable", "main").stdout == "connections/main disabled\n"
    assert cts("connections", "enable", "main").stdout == "connections/main enabled\n"
    kind = connection_service_pb2.SetConnectionEnabledRequest
    requests = _all(fake, "SetConnectionEnabled", kind)
    states = [r.enabled for r in requests]
    assert states == [False, True]


def test_rm_json_is_one_document(cts: Runner) -> None:
    result = cts("connections", "rm", "main", "-o", "json")
    assert json.loads(result.stdout) == {"name": "connections/main", "deleted": True}


def test_exchanges_table_and_json(cts: Runner) -> None:
    table = cts("exchanges")
    assert table.code == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["NAME", "DISPLAY", "NAME"]
    assert "request_weight 1200/1m ip weighted" in table.stdout
    document = json.loads(cts("exchanges", "-o", "json").stdout)
    assert [e["exchange_id"] for e in document["exchanges"]] == ["binance", "okx"]


@pytest.mark.parametrize(
    "argv",
    [
        ["-o", "json", "connections", "get", "main"],
        ["connections", "-o", "json", "get", "main"],
        ["connections", "get", "main", "-o", "json"],
    ],
)
def test_output_option_is_accepted_anywhere(cts: Runner, argv: list[str]) -> None:
    result = cts(*argv)
    assert json.loads(result.stdout)["name"] == "connections/main"


def test_usage_errors_exit_2(cts: Runner) -> None:
    assert cts().code == 2
    assert cts("connections").code == 2
    assert cts("connections", "list", "--api-type", "futures").code == 2
    assert cts("connections", "get").code == 2
    assert cts("--timeout", "0", "exchanges").code == 2


def test_edit_prompt_secret_replaces_only_the_secret(cts: Runner, fake: FakeServer) -> None:
    result = cts(
        "connections", "edit", "main", "--prompt-secret", stdin=TtyInput(""), answers=[SECRET]
    )
    assert result.code == 0, result.stderr
    request = _only(fake, "UpdateConnection")
    assert isinstance(request, connection_service_pb2.UpdateConnectionRequest)
    assert list(request.update_mask.paths) == ["credentials.api_secret"]
    assert "Passphrase" not in result.stderr  # the stored connection has none
    assert SECRET not in result.stdout + result.stderr
