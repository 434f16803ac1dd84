"""What a robustness test tried and what survived, printed as one table row.

Each test prints its row (run pytest with `-s` to see them as they finish);
`lost` counts anything that must never happen: acknowledged writes missing,
half-present records, INTERNAL/UNKNOWN answers, a daemon that stopped serving.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

# Deliberate answers: anything else (UNKNOWN, INTERNAL, a client-side
# DEADLINE_EXCEEDED meaning a hang, ...) is a bug.
DELIBERATE = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)

KILLED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
"""What a call answers when the daemon dies under it: neither done nor refused."""

# Every row reported in this pytest process, for the table at the end of the
# session (tests/robustness/conftest.py): output of passing tests is captured.
REPORTED: list[str] = []


def soak_rounds(quick: int) -> int:
    """`CTS_SOAK_ROUNDS` for the long form (`make soak`), else the quick count."""
    return int(os.environ.get("CTS_SOAK_ROUNDS", quick))


@dataclass
class Tally:
    name: str
    tried: int = 0
    survived: int = 0
    lost: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def answer(self, code: grpc.StatusCode) -> bool:
        """Count one answer; True when it is deliberate."""
        self.tried += 1
        self.codes[code.name] += 1
        if code in DELIBERATE:
            self.survived += 1
            return True
        self.lost += 1
        return False

    def refused(self, what: str, exc: grpc.RpcError) -> None:
        """Count a call's refusal, with a note naming `what` when it is not deliberate."""
        code = exc.code()
        if not self.answer(code):
            self.notes.append(f"{what}: {code.name} {exc.details()}")

    def report(self) -> str:
        codes = ", ".join(f"{k}={v}" for k, v in sorted(self.codes.items()))
        line = (
            f"[robustness] {self.name:<34} tried={self.tried:<6} survived={self.survived:<6} "
            f"lost={self.lost}" + (f"  ({codes})" if codes else "")
        )
        for note in self.notes:
            line += f"\n[robustness]   {note}"
        print(line)
        REPORTED.append(line)
        return line


Stub = TypeVar("Stub")


def storm(address: str, stub_of: Callable[[grpc.Channel], Stub], step: Callable[[Stub], None],
          stop: threading.Event, pause: Callable[[], float] = lambda: 0.0) -> None:
    """`step` after `step` on one channel, `pause()` seconds apart, until `stop` or until
    the daemon dies under a call (the step lets the RpcError out)."""
    with grpc.insecure_channel(address) as ch:
        stub = stub_of(ch)
        while not stop.is_set():
            try:
                step(stub)
            except grpc.RpcError:
                return
            stop.wait(pause())


def log_problems(logs: str) -> list[str]:
    """Lines of a daemon log that show a bug: an unhandled error or a traceback."""
    marks = ("unhandled error", "Traceback", "Task exception was never retrieved")
    return [line[:300] for line in logs.splitlines() if any(m in line for m in marks)]
