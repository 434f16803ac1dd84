"""`cts connections test`, `cts status`, `cts health`, `cts verify` against ctsd and the simulator.

Most runs are in-process (`cts.cli.main.run` with captured streams) for
speed; one runs `cts` as a process, as a user or a systemd timer would.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

import grpc
import pytest

from cts.cli.main import run
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.conn_tests import SimConnection, sim_connection
from tests.support.daemon_process import DaemonProcess
from tests.support.simulator import SimulatorThread

from .conftest import Result, TtyInput


class TtyOutput(io.StringIO):
    """A stderr that claims to be a terminal, so the progress bar is drawn."""

    def isatty(self) -> bool:
        return True


def cts(daemon: DaemonProcess, *argv: str, stderr: io.StringIO | None = None) -> Result:
    out, err = io.StringIO(), stderr or io.StringIO()
    try:
        code = run(["--addr", daemon.address, *argv], stdin=TtyInput(""), stdout=out, stderr=err)
    except SystemExit as exit_:  # argparse's usage errors
        code = int(exit_.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def made(sim_daemon: DaemonProcess, sim: SimulatorThread) -> dict[str, SimConnection]:
    """Two OKX connections shared by the module: one good, one with a mistyped secret."""
    with grpc.insecure_channel(sim_daemon.address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)
        return {
            "good": sim_connection(stub, sim, "cli-good", "okx"),
            "typo": sim_connection(stub, sim, "cli-typo", "okx", stored_secret="mistyped"),
        }


def test_one_test_prints_each_step_live_then_the_result(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    result = cts(sim_daemon, "connections", "test", made["good"].id)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    steps = [line.split()[2] for line in lines[:7]]
    assert steps == ["credentials", "markets", "clock", "balance", "permissions", "api_type",
                     "latency"]  # fmt: skip
    assert "Result:" in result.stdout and "SUCCESS" in result.stdout
    assert "ASSET" in result.stdout and "USDT" in result.stdout


def test_a_failed_test_names_the_class_and_remedy_and_exits_1(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    result = cts(sim_daemon, "connections", "test", made["typo"].name)
    assert result.code == 1
    assert "FAILED (authentication)" in result.stdout
    assert "Remedy:" in result.stdout
    assert made["typo"].secret not in result.stdout + result.stderr


def test_json_output_is_one_document_with_the_result(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    result = cts(sim_daemon, "connections", "test", made["good"].id, "-o", "json")
    document = json.loads(result.stdout)
    assert document["name"] == made["good"].name
    assert document["result"]["status"] == "TEST_STATUS_SUCCESS"
    assert document["result"]["log_lines"][0]["step"] == "credentials"


def test_a_batch_draws_a_progress_bar_then_a_table_and_a_summary(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    terminal = TtyOutput()
    result = cts(sim_daemon, "connections", "test", "--exchange", "okx", stderr=terminal)
    assert result.code == 1  # the mistyped secret failed
    assert "\r[" in result.stderr and "2/2" in result.stderr
    table = result.stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "EXCHANGE", "STATUS"]
    rows = {line.split()[0]: line for line in table[1:3]}
    assert "SUCCESS" in rows["cli-good"] and "authentication" in rows["cli-typo"]
    assert table[3].startswith("2 tested in ") and "authentication 1" in table[3]


def test_a_batch_as_json_and_usage_mistakes(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    result = cts(sim_daemon, "connections", "test", "--filter", 'exchange = "okx"', "-o", "json")
    document = json.loads(result.stdout)
    assert document["summary"]["total"] == 2 and len(document["results"]) == 2
    assert cts(sim_daemon, "connections", "test").code == 2
    assert cts(sim_daemon, "connections", "test", "x", "--all").code == 2


def test_status_health_and_verify(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    cts(sim_daemon, "connections", "test", made["good"].id)
    status = cts(sim_daemon, "status")
    assert status.code == 0 and "Schema version:" in status.stdout and "Store:" in status.stdout
    assert "SCOPE" in status.stdout and "okx/" in status.stdout
    health = cts(sim_daemon, "health", "--exchange", "okx")
    assert health.code == 0 and health.stdout.splitlines()[0].startswith("NAME")
    assert "cli-good" in health.stdout and "buckets" in health.stdout
    verify = cts(sim_daemon, "verify")
    assert verify.code == 0, verify.stdout
    assert "all checks passed" in verify.stdout and "exchange_endpoints" in verify.stdout


def test_cts_as_a_process_exits_by_the_result(
    sim_daemon: DaemonProcess, made: dict[str, SimConnection]
) -> None:
    def cts_process(conn: SimConnection) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cts.cli.main", "--addr", sim_daemon.address,
             "connections", "test", conn.id],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    assert cts_process(made["good"]).returncode == 0
    failed = cts_process(made["typo"])
    assert failed.returncode == 1 and "authentication" in failed.stdout
