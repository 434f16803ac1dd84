"""The daemon's one error tree, sorted by what the caller does next.

    CtsError                          raised on purpose; `.reason` is machine-readable
    ├── ClientError                   the request cannot succeed as sent: do not retry it
    │   ├── InvalidArgument           fix the request: FieldViolation(s) name each bad field
    │   ├── NotFound                  the named thing does not exist
    │   │   └── ExchangeOrderNotFound   (ExchangeFailure) the venue knows no such order
    │   ├── AlreadyExists             pick another id or name
    │   └── FailedPrecondition        valid, but the state forbids it: change the state first
    │       ├── CredentialsUnavailable  no usable key stored: re-enter it
    │       └── ExchangeRejected        (ExchangeFailure) the venue refused: the key, a
    │                                   permission, the IP, the clock, or the order's terms
    ├── ConflictError                 somebody else changed it: re-read, then retry
    │   └── EtagMismatch
    ├── TemporaryError                nothing is wrong with the request: retry later, unchanged
    │   ├── Unavailable               a dependency is down
    │   │   ├── ExchangeUnavailable     (ExchangeFailure) network, timeout, maintenance, or
    │   │   │                           an answer that cannot be read (the call may have landed)
    │   │   └── LimiterClosed           the daemon is stopping
    │   └── ResourceExhausted         a limit was hit (disk full, request rate): back off
    │       └── ExchangeRateLimited     (ExchangeFailure)
    └── ConfigurationError            the operator must act (bad config, unsafe key file)
        ├── RequestTooHeavy           a request weighs more than its rate limit's capacity
        └── SealError                 a stored secret does not open under the loaded key

    anything else                     a bug: logged with a request id, answered INTERNAL

`ExchangeFailure` is what the exchange layer raises, and only it: its
subclasses above are picked from the failure's `FailureClass` and
`OrderRejection` when ccxt's exception is translated, once
(`ctsd.exchanges.ccxt_errors`), so the engine, connection tests and the API
read the same exception. `ctsd.api.status` is the one place that turns this
tree into gRPC status codes.

Not errors, and so not here: signals that steer control flow inside one
module (`StepFailed` in a connection test, `Interrupted` in `ctsd.tasks`,
`RiskLimitBreached` in an engine cycle) and `IllegalTransition`, a bug.
"""

from __future__ import annotations

import enum
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


