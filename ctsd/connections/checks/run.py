"""The state of one running connection test: its log, findings, and outcome.

`ConnectionTester` decides what to check; `TestRun` records it. Keeping the
bookkeeping here keeps each step of the tester a few readable lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime

from ctsd.connections.checks.probe import Classifier, ExchangeProbe
from ctsd.connections.checks.results import (
    AssetBalance,
    FailureClass,
    LogLevel,
    LogLine,
    TestResult,
    TestStatus,
)
from ctsd.connections.model import Connection

log = logging.getLogger("ctsd.connections.checks.tester")

MAX_MESSAGE_CHARS = 300
_SIGNED_QUERY = re.compile(r"(signature|sign|api_key|apikey|passphrase)=[^&\s]*", re.IGNORECASE)


class StepFailed(Exception):  # control flow, not an error to report
    """A step recorded a failure on the run; the remaining steps are skipped."""


class TestRun:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self,
        conn: Connection,
        now: Callable[[], datetime],
        monotonic: Callable[[], float],
        classify: Classifier,
        emit: Callable[[LogLine], None],
    ) -> None:
        self.conn = conn
        self._now = now
        self._monotonic = monotonic
        self._classify = classify
        self._emit = emit
        self.started_at = now()
        self._started = monotonic()
        self.step = "credentials"
        self.lines: list[LogLine] = []
        self.warnings: list[tuple[str, str]] = []
        self.failure: tuple[FailureClass, str, str] | None = None
        self.probe: ExchangeProbe | None = None
        self.capabilities: tuple[str, ...] = ()
        self.balances: tuple[AssetBalance, ...] = ()
        self.balance_total = 0.0
        self.balance_currency = ""
        self.clock_skew_s: float | None = None
        self.latency_s: float | None = None
        self.account_uid: str | None = None
        self._redact: tuple[str, ...] = ()

    # --- the log ---------------------------------------------------------------

    def _write(self, level: LogLevel, message: str) -> None:
        line = LogLine(self._now(), level, self.step, message)
        self.lines.append(line)
        self._emit(line)

    def debug(self, message: str) -> None:
        self._write(LogLevel.DEBUG, message)

    def info(self, message: str) -> None:
        self._write(LogLevel.INFO, message)

    def warn(self, message: str, remedy: str) -> None:
        self.warnings.append((message, remedy))
        self._write(LogLevel.WARNING, message)

    def fail(self, failure: FailureClass, message: str, remedy: str = "") -> None:
        if self.failure is None:
            self.failure = (failure, message, remedy or failure.remedy)
            self._write(LogLevel.ERROR, f"{message} ({failure.name.lower()})")

    # --- outside text ----------------------------------------------------------

    def redact(self, values: Iterable[str]) -> None:
        """Credential values to strip from any message that came from outside."""
        self._redact = tuple(sorted((v for v in values if v), key=len, reverse=True))

    def clean(self, text: str) -> str:
        for value in self._redact:
            text = text.replace(value, "<redacted>")
        text = _SIGNED_QUERY.sub(lambda m: f"{m.group(1)}=<redacted>", text)
        return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"

    def describe(self, exc: BaseException) -> str:
        return self.clean(self._classify(exc).message)

    @asynccontextmanager
    async def calling(self) -> AsyncIterator[None]:
        """Around a probe call: an exception becomes this step's classified failure."""
        try:
            yield
        except StepFailed:
            raise
        except Exception as exc:
            classified = self._classify(exc)
            if not classified.expected:
                log.error("connection test step crashed", exc_info=exc, extra={"step": self.step})
            self.fail(classified.failure_class, self.clean(classified.message))
            raise StepFailed from exc

    # --- the outcome -----------------------------------------------------------

    def limiter_wait_s(self) -> float:
        return self.probe.limiter_wait_s() if self.probe is not None else 0.0

    def result(self) -> TestResult:
        if self.failure is not None:
            failure, message, remedy = self.failure
            status, message = TestStatus.FAILED, f"{self.step}: {message}"
        elif self.warnings:
            status, failure = TestStatus.WARNING, None
            message = "; ".join(w for w, _ in self.warnings)
            remedy = "; ".join(dict.fromkeys(r for _, r in self.warnings))
        else:
            status, failure, message, remedy = TestStatus.SUCCESS, None, "all checks passed", ""
        return TestResult(
            status=status,
            started_at=self.started_at,
            duration_s=self._monotonic() - self._started,
            balance_total=self.balance_total,
            balance_currency=self.balance_currency,
            log_lines=tuple(self.lines),
            capabilities=self.capabilities,
            message=message,
            failure_class=failure,
            remedy=remedy,
            balances=self.balances,
            clock_skew_s=self.clock_skew_s,
            latency_s=self.latency_s,
            account_uid=self.account_uid,
        )
