"""The daemon's one error hierarchy, sorted by what the caller should do next.

    CtsError
    ├── ClientError              the request is wrong: fix it, do not retry
    │   ├── InvalidArgument      carries FieldViolation(s) naming each bad field
    │   ├── NotFound
    │   ├── AlreadyExists
    │   └── FailedPrecondition   valid request, wrong state (e.g. predefined)
    ├── ConflictError            somebody else changed it: re-read, then retry
    │   └── EtagMismatch
    ├── TemporaryError           retry later, unchanged
    │   ├── Unavailable          a dependency (store, exchange) is down
    │   └── ResourceExhausted    a limit was hit (disk full, rate)
    └── ConfigurationError       the operator must act (bad config, unsafe key file)

Domain code raises these; `ctsd.api.status` is the one place that turns them
into gRPC status codes. Anything else escaping a servicer is a bug.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: a dotted path into the request, and what is wrong with it."""

    field: str
    description: str


class CtsError(Exception):
    """Base of every error the daemon raises on purpose."""

    reason = "CTS_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(CtsError):
    """The request cannot succeed as sent."""


class InvalidArgument(ClientError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """Shorthand for a single bad field."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)])


class NotFound(ClientError):
    reason = "NOT_FOUND"


class AlreadyExists(ClientError):
    reason = "ALREADY_EXISTS"


class FailedPrecondition(ClientError):
    reason = "FAILED_PRECONDITION"


class ConflictError(CtsError):
    """The resource changed since the caller read it."""


class EtagMismatch(ConflictError):
    reason = "ETAG_MISMATCH"


class TemporaryError(CtsError):
    """Nothing is wrong with the request; try again later."""


class Unavailable(TemporaryError):
    reason = "UNAVAILABLE"


class ResourceExhausted(TemporaryError):
    reason = "RESOURCE_EXHAUSTED"


class ExchangeUnavailable(Unavailable):
    """The exchange, not the request or this daemon: down, in maintenance, unreachable or
    answering garbage. Engines wait it out instead of giving up (`ctsd.engine.supervisor`)."""

    reason = "EXCHANGE_UNAVAILABLE"


class ConfigurationError(CtsError):
    """The daemon cannot run as configured; the operator must fix it."""

    reason = "CONFIGURATION"
