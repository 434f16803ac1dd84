"""`cts` as a process against a real `ctsd`: what users and scripts actually see.

Every run goes through the console entry (`python -m cts.cli.main`), with
stdin piped, so these tests also pin the non-interactive behaviour scripts
rely on: exit codes, one JSON document on stdout, one error line on stderr.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.daemon_process import DaemonProcess, configured_daemon

SECRET = "Sup3r-s3cret-value-0123456789"
PASSPHRASE = "okx-pass-phrase-42"
API_KEY = "AKIA-test-key-abcd1234"


@pytest.fixture
def daemon(empty_daemon: DaemonProcess) -> DaemonProcess:
    """The module's daemon, holding no connection when each test begins (`empty_daemon`,
    tests/conftest.py): the `cts` processes are what these tests run, not a daemon each."""
    return empty_daemon


def cts(
    daemon: DaemonProcess | None,
    *argv: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `cts --addr <daemon> argv...` and capture everything it printed."""
    address = ["--addr", daemon.address] if daemon is not None else []
    return subprocess.run(
        [sys.executable, "-m", "cts.cli.main", *address, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def add(daemon: DaemonProcess, conn_id: str, *extra: str, exchange: str = "binance") -> None:
    stdin = f"{SECRET}\n{PASSPHRASE}\n" if exchange == "okx" else f"{SECRET}\n"
    result = cts(
        daemon, "connections", "add", "--exchange", exchange, "--api-type", "spot",
        "--name", f"Account {conn_id}", "--id", conn_id, "--api-key", API_KEY,
        "--secret-stdin", *extra, stdin=stdin,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def detail(text: str) -> dict[str, str]:
    """The `Label:  value` lines of a detail view as a dict."""
    pairs = (line.split(":", 1) for line in text.splitlines())
    return {label: value.strip() for label, value in pairs}


def assert_one_error_line(result: subprocess.CompletedProcess[str], prefix: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(prefix), result.stderr


def test_exchanges_table_and_json(daemon: DaemonProcess) -> None:
    table = cts(daemon, "exchanges")
    assert table.returncode == 0, table.stderr
    listed, supported = table.stdout.split("\n\n")
    header, *rows = listed.splitlines()
    assert header.split()[:2] == ["NAME", "DISPLAY"]
    assert {row.split()[0] for row in rows} >= {"binance", "bybit", "okx", "kraken"}
    okx = next(row for row in rows if row.startswith("okx"))
    assert "required" in okx
    header, *rows = supported.splitlines()
    assert header.split() == ["EXCHANGE", "API", "TYPE", "KEY", "TEST", "PAPER", "LIVE",
                              "STREAMS", "NOTE"]
    by_row = {tuple(row.split()[:2]): row.split()[2:6] for row in rows}
    assert by_row[("kraken", "spot")] == ["yes", "yes", "yes", "yes"]  # streams too
    assert by_row[("kraken", "margin")] == ["yes", "yes", "yes", "yes"]  # the spot book's
    assert by_row[("binance", "options")] == ["yes", "yes", "yes", "no"]  # polled
    assert by_row[("okx", "options")] == ["yes", "no", "no", "no"]  # coin-margined
    assert ("kraken", "options") not in by_row
    document = json.loads(cts(daemon, "exchanges", "-o", "json").stdout)
    by_id = {e["exchange_id"]: e for e in document["exchanges"]}
    assert by_id["okx"]["passphrase_required"] is True
    assert "API_TYPE_SPOT" in by_id["binance"]["api_types"]
    support = by_id["binance"]["api_type_support"]
    assert [s["api_type"] for s in support] == by_id["binance"]["api_types"]
    assert support[0]["key_test"] is True and support[0]["paper_engines"] is True


def test_connection_lifecycle_in_tables(daemon: DaemonProcess) -> None:
    add(daemon, "main")
    listed = cts(daemon, "connections", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    for column in ("NAME", "DISPLAY NAME", "EXCHANGE", "API TYPE", "KEY", "LAST TEST"):
        assert column in header
    assert row.split()[:2] == ["main", "Account"]
    assert header.index("API TYPE") == row.index("spot")
    assert "****1234" in row

    shown = cts(daemon, "connections", "get", "connections/main")
    assert shown.returncode == 0, shown.stderr
    fields = detail(shown.stdout)
    assert fields["Display name"] == "Account main"
    assert (fields["API key"], fields["API secret"]) == ("****1234", "set")

    edited = cts(daemon, "connections", "edit", "main", "--name", "Renamed", "--testnet")
    assert edited.returncode == 0, edited.stderr
    assert detail(edited.stdout)["Display name"] == "Renamed"
    assert detail(edited.stdout)["Testnet"] == "yes"

    assert cts(daemon, "connections", "disable", "main").stdout == "connections/main disabled\n"
    header, row = cts(daemon, "connections", "list", "--disabled").stdout.splitlines()
    assert row[header.index("ENABLED") :].split()[0] == "no"
    assert cts(daemon, "connections", "enable", "main").stdout == "connections/main enabled\n"

    removed = cts(daemon, "connections", "rm", "main")
    assert (removed.returncode, removed.stdout) == (0, "connections/main deleted\n")
    empty = cts(daemon, "connections", "list")
    assert (empty.returncode, empty.stdout) == (0, "")


def test_json_output_is_one_document(daemon: DaemonProcess) -> None:
    add(daemon, "alpha", exchange="okx")
    got = json.loads(cts(daemon, "connections", "get", "alpha", "-o", "json").stdout)
    assert got["name"] == "connections/alpha"
    assert got["api_type"] == "API_TYPE_SPOT"
    assert got["credentials_info"] == {
        "api_key_set": True,
        "api_key_hint": "****1234",
        "api_secret_set": True,
        "passphrase_set": True,
    }
    listed = json.loads(cts(daemon, "-o", "json", "connections", "list").stdout)
    assert list(listed) == ["connections", "next_page_token", "total_size"]
    assert [c["name"] for c in listed["connections"]] == ["connections/alpha"]
    edited = cts(daemon, "connections", "edit", "alpha", "--disable", "-o", "json")
    assert json.loads(edited.stdout)["enabled"] is False
    removed = cts(daemon, "connections", "rm", "alpha", "-o", "json")
    assert json.loads(removed.stdout) == {"name": "connections/alpha", "deleted": True}


def test_list_filters_and_pages(daemon: DaemonProcess) -> None:
    add(daemon, "a")
    add(daemon, "b", "--disabled")
    add(daemon, "c", exchange="okx")

    def names(*argv: str) -> list[str]:
        result = cts(daemon, "connections", "list", "-o", "json", *argv)
        assert result.returncode == 0, result.stderr
        connections = json.loads(result.stdout)["connections"]
        return [c["name"].removeprefix("connections/") for c in connections]

    assert names("--page-size", "1") == ["a", "b", "c"]
    assert names("--exchange", "okx") == ["c"]
    assert names("--disabled") == ["b"]
    assert names("--enabled", "--exchange", "binance") == ["a"]
    assert names("--api-type", "spot", "--filter", 'exchange = "binance"') == ["a", "b"]
    first = cts(daemon, "connections", "list", "--page-size", "2", "--no-all-pages", "-o", "json")
    one_page = json.loads(first.stdout)
    assert len(one_page["connections"]) == 2 and one_page["next_page_token"]
    assert one_page["total_size"] == 3
    rest = names("--page-token", one_page["next_page_token"], "--no-all-pages")
    assert rest == ["c"]


def test_secrets_never_appear_in_cli_output(daemon: DaemonProcess, tmp_path: Path) -> None:
    outputs: list[subprocess.CompletedProcess[str]] = []

    def run(*argv: str, stdin: str = "") -> int:
        outputs.append(cts(daemon, *argv, stdin=stdin))
        return outputs[-1].returncode

    created = run(
        "connections", "add", "--exchange", "okx", "--api-type", "spot", "--name", "OKX",
        "--id", "okx-main", "--api-key", API_KEY, "--secret-stdin",
        stdin=f"{SECRET}\n{PASSPHRASE}\n",
    )  # fmt: skip
    assert created == 0, outputs[-1].stderr
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"{SECRET}-2\n{PASSPHRASE}-2\n")
    assert run("connections", "edit", "okx-main", "--secret-file", str(secret_file)) == 0
    for fmt in ("table", "json"):
        assert run("connections", "list", "-o", fmt) == 0
        assert run("connections", "get", "okx-main", "-o", fmt) == 0
    # Failures of requests that carry the secret must not echo it either.
    rejected = run(
        "connections", "add", "--exchange", "nope", "--api-type", "spot", "--name", "Bad",
        "--api-key", API_KEY, "--secret-stdin", stdin=f"{SECRET}\n",
    )  # fmt: skip
    assert rejected == 1
    too_many_lines = f"{SECRET}\nx\ny\n"
    assert run("connections", "edit", "okx-main", "--secret-stdin", stdin=too_many_lines) == 2
    for result in outputs:
        for value in (SECRET, PASSPHRASE):
            assert value not in result.stdout
            assert value not in result.stderr


def test_rpc_errors_exit_1_with_one_line(daemon: DaemonProcess) -> None:
    unknown = cts(
        daemon, "connections", "add", "--exchange", "foo", "--api-type", "spot",
        "--name", "Foo", "--api-key", API_KEY, "--secret-stdin", stdin=f"{SECRET}\n",
    )  # fmt: skip
    assert_one_error_line(unknown, "error: INVALID_ARGUMENT: ")
    assert "connection.exchange: " in unknown.stderr and "foo" in unknown.stderr

    assert_one_error_line(cts(daemon, "connections", "get", "ghost"), "error: NOT_FOUND: ")
    add(daemon, "main")
    duplicate = cts(
        daemon, "connections", "add", "--exchange", "binance", "--api-type", "spot",
        "--name", "Other", "--id", "main", "--api-key", API_KEY, "--secret-stdin",
        stdin=f"{SECRET}\n",
    )  # fmt: skip
    assert_one_error_line(duplicate, "error: ALREADY_EXISTS: ")
    stale = cts(daemon, "connections", "edit", "main", "--name", "X", "--etag", 'W/"stale"')
    assert_one_error_line(stale, "error: ABORTED: ")
    assert_one_error_line(
        cts(daemon, "connections", "rm", "main", "--etag", 'W/"stale"'), "error: ABORTED: "
    )
    assert_one_error_line(
        cts(daemon, "connections", "list", "--filter", "colour = red"), "error: INVALID_ARGUMENT: "
    )


def test_etag_from_get_makes_edit_safe(daemon: DaemonProcess) -> None:
    add(daemon, "main")
    etag = json.loads(cts(daemon, "connections", "get", "main", "-o", "json").stdout)["etag"]
    first = cts(daemon, "connections", "edit", "main", "--name", "First", "--etag", etag)
    assert first.returncode == 0, first.stderr
    second = cts(daemon, "connections", "edit", "main", "--name", "Second", "--etag", etag)
    assert_one_error_line(second, "error: ABORTED: ")


@pytest.mark.parametrize(
    ("argv", "stdin"),
    [
        # no secret source and stdin is not a terminal
        (["connections", "add", "--exchange", "binance", "--api-type", "spot", "--name", "N",
          "--api-key", API_KEY], ""),
        (["connections", "add", "--exchange", "binance", "--name", "N", "--secret-stdin"], "s\n"),
        (["connections", "list", "--api-type", "futures"], ""),
        (["connections", "edit", "main"], ""),
        (["connections", "edit", "main", "--secret-stdin"], ""),
        (["connections", "frobnicate"], ""),
        (["--addr", "http://localhost:1", "exchanges"], ""),
        ([], ""),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(daemon: DaemonProcess, argv: list[str], stdin: str) -> None:
    result = cts(daemon, *argv, stdin=stdin)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""


def test_unreachable_daemon_exits_1_naming_the_address(tmp_path: Path) -> None:
    address = f"unix:{tmp_path}/absent.sock"
    result = cts(None, "--addr", address, "--timeout", "5", "connections", "list")
    assert_one_error_line(result, f"error: UNAVAILABLE: cannot reach ctsd at {address}")


def test_stopped_daemon_is_unavailable() -> None:
    with configured_daemon("") as daemon:  # its own: it stops it
        daemon.stop()
        result = cts(daemon, "exchanges")
    assert_one_error_line(result, f"error: UNAVAILABLE: cannot reach ctsd at {daemon.address}")


def test_cts_addr_environment_variable(daemon: DaemonProcess) -> None:
    result = cts(None, "exchanges", env={"CTS_ADDR": daemon.address})
    assert result.returncode == 0, result.stderr


def _read_until(fd: int, token: bytes, seen: bytearray, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while token not in seen:
        if time.monotonic() > deadline:
            raise TimeoutError(f"never saw {token!r}; got {bytes(seen)!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen.extend(chunk)


def test_prompt_on_a_terminal_does_not_echo_secrets(daemon: DaemonProcess) -> None:
    """A person at a terminal types key, secret and (for OKX) passphrase; only the key echoes."""
    argv = [
        sys.executable, "-m", "cts.cli.main", "--addr", daemon.address, "connections", "add",
        "--exchange", "okx", "--api-type", "spot", "--name", "Typed", "--id", "typed",
    ]  # fmt: skip
    pid, fd = pty.fork()
    if pid == 0:  # the child: become cts on the pseudo-terminal
        os.execv(sys.executable, argv)
    seen = bytearray()
    try:
        _read_until(fd, b"API key: ", seen)
        os.write(fd, API_KEY.encode() + b"\n")
        _read_until(fd, b"API secret: ", seen)
        os.write(fd, SECRET.encode() + b"\n")
        _read_until(fd, b"Passphrase: ", seen)
        os.write(fd, PASSPHRASE.encode() + b"\n")
        _read_until(fd, b"Etag:", seen)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, bytes(seen)
    assert SECRET.encode() not in seen and PASSPHRASE.encode() not in seen
    shown = json.loads(cts(daemon, "connections", "get", "typed", "-o", "json").stdout)
    assert shown["credentials_info"]["passphrase_set"] is True


def test_a_socket_in_a_directory_others_may_write_is_refused(tmp_path: Path) -> None:
    """Another user could have put their own socket there and would get the secret."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # someone else's "daemon"
    listener.bind(str(shared / "ctsd.sock"))
    listener.listen(1)
    listener.setblocking(False)
    try:
        result = cts(None, "--addr", f"unix:{shared}/ctsd.sock", "connections", "add",
                     "--id", "x", "--exchange", "binance", "--api-type", "spot", "--name", "X",
                     "--api-key", "AKEY-0123456789", "--secret-stdin", stdin="a-secret\n")
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
    assert result.returncode == 2 and "another user could stand in" in result.stderr
