"""A default daemon reaches SERVING without the subsystems it does not use at start.

Start-up time is mostly imports (each module compiled and executed, dataclasses
built); it crept from 0.37 s to 1.03 s as the fleet, the market-data hub, margin,
options and perpetual engines and more were imported by every start. The list of
what stays off is `tests.support.start_path.OFF_START_PATH`; an import that brings
one back fails here, naming the module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import grpc

from cts.v1 import connection_pb2 as pb
from cts.v1 import connection_service_pb2 as spb
from cts.v1 import connection_service_pb2_grpc as sgrpc
from tests.support.daemon_process import DaemonProcess
from tests.support.start_path import OFF_START_PATH, imported_by_daemon_modules, kept_off

AT_SERVING = """
import json, logging, os, runpy, sys

class AtServing(logging.Filter):
    # notes sys.modules when the daemon logs that it serves (the record of `ctsd.daemon`)
    def filter(self, record):
        if record.getMessage() == "serving":
            with open(os.environ["CTS_MODULES_AT_SERVING"], "w") as out:
                json.dump(sorted(sys.modules), out)
        return True

logging.getLogger("ctsd").addFilter(AtServing())
runpy.run_module("ctsd", run_name="__main__")
"""
"""`ctsd` as `python -m ctsd` runs it, plus a note of the modules loaded at SERVING."""


def test_importing_the_daemon_leaves_the_listed_subsystems_alone() -> None:
    assert imported_by_daemon_modules() == []


def test_a_default_daemon_serves_without_the_listed_subsystems(tmp_path: Path) -> None:
    noted = tmp_path / "modules.json"
    daemon = DaemonProcess(tmp_path, log_level="info",
                           env={**os.environ, "CTS_MODULES_AT_SERVING": str(noted)},
                           launcher=(sys.executable, "-c", AT_SERVING))
    try:
        daemon.start()
        with grpc.insecure_channel(daemon.address) as channel:  # the read model has a row
            sgrpc.ConnectionServiceStub(channel).CreateConnection(spb.CreateConnectionRequest(
                connection_id="spot", connection=pb.Connection(
                    display_name="spot", exchange="binance", api_type=pb.API_TYPE_SPOT,
                    credentials=pb.Credentials(api_key="k" * 16, api_secret="s" * 16))))
        daemon.stop()
        noted.unlink()
        daemon.start()
        modules = json.loads(noted.read_text())
    finally:
        daemon.stop()
    assert "ctsd.wiring.root" in modules  # the note is of a daemon that started
    assert kept_off(modules) == []


def test_the_list_names_modules_that_exist() -> None:
    """A renamed module would leave its entry checking nothing."""
    missing = [name for name in OFF_START_PATH if importlib.util.find_spec(name) is None]
    assert missing == []

