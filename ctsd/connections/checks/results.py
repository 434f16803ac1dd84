"""What a connection test produces: log lines as it runs, then one result.

Plain frozen values, so a result can be stored, shared between the
connections of a batch that use the same key, and encoded for any transport.
No field ever holds a credential: log lines are written by the tester from
fixed phrases and exchange answers it has already reduced to numbers and
names.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from ctsd.errors import FailureClass

__all__ = [
    "AssetBalance",
    "FailureClass",
    "LogLevel",
    "LogLine",
    "TestResult",
    "TestStatus",
]


class TestStatus(enum.Enum):
    __test__ = False  # not a pytest test class, whatever its name

    SUCCESS = "success"
    WARNING = "warning"
    FAILED = "failed"


class LogLevel(enum.Enum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class LogLine:
    """One timestamped line of a test's log, tagged with the step that wrote it."""

    time: datetime
    level: LogLevel
    step: str
    message: str

    def text(self) -> str:
        """The flat form kept in `ConnectionTestResult.log` for older clients."""
        stamp = self.time.strftime("%H:%M:%S.%f")[:-3]
        return f"{stamp} {self.level.value.upper():<7} [{self.step}] {self.message}"


@dataclass(frozen=True)
class AssetBalance:
    asset: str
    free: float
    used: float
    total: float
    value: float = 0.0
    """`total` in the result's balance currency; 0 where no price is known."""


@dataclass(frozen=True)
class TestResult:
    __test__ = False  # not a pytest test class, whatever its name

    status: TestStatus
    started_at: datetime
    duration_s: float
    balance_total: float = 0.0
    balance_currency: str = ""
    log_lines: tuple[LogLine, ...] = ()
    capabilities: tuple[str, ...] = ()
    message: str = ""
    failure_class: FailureClass | None = None
    remedy: str = ""
    balances: tuple[AssetBalance, ...] = ()
    clock_skew_s: float | None = None
    latency_s: float | None = None
    account_uid: str | None = None
    """The account the key belongs to, where the exchange counts limits per UID and the
    test learned it: recorded on the connection (`Connection.account_uid`), which the
    result's history does not keep."""

    @property
    def log(self) -> tuple[str, ...]:
        return tuple(line.text() for line in self.log_lines)

    @property
    def failed(self) -> bool:
        return self.status is TestStatus.FAILED
