"""Log lines: secrets redacted by construction, request ids stamped, level changeable."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from cts.v1 import connection_pb2 as pb
from ctsd import logs

SECRET = "s3cr3t-SHOULD-NEVER-LEAK"


class Lines(io.StringIO):
    def read_json(self) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.getvalue().splitlines()]
        self.seek(0)
        self.truncate()
        return lines


@pytest.fixture
def out() -> Iterator[Lines]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = Lines()
    logs.configure("debug", "json", stream)
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_secret_named_fields_messages_and_bytes_are_never_written(
    out: Lines,
) -> None:
    conn = pb.Connection(credentials=pb.Credentials(api_key="k", api_secret=SECRET))
    log = logging.getLogger("ctsd.test")
    log.info(
        "saved %s",
        conn,
        extra={"api_secret": SECRET, "auth_token": SECRET, "request": conn, "blob": SECRET.encode(),
               "count": 3},
    )  # fmt: skip
    assert SECRET not in out.getvalue()
    (line,) = out.read_json()
    assert line["msg"] == "saved <Connection>"
    assert line["api_secret"] == line["auth_token"] == line["request"] == logs.REDACTED
    assert line["blob"] == f"<{len(SECRET)} bytes>" and line["count"] == 3


def test_lines_logged_during_an_rpc_carry_its_request_id(
    out: Lines,
) -> None:
    log = logging.getLogger("ctsd.test")
    token = logs.request_id.set("req-42")
    try:
        log.warning("inside")
    finally:
        logs.request_id.reset(token)
    log.warning("outside")
    inside, outside = out.read_json()
    assert inside["request_id"] == "req-42" and "request_id" not in outside


def test_set_level_changes_what_is_written(
    out: Lines,
) -> None:
    log = logging.getLogger("ctsd.test")
    logs.set_level("warning")
    log.info("hidden")
    logs.set_level("debug")
    log.debug("shown")
    assert [line["msg"] for line in out.read_json()] == ["shown"]
    assert logging.getLogger("aiosqlite").level == logging.INFO  # chatty libraries stay quiet


def test_an_answer_the_client_left_before_is_one_debug_line(out: Lines) -> None:
    grpc_log = logging.getLogger("grpc._cython.cygrpc")
    try:
        raise RuntimeError("Failed execute_batch")
    except RuntimeError:
        grpc_log.exception("ExecuteBatchError raised in core by servicer method [%s]",
                           "/cts.v1.ConnectionService/SetConnectionEnabled")
    (line,) = out.read_json()
    assert (line["level"], line["msg"]) == ("debug", "answer not delivered: the client had gone")
    assert line["method"] == "/cts.v1.ConnectionService/SetConnectionEnabled"
    assert "error" not in line
    logs.set_level("info")
    grpc_log.exception("ExecuteBatchError raised in core by servicer method [x]")
    assert out.read_json() == []
