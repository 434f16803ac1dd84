"""The systemd notify protocol: unit behaviour, then the real daemon's sequence.

A datagram socket stands in for systemd's NOTIFY_SOCKET; the daemon is the
real process, so READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and STOPPING=1
are checked as systemd would receive them.
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ctsd.ops.sd_notify import Notifier, watchdog_interval
from ctsd.ops.watchdog import Watchdog
from tests.ops.conftest import MakeDaemon
from tests.support.virtual_clock import VirtualClock


class Listener:
    """Plays systemd's side: a thread receives datagrams and records when each came."""

    def __init__(self, address: str) -> None:
        self.env_value = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            with self._changed:
                self.messages.append((time.monotonic(), data.decode()))
                self._changed.notify_all()

    def receive_until(self, predicate: str, timeout: float = 15.0) -> list[str]:
        """Wait for a message containing `predicate` after the last one waited for."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(predicate in m for _, m in self.messages[self._seen :]), timeout
            )
            if not found:
                raise TimeoutError(f"no {predicate!r} in {self.messages}")
            texts = [m for _, m in self.messages]
            self._seen = next(i for i in range(self._seen, len(texts)) if predicate in texts[i]) + 1
            return texts[: self._seen]

    _seen = 0

    def receive_count(self, text: str, count: int, timeout: float = 15.0) -> None:
        """Wait until `count` messages equal `text` (they need not be the next ones)."""
        with self._changed:
            if not self._changed.wait_for(
                    lambda: sum(m == text for _, m in self.messages) >= count, timeout):
                raise TimeoutError(f"fewer than {count} {text!r} in {self.messages}")

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener(root: Path) -> Iterator[Listener]:
    made = Listener(str(root / "notify.sock"))
    try:
        yield made
    finally:
        made.close()


def test_notifier_sends_to_a_path_and_to_an_abstract_socket(listener: Listener) -> None:
    abstract = Listener(f"@cts-test-{uuid.uuid4().hex}")
    try:
        for target in (listener, abstract):
            notifier = Notifier({"NOTIFY_SOCKET": target.env_value})
            assert notifier.ready("serving")
            assert target.receive_until("READY=1", timeout=2) == ["READY=1\nSTATUS=serving"]
            notifier.close()
    finally:
        abstract.close()


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.stopping()


def test_a_vanished_manager_is_not_an_error(root: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(root / "nobody-listens")})
    assert notifier.notify("STATUS=x") is False
    notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "42"}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "43"}, None),
    ],
)
def test_watchdog_interval_honours_usec_and_pid(env: dict[str, str], expected: float) -> None:
    assert watchdog_interval(env, pid=42) == expected


class CountingNotifier(Notifier):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__({})
        self._clock = clock
        self.pings: list[float] = []

    def watchdog(self) -> bool:
        self.pings.append(self._clock.monotonic())
        return True


@pytest.mark.asyncio
async def test_the_pings_come_every_half_interval_and_only_while_the_loop_runs() -> None:
    clock = VirtualClock()
    notifier = CountingNotifier(clock)
    watchdog = Watchdog(notifier, interval_s=0.1, clock=clock)
    watchdog.start()
    await clock.advance(0.2)
    assert notifier.pings == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    clock.now += 0.3  # time passes while the loop does not yield: nothing pings
    assert len(notifier.pings) == 5
    await clock.advance(0)  # the loop runs again: the overdue ping goes out at once
    assert notifier.pings[5:] == pytest.approx([0.5])
    await watchdog.close()


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status)


def test_daemon_notify_and_watchdog_sequence(make_daemon: MakeDaemon, listener: Listener) -> None:
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "400000"}
    env_clean = {k: v for k, v in os.environ.items() if k != "WATCHDOG_PID"}
    daemon = make_daemon([], env={**env_clean, **env}, start=False)
    socket_path = daemon.root / "ctsd.sock"
    daemon.extra_args += ["--listen", f"unix:{socket_path}"]
    daemon.start(wait=False)

    first = listener.receive_until("READY=1")
    # READY=1 only once the store is open and the socket answers.
    assert _health(f"unix:{socket_path}") == health_pb2.HealthCheckResponse.SERVING
    assert first[0] == "STATUS=opening the store"
    assert first[-1] == f"READY=1\nSTATUS=serving on unix:{socket_path}"

    listener.receive_count("WATCHDOG=1", 5)
    daemon.send(signal.SIGHUP)
    listener.receive_until("RELOADING=1")
    listener.receive_until("READY=1")
    daemon.send(signal.SIGTERM)
    listener.receive_until("STOPPING=1")
    assert daemon.stop() == 0

    pings = [t for t, m in listener.messages if m == "WATCHDOG=1"]
    assert len(pings) >= 5
    gap = statistics.median(b - a for a, b in itertools.pairwise(pings))
    # Half of WATCHDOG_USEC (the period itself: tests/ops/test_sd_notify's virtual clock);
    # on a loaded machine later, but never so late that systemd would restart the daemon.
    assert 0.15 <= gap < 0.4
    kinds = [m.split("\n")[0] for _, m in listener.messages if m != "WATCHDOG=1"]
    assert kinds == [
        "STATUS=opening the store", "READY=1", "RELOADING=1", "READY=1", "STOPPING=1",
    ]  # fmt: skip
    reloading = next(m for _, m in listener.messages if m.startswith("RELOADING=1"))
    assert "MONOTONIC_USEC=" in reloading


def test_watchdog_meant_for_another_pid_is_not_answered(
    make_daemon: MakeDaemon, listener: Listener
) -> None:
    env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    daemon = make_daemon([], env=env, start=False)
    daemon.extra_args += ["--listen", f"unix:{daemon.root / 'ctsd.sock'}"]
    daemon.start(wait=False)
    listener.receive_until("READY=1")
    # A watchdog would ping at once after READY=1, before the loop turns to anything else;
    # a reload runs later on that loop, so its READY=1 proves a ping would have been sent.
    daemon.send(signal.SIGHUP)
    listener.receive_until("RELOADING=1")
    listener.receive_until("READY=1")
    daemon.send(signal.SIGTERM)
    listener.receive_until("STOPPING=1")
    assert "WATCHDOG=1" not in [m for _, m in listener.messages]
