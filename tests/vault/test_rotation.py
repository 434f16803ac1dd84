"""`ctsd rotate-key` re-seals everything and every secret still opens afterwards."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from ctsd.vault.master_key import read_key_file
from ctsd.vault.sealer import Keyring
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import API_KEY, PASSPHRASE, SECRET, binance_spot


def open_all(state_dir: Path, key_file: Path) -> dict[tuple[str, str], str]:
    ring = Keyring(read_key_file(key_file))
    with sqlite3.connect(state_dir / "ctsd.db") as db:
        rows = db.execute("SELECT connection_id, field, blob FROM sealed_secrets").fetchall()
    return {(cid, field): ring.open(cid, field, bytes(blob)) for cid, field, blob in rows}


def rotate(daemon: DaemonProcess, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctsd", "rotate-key", "--state-dir", str(daemon.state_dir), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_rotate_key_keeps_every_secret_usable(daemon: DaemonProcess) -> None:
    with grpc.insecure_channel(daemon.address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        stub.CreateConnection(
            spb.CreateConnectionRequest(connection=binance_spot(), connection_id="a")
        )
        okx = binance_spot(
            "OKX",
            exchange="okx",
            credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET, passphrase=PASSPHRASE),
        )
        stub.CreateConnection(spb.CreateConnectionRequest(connection=okx, connection_id="b"))
    key_file = daemon.state_dir / "master-key"
    before = open_all(daemon.state_dir, key_file)
    old_id = read_key_file(key_file).key_id

    running = rotate(daemon)
    assert running.returncode != 0 and "in use" in running.stderr  # refuses while serving

    daemon.stop()
    done = rotate(daemon)
    assert done.returncode == 0, done.stderr
    assert "re-sealed 5 secrets" in done.stdout
    new_key = read_key_file(key_file)
    assert new_key.key_id != old_id
    assert (key_file.stat().st_mode & 0o777) == 0o600
    assert open_all(daemon.state_dir, key_file) == before
    assert before[("b", "passphrase")] == PASSPHRASE
    daemon.start()  # the daemon accepts the rotated database and key
    assert SECRET not in done.stdout + done.stderr


def test_rotate_refuses_an_unmanaged_key_without_new_key_file(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    daemon.stop()
    external = tmp_path / "ext-key"
    (daemon.state_dir / "master-key").rename(external)
    done = rotate(daemon, "--master-key-file", str(external))
    assert done.returncode == 78 and "--new-key-file" in done.stderr
    out = tmp_path / "new-key"
    done = rotate(daemon, "--master-key-file", str(external), "--new-key-file", str(out))
    assert done.returncode == 0, done.stderr
    assert (out.stat().st_mode & 0o777) == 0o600


def test_daemon_refuses_a_wrong_master_key(daemon: DaemonProcess, tmp_path: Path) -> None:
    with grpc.insecure_channel(daemon.address) as ch:
        sgrpc.ConnectionServiceStub(ch).CreateConnection(
            spb.CreateConnectionRequest(connection=binance_spot(), connection_id="a")
        )
    daemon.stop()
    wrong = tmp_path / "wrong"
    wrong.write_bytes(b"\x01" * 32)
    wrong.chmod(0o600)
    proc = daemon.run_refused("--master-key-file", str(wrong))
    assert proc.returncode == 78
    assert "sealed under master key" in proc.stderr
