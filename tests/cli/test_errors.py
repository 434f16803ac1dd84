"""RPC failures become one line with the code, the message and each bad field."""

from __future__ import annotations

import io
from pathlib import Path

from google.rpc import code_pb2, status_pb2

from cts.cli.main import run

from .conftest import Runner
from .fake_service import FakeServer, bad_request


def test_invalid_argument_names_every_field(cts: Runner, fake: FakeServer) -> None:
    fake.service.failures["ListExchanges"] = bad_request(
        "invalid connection",
        ("connection.exchange", 'unknown exchange "foo"'),
        ("connection.display_name", "must not be empty"),
    )
    result = cts("exchanges")
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: INVALID_ARGUMENT: invalid connection (connection.exchange: unknown exchange "
        '"foo"; connection.display_name: must not be empty)\n'
    )


def test_a_message_that_is_the_violation_is_not_repeated(cts: Runner, fake: FakeServer) -> None:
    fake.service.failures["GetConnection"] = bad_request(
        "name: must look like connections/ID", ("name", "must look like connections/ID")
    )
    result = cts("connections", "get", "a/b")
    assert result.stderr == "error: INVALID_ARGUMENT: name: must look like connections/ID\n"


def test_other_codes_print_code_and_message(cts: Runner, fake: FakeServer) -> None:
    fake.service.failures["GetConnection"] = status_pb2.Status(
        code=code_pb2.NOT_FOUND, message='connection "connections/x" not found'
    )
    result = cts("connections", "get", "x")
    assert (result.code, result.stderr) == (
        1,
        'error: NOT_FOUND: connection "connections/x" not found\n',
    )


def test_a_multi_line_message_stays_on_one_line(cts: Runner, fake: FakeServer) -> None:
    fake.service.failures["GetConnection"] = status_pb2.Status(
        code=code_pb2.ABORTED, message="etag mismatch\nre-read and retry"
    )
    result = cts("connections", "get", "x")
    assert result.stderr == "error: ABORTED: etag mismatch re-read and retry\n"


def test_unreachable_daemon_names_the_address(tmp_path: Path) -> None:
    err = io.StringIO()
    address = f"unix:{tmp_path}/nobody.sock"
    code = run(["--addr", address, "exchanges"], stdout=io.StringIO(), stderr=err)
    assert code == 1
    line = err.getvalue()
    assert line.count("\n") == 1
    assert line.startswith(f"error: UNAVAILABLE: cannot reach ctsd at {address}")


def test_a_bad_address_is_a_usage_error() -> None:
    err = io.StringIO()
    assert run(["--addr", "http://x", "exchanges"], stderr=err) == 2
    assert "unix:PATH or tcp://HOST:PORT" in err.getvalue()
