"""Domain errors become gRPC status codes here, and only here.

Every servicer is wrapped by `ErrorTranslationInterceptor`: a `CtsError`
leaves as its canonical code with `google.rpc` details (BadRequest naming
each bad field, ErrorInfo with a machine-readable reason). Any other
exception is a bug: it is logged with a request id and answered INTERNAL
without its text, which might hold data the client must not see.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ctsd import errors
from ctsd.api.handlers import Context, WrappingInterceptor

log = logging.getLogger("ctsd.api")

ERROR_DOMAIN = "ctsd.cts.v1"
MAX_MESSAGE_CHARS = 1000

_CODES: tuple[tuple[type[errors.CtsError], int], ...] = (  # first match wins
    (errors.InvalidArgument, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.EtagMismatch, code_pb2.ABORTED),
    (errors.ResourceExhausted, code_pb2.RESOURCE_EXHAUSTED),
    (errors.Unavailable, code_pb2.UNAVAILABLE),
    (errors.ConfigurationError, code_pb2.FAILED_PRECONDITION),
)


def code_for(error: errors.CtsError) -> int:
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return int(code_pb2.FAILED_PRECONDITION)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: errors.CtsError) -> grpc.Status:
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN))]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.insert(0, _pack(bad))
    elif isinstance(error, errors.FailedPrecondition) and error.violations:
        failure = error_details_pb2.PreconditionFailure(
            violations=[
                error_details_pb2.PreconditionFailure.Violation(
                    type="FIELD", subject=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.insert(0, _pack(failure))
    status = status_pb2.Status(
        code=code_for(error), message=error.message[:MAX_MESSAGE_CHARS], details=details
    )
    converted: grpc.Status = rpc_status.to_status(status)
    return converted


async def _abort_for(exc: Exception, context: Context, method: str) -> None:
    if isinstance(exc, errors.CtsError):
        await context.abort_with_status(to_status(exc))
    request_id = secrets.token_hex(6)  # not uuid: it imports `platform` on the start path
    log.error("unhandled error in %s (request %s)", method, request_id, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error (request {request_id})")


@contextlib.asynccontextmanager
async def translated(method: str, context: Context) -> AsyncIterator[None]:
    """Around every call: a domain error leaves as its status, anything else as INTERNAL."""
    try:
        yield
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        await _abort_for(exc, context, method)


class ErrorTranslationInterceptor(WrappingInterceptor):
    """The innermost interceptor: servicers raise `CtsError`, clients see status codes."""

    def __init__(self) -> None:
        super().__init__(translated)
