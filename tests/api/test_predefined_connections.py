"""`[[connections]]` in the operator's TOML: created at start with credentials read from
private files, updated on SIGHUP writing only what differs, released when dropped; inline
credentials refused (exit 78 at start, the running state kept on SIGHUP); deleting a
predefined connection needs force. Against the real daemon process."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess, remove_tree, short_tempdir
from tests.support.rpc import rpc_error

ENTRY = """
[[connections]]
id = "main"
display_name = "{name}"
exchange = "binance"
api_type = "spot"
api_key_file = "{root}/main.key"
api_secret_file = "{root}/main.secret"
"""


class Operator:
    """Writes the daemon's TOML and secret files, and asks it to reload."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "ctsd.toml"
        self.daemon = DaemonProcess(root, ["--config", str(self.config)])

    def secret(self, name: str, value: str) -> None:
        path = self.root / name
        path.write_text(value + "\n")
        path.chmod(0o600)

    def declare(self, *entries: str) -> None:
        self.config.write_text("".join(e.replace("{root}", str(self.root)) for e in entries))

    def reloads(self) -> int:
        """Reloads done or refused so far (each SIGHUP ends in one of the two lines)."""
        logs = self.daemon.logs()
        return logs.count("msg=reloaded") + logs.count('msg="reload refused')

    def reload(self) -> None:
        before = self.reloads()
        assert self.daemon.proc is not None
        self.daemon.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while self.reloads() == before:
            assert time.monotonic() < deadline, "no reload"
            time.sleep(0.05)

    def get(self, cid: str = "main") -> object:
        with grpc.insecure_channel(self.daemon.address) as channel:
            return sgrpc.ConnectionServiceStub(channel).GetConnection(
                spb.GetConnectionRequest(name=f"connections/{cid}"), timeout=10)


@pytest.fixture
def operator() -> Iterator[Operator]:
    made = Operator(short_tempdir())
    try:
        yield made
    finally:
        made.daemon.stop()
        remove_tree(made.root)


def test_declared_connections_follow_the_file(operator: Operator) -> None:
    operator.secret("main.key", "AKIAPREDEFINED00001234")
    operator.secret("main.secret", "first-secret-value")
    operator.declare(ENTRY.replace("{name}", "Main"))
    operator.daemon.start()
    first = operator.get()
    assert first.predefined and first.credentials_info.api_key_hint == "****1234"  # type: ignore[attr-defined]
    operator.reload()  # nothing changed: nothing written
    assert operator.get().etag == first.etag  # type: ignore[attr-defined]
    operator.secret("main.secret", "second-secret-value")
    operator.declare(ENTRY.replace("{name}", "Main renamed"))
    operator.reload()
    second = operator.get()
    assert second.display_name == "Main renamed" and second.etag != first.etag  # type: ignore[attr-defined]
    operator.declare('[[connections]]\nid = "main"\ndisplay_name = "X"\nexchange = "binance"\n'
                     'api_type = "spot"\napi_secret = "inline-NEVER"\n')
    operator.reload()  # refused: the running state stays
    assert operator.get().display_name == "Main renamed"  # type: ignore[attr-defined]
    operator.declare("")
    operator.reload()
    assert not operator.get().predefined  # type: ignore[attr-defined]
    log = operator.daemon.logs()
    assert "second-secret-value" not in log and "inline-NEVER" not in log
    assert "reload refused" in log


def test_a_predefined_connection_needs_force_to_delete(operator: Operator) -> None:
    operator.secret("main.key", "AKIAPREDEFINED00001234")
    operator.secret("main.secret", "a-secret")
    operator.declare(ENTRY.replace("{name}", "Main"))
    operator.daemon.start()
    with grpc.insecure_channel(operator.daemon.address) as channel:
        stub = sgrpc.ConnectionServiceStub(channel)
        err = rpc_error(lambda: stub.DeleteConnection(
            spb.DeleteConnectionRequest(name="connections/main")))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
        stub.DeleteConnection(spb.DeleteConnectionRequest(name="connections/main", force=True))


@pytest.mark.parametrize("entry", [
    ENTRY.replace("{name}", "Main") + 'api_key = "inline"\n',
    ENTRY.replace("{name}", "Main").replace("main.secret", "readable.secret"),
    ENTRY.replace("{name}", "Main").replace('"binance"', '"nowhere"'),
], ids=["inline", "readable-file", "unknown-exchange"])
def test_a_bad_entry_is_exit_78_with_one_line(operator: Operator, entry: str) -> None:
    operator.secret("main.key", "AKIAPREDEFINED00001234")
    operator.secret("main.secret", "a-secret")
    operator.secret("readable.secret", "a-secret")
    (operator.root / "readable.secret").chmod(0o644)
    operator.declare(entry)
    with pytest.raises(RuntimeError, match="exited with 78"):
        operator.daemon.start()
    lines = [line for line in operator.daemon.logs().splitlines() if line.startswith("ctsd: ")]
    assert len(lines) == 1 and "a-secret" not in operator.daemon.logs()