# --- fix the request ----------------------------------------------------------------------


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
    """`violations` name the fields whose value the state refuses (e.g. a leverage on a
    spot connection): sent as google.rpc PreconditionFailure details."""

    reason = "FAILED_PRECONDITION"

    def __init__(self, message: str, violations: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.violations = list(violations or [])


class CredentialsUnavailable(FailedPrecondition):
    """The connection has no usable credentials (missing, or sealed under a lost key)."""

    reason = "CREDENTIALS_UNAVAILABLE"


# --- re-read, then retry ------------------------------------------------------------------


class ConflictError(CtsError):
    """The resource changed since the caller read it."""


class EtagMismatch(ConflictError):
    reason = "ETAG_MISMATCH"


# --- retry later --------------------------------------------------------------------------


class TemporaryError(CtsError):
    """Nothing is wrong with the request; try again later."""


class Unavailable(TemporaryError):
    reason = "UNAVAILABLE"


class LimiterClosed(Unavailable):
    """The rate limiter shut down while a request was waiting for budget."""

    reason = "RATE_LIMITER_CLOSED"


class ResourceExhausted(TemporaryError):
    reason = "RESOURCE_EXHAUSTED"


# --- the operator must act ----------------------------------------------------------------


class ConfigurationError(CtsError):
    """The daemon cannot run as configured; the operator must fix it."""

    reason = "CONFIGURATION"


class RequestTooHeavy(ConfigurationError):
    """A single request weighs more than the bucket's whole capacity: it could never go."""

    reason = "RATE_LIMIT_TOO_LOW"


class SealError(ConfigurationError):
    """A blob does not open: wrong row, wrong key, or tampered bytes."""

    reason = "SEAL_ERROR"


# --- the exchange's failures --------------------------------------------------------------


class FailureClass(enum.Enum):
    """Why a call to an exchange failed, sorted by what the user must do; `retryable`
    says whether waiting helps, `remedy` what to do otherwise."""

    AUTHENTICATION = ("authentication", False,
                      "check the API key and secret (and passphrase); recreate the key if it "
                      "was deleted")
    PERMISSION = ("permission", False, "enable the missing permission on the key")
    IP_NOT_ALLOWED = ("ip_not_allowed", False,
                      "add this host's public IP address to the key's whitelist")
    CLOCK_SKEW = ("clock_skew", False, "synchronise the host clock (NTP)")
    RATE_LIMITED = ("rate_limited", True,
                    "wait and retry; fewer connections per key or IP lower the request rate")
    MAINTENANCE = ("maintenance", True, "wait for the exchange's maintenance to end")
    NETWORK = ("network", True, "check network access (DNS, proxy, firewall) to the exchange")
    TIMEOUT = ("timeout", True, "retry later; the exchange is slow or unreachable")
    EXCHANGE_ERROR = ("exchange_error", False,
                      "the exchange refused or garbled the answer; see the message")

    def __init__(self, code: str, retryable: bool, remedy: str) -> None:
        self.code = code
        self.retryable = retryable
        self.remedy = remedy


class OrderRejection(enum.Enum):
    """Why an order call was refused, for engines (a connection test never needs it)."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    ORDER_NOT_FOUND = "order_not_found"
    INVALID_ORDER = "invalid_order"
    BAD_SYMBOL = "bad_symbol"
    NOT_SUPPORTED = "not_supported"


_TRANSIENT = frozenset({FailureClass.NETWORK, FailureClass.TIMEOUT, FailureClass.MAINTENANCE})


class ExchangeFailure(CtsError):
    """A call to an exchange failed; raised as the subclass that says what to do next
    (`ExchangeFailure.of`).

    `detail` is the exchange's own message, redacted of credentials: what a
    connection test shows. `message` adds, for an order refused for its terms,
    the rejection ("insufficient funds: …"), and for a refusal the operator must
    fix, the remedy: what an engine records.
    """

    reason = "EXCHANGE_FAILURE"

    def __init__(self, failure: FailureClass, detail: str, *, code: str | None = None,
                 rejection: OrderRejection | None = None) -> None:
        super().__init__(_engine_message(failure, detail, rejection))
        self.failure = failure
        self.detail = detail
        self.code = code
        """The exchange's own error code, when its answer had one."""
        self.rejection = rejection
        self.reason = f"EXCHANGE_{failure.name}"

    @property
    def retryable(self) -> bool:
        return self.failure.retryable

    @property
    def remedy(self) -> str:
        return self.failure.remedy

    @staticmethod
    def of(failure: FailureClass, detail: str, *, code: str | None = None,
           rejection: OrderRejection | None = None) -> ExchangeFailure:
        """The subclass that matches what the caller does next:

            ORDER_NOT_FOUND rejection            → ExchangeOrderNotFound (nothing open)
            RATE_LIMITED                         → ExchangeRateLimited   (back off)
            NETWORK, TIMEOUT, MAINTENANCE        → ExchangeUnavailable   (retry later)
            any other rejection (funds, size,
              symbol, duplicate id)              → ExchangeRejected      (the venue refused)
            EXCHANGE_ERROR without a rejection   → ExchangeUnavailable   (garbled or
                                                   unexplained: the call may have landed,
                                                   so ask again, never give up)
            AUTHENTICATION, PERMISSION, IP,
              CLOCK_SKEW                         → ExchangeRejected      (the operator acts)
        """
        cls: type[ExchangeFailure]
        if rejection is OrderRejection.ORDER_NOT_FOUND:
            cls = ExchangeOrderNotFound
        elif failure is FailureClass.RATE_LIMITED:
            cls = ExchangeRateLimited
        elif failure in _TRANSIENT or (
                rejection is None and failure is FailureClass.EXCHANGE_ERROR):
            cls = ExchangeUnavailable
        else:
            cls = ExchangeRejected
        return cls(failure, detail, code=code, rejection=rejection)


def _engine_message(failure: FailureClass, detail: str, rejection: OrderRejection | None,
                    ) -> str:
    """What an engine records: the rejection of an order refused for its terms, the
    remedy of a refusal only the operator can lift, else the exchange's words."""
    if rejection is OrderRejection.ORDER_NOT_FOUND or failure.retryable:
        return detail
    if rejection is not None:
        return f"{rejection.value.replace('_', ' ')}: {detail}"
    if failure is FailureClass.EXCHANGE_ERROR:
        return detail
    return f"{detail} ({failure.remedy})"


class ExchangeUnavailable(ExchangeFailure, Unavailable):
    """The exchange, not the request or this daemon: down, in maintenance, unreachable or
    answering garbage. Engines wait it out instead of giving up (`ctsd.engine.supervisor`)."""


class ExchangeRateLimited(ExchangeFailure, ResourceExhausted):
    pass


class ExchangeRejected(ExchangeFailure, FailedPrecondition):
    pass


class ExchangeOrderNotFound(ExchangeFailure, NotFound):
    pass
