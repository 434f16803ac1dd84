"""The one error tree: each exchange failure is raised as the class that says what to do next."""

from __future__ import annotations

import inspect

import pytest

from ctsd import errors
from ctsd.errors import (
    ClientError,
    CtsError,
    ExchangeFailure,
    ExchangeOrderNotFound,
    ExchangeRateLimited,
    ExchangeRejected,
    ExchangeUnavailable,
    FailedPrecondition,
    FailureClass,
    NotFound,
    OrderRejection,
    ResourceExhausted,
    TemporaryError,
    Unavailable,
)


@pytest.mark.parametrize(("cls", "rejection", "expected", "base"), [
    (FailureClass.NETWORK, None, ExchangeUnavailable, Unavailable),
    (FailureClass.TIMEOUT, None, ExchangeUnavailable, Unavailable),
    (FailureClass.MAINTENANCE, None, ExchangeUnavailable, Unavailable),
    (FailureClass.RATE_LIMITED, None, ExchangeRateLimited, ResourceExhausted),
    (FailureClass.EXCHANGE_ERROR, None, ExchangeUnavailable, Unavailable),  # may have landed
    (FailureClass.EXCHANGE_ERROR, OrderRejection.INSUFFICIENT_FUNDS, ExchangeRejected,
     FailedPrecondition),
    (FailureClass.EXCHANGE_ERROR, OrderRejection.INVALID_ORDER, ExchangeRejected,
     FailedPrecondition),
    (FailureClass.EXCHANGE_ERROR, OrderRejection.ORDER_NOT_FOUND, ExchangeOrderNotFound,
     NotFound),
    (FailureClass.AUTHENTICATION, None, ExchangeRejected, FailedPrecondition),
    (FailureClass.PERMISSION, None, ExchangeRejected, FailedPrecondition),
    (FailureClass.CLOCK_SKEW, None, ExchangeRejected, FailedPrecondition),
])
def test_an_exchange_failure_is_the_class_its_recovery_calls_for(
    cls: FailureClass, rejection: OrderRejection | None, expected: type[ExchangeFailure],
    base: type[CtsError],
) -> None:
    raised = ExchangeFailure.of(cls, "venue: no", rejection=rejection)
    assert type(raised) is expected and isinstance(raised, base)
    assert (raised.failure, raised.detail, raised.rejection) == (cls, "venue: no", rejection)
    assert isinstance(raised, TemporaryError) == (
        cls.retryable or (cls is FailureClass.EXCHANGE_ERROR and rejection is None))
    assert raised.reason == f"EXCHANGE_{cls.name}"


@pytest.mark.parametrize(("cls", "rejection", "message"), [
    (FailureClass.EXCHANGE_ERROR, OrderRejection.INSUFFICIENT_FUNDS,
     "insufficient funds: venue: no"),
    (FailureClass.EXCHANGE_ERROR, OrderRejection.ORDER_NOT_FOUND, "venue: no"),
    (FailureClass.AUTHENTICATION, None, f"venue: no ({FailureClass.AUTHENTICATION.remedy})"),
    (FailureClass.RATE_LIMITED, None, "venue: no"),
    (FailureClass.EXCHANGE_ERROR, None, "venue: no"),
])
def test_the_message_an_engine_records_says_why_and_what_to_do(
    cls: FailureClass, rejection: OrderRejection | None, message: str,
) -> None:
    assert ExchangeFailure.of(cls, "venue: no", rejection=rejection).message == message


def test_every_error_class_sits_under_what_the_caller_does_next() -> None:
    """Every error class of ctsd.errors sits under the branch of what the caller does
    next, under a name of its own."""
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, CtsError) and c.__module__ == errors.__name__]
    actions = (ClientError, errors.ConflictError, TemporaryError, errors.ConfigurationError)
    for cls in classes:
        if cls in (CtsError, ExchangeFailure, *actions):
            continue
        assert issubclass(cls, actions), f"{cls.__name__} is under no action"
    assert len({c.__name__ for c in classes}) == len(classes)
