"""The secret's bytes appear nowhere: database, WAL, logs, or any RPC answer."""

from __future__ import annotations

import grpc
from google.protobuf import field_mask_pb2

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess
from tests.support.rpc import API_KEY, PASSPHRASE, SECRET, binance_spot, rpc_error

NEEDLES = [s.encode() for s in (SECRET, PASSPHRASE, "n3w-" + SECRET)]


def test_secret_bytes_are_nowhere(daemon: DaemonProcess) -> None:
    answers: list[bytes] = []
    with grpc.insecure_channel(daemon.address) as ch:
        stub = sgrpc.ConnectionServiceStub(ch)
        okx = binance_spot(
            "OKX",
            exchange="okx",
            credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET, passphrase=PASSPHRASE),
        )
        answers.append(
            stub.CreateConnection(
                spb.CreateConnectionRequest(connection=okx, connection_id="okx")
            ).SerializeToString()
        )
        answers.append(
            stub.CreateConnection(
                spb.CreateConnectionRequest(connection=binance_spot(), connection_id="bin")
            ).SerializeToString()
        )
        change = pb.Connection(
            name="connections/bin", credentials=pb.Credentials(api_secret="n3w-" + SECRET)
        )
        answers.append(
            stub.UpdateConnection(
                spb.UpdateConnectionRequest(
                    connection=change,
                    update_mask=field_mask_pb2.FieldMask(paths=["credentials.api_secret"]),
                )
            ).SerializeToString()
        )
        answers.append(stub.ListConnections(spb.ListConnectionsRequest()).SerializeToString())
        answers.append(
            stub.GetConnection(spb.GetConnectionRequest(name="connections/okx")).SerializeToString()
        )
        # Errors must not echo secrets either: a bad secret, a duplicate with a secret.
        too_long = binance_spot(
            "Long", credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET * 40)
        )
        err = rpc_error(
            lambda: stub.CreateConnection(spb.CreateConnectionRequest(connection=too_long))
        )
        answers.append(repr(err.trailing_metadata()).encode() + (err.details() or "").encode())
        dup = rpc_error(
            lambda: stub.CreateConnection(
                spb.CreateConnectionRequest(connection=binance_spot(), connection_id="bin")
            )
        )
        answers.append((dup.details() or "").encode())
        bad_passphrase = binance_spot(
            "P",
            credentials=pb.Credentials(api_key=API_KEY, api_secret=SECRET, passphrase=PASSPHRASE),
        )
        err = rpc_error(
            lambda: stub.CreateConnection(spb.CreateConnectionRequest(connection=bad_passphrase))
        )
        answers.append(repr(err.trailing_metadata()).encode() + (err.details() or "").encode())
    daemon.stop()
    files = {p.name: p.read_bytes() for p in daemon.state_dir.iterdir() if p.is_file()}
    assert "ctsd.db" in files
    files["ctsd.log"] = daemon.log_path.read_bytes()
    for needle in NEEDLES:
        for name, content in files.items():
            assert needle not in content, f"secret found in {name}"
        for answer in answers:
            assert needle not in answer
